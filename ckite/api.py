"""CKite: the blocking API an application uses (CKite's ``CKite`` trait, in snake_case)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ckite.bindings import parse_binding
from ckite.commands import ReadCommand, WriteCommand
from ckite.consensus.reconfiguration import ChangeState, MembershipChange
from ckite.errors import CKiteError, MembershipChangeError
from ckite.log.data_dir import DataDir
from ckite.log.storage import LogStorage
from ckite.member_status import MemberStatus
from ckite.runtime.node import RaftNode
from ckite.sessions.api import ClientSession
from ckite.write_result import WriteResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ckite.admin import AdminServer


class CKite:
    """One member of a Raft cluster. Build it with :class:`~ckite.CKiteBuilder`.

    Every blocking call takes an optional ``timeout`` in seconds (default: the builder's)
    and raises a :mod:`ckite.errors` exception instead of hanging.
    """

    def __init__(self, node: RaftNode, storage: LogStorage, data_dir: DataDir | None = None) -> None:
        self._node = node
        self._storage = storage
        self._data_dir = data_dir
        self._admin: AdminServer | None = None
        node.consensus.metrics.watch(self.status)

    def attach_admin(self, admin: AdminServer) -> None:
        """Serve ``admin`` with this member: started by :meth:`start`, stopped by :meth:`stop`."""
        self._admin = admin

    @property
    def admin(self) -> AdminServer | None:
        """The admin console (a Flask app in ``admin.app`` to add routes to), or None when disabled."""
        return self._admin

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The Prometheus registry holding this member's metrics (``ckite_*``; see
        :mod:`ckite.metrics`), served by the admin console on ``/metrics``; the application's own
        when it gave one to ``CKiteBuilder.with_metrics_registry``. Serve it yourself with
        ``prometheus_client.generate_latest(member.metrics_registry)``. Raises CKiteError for a
        member whose metrics are off (no admin console, no registry given, no
        ``CKiteBuilder.with_metrics()``)."""
        registry = self._node.consensus.metrics.registry
        if registry is None:
            raise CKiteError(f"{self.id}: Prometheus metrics are off for this member (built without the admin "
                             "console and without a registry): build it with CKiteBuilder.with_metrics()")
        return registry

    @property
    def id(self) -> str:
        """This member's binding, its identity in the cluster."""
        return self._node.id

    def start(self) -> None:
        """Start serving peers and take part in elections, and the admin console; returns at once.

        Raises OSError when a port is taken (nothing is left running then)."""
        self._node.start()
        if self._admin is not None:
            try:
                self._admin.start()
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop every thread and close the storage; idempotent. A stopped member cannot restart:
        build a new one on the same data dir."""
        if self._admin is not None:
            self._admin.stop()   # first: requests in progress still reach a running node
        self._node.stop()
        self._node.consensus.metrics.close()   # out of the application's registry: a member built again may join it
        self._storage.close()
        if self._data_dir is not None:
            self._data_dir.close()   # last: another process may open it from now on

    def write(self, command: WriteCommand, timeout: float | None = None, *, idempotency_key: str | None = None,
              fingerprint: str | None = None) -> Any:
        """Replicate ``command`` (forwarded to the leader if need be) and return what the state
        machine's ``apply`` returned on the leader. The member's own client session numbers it,
        so the retries this call makes within ``timeout`` (a lost reply, a leader change, a
        forward that timed out) never apply it twice.

        With an ``idempotency_key`` (at most 256 printable ASCII characters), any write under the
        same key, from any member or client, within a day of the first, gets the first one's
        outcome instead of applying again; under the same key, a different request (another
        command, or other arguments, or another ``fingerprint`` when the caller gives one) is
        refused with IdempotencyKeyReusedError.

        Every failure says whether the write applied:

        - :class:`~ckite.errors.NotAppliedError` (NotLeaderError, LeaderTimeoutError, StoppedError,
          EntryOverwrittenError, ...): it did not and never will: safe to retry in any way;
        - :class:`~ckite.errors.OutcomeUnknownError` (WriteTimeoutError, LostLeadershipError,
          WriteInterruptedError): it may have applied or may still apply: retry it only through
          a session (:meth:`session`) or under the same idempotency key;
        - :class:`~ckite.errors.CommandError`: it applied, and the state machine raised.
        """
        return self._node.write(command, timeout, idempotency_key, fingerprint)

    def write_async(self, command: WriteCommand, timeout: float | None = None) -> Future[Any]:
        """Submit ``command`` and return a future of its result, so that many writes can be in
        flight at once (they are appended to the log in batches); its failures are those of
        :meth:`write`."""
        return self._node.write_async(command, timeout)

    def apply(self, command: WriteCommand, timeout: float | None = None, *, idempotency_key: str | None = None,
              fingerprint: str | None = None) -> WriteResult:
        """As :meth:`write`, but say where the command took effect: a frozen
        :class:`~ckite.write_result.WriteResult` of the result, and the index and term of the log
        entry it was applied at. A write this call retried (or one under an ``idempotency_key``
        used before) reports the entry of its first apply, the only one that changed the state.
        Fails as :meth:`write` does.

        The index is a causal token: a member whose ``status().applied_index`` reached it has
        the write in its state. ::

            written = member.apply(Put("k", "v"))
            written.result, written.index, written.term
        """
        result: WriteResult = self._node.write(command, timeout, idempotency_key, fingerprint, indexed=True)
        return result

    def apply_async(self, command: WriteCommand, timeout: float | None = None) -> Future[WriteResult]:
        """As :meth:`write_async`, its future completing with a :class:`~ckite.write_result.WriteResult`
        (:meth:`write_async`'s future keeps completing with the result alone: the writes that do
        not ask for the index pay nothing for it)."""
        return self._node.write_async(command, timeout, indexed=True)

    def barrier(self, timeout: float | None = None) -> int:
        """Return once every write committed before the call is applied on *this* member, and
        return the log index reached (hashicorp/raft's ``Barrier``, from any member): the leader
        confirms its leadership (a ReadIndex round, or its lease) and a follower asks the leader
        for that index, then the call waits for this member's state machine to apply it.

        Use it before reading the state machine directly (``read_local``, or the application's
        own view of it), e.g. after a leader change, to see every acknowledged write. Raises
        ReadTimeoutError (a TimeoutError) when that takes longer than ``timeout`` (default: the
        read timeout), LeaderTimeoutError when no leader is known. ::

            member.barrier(timeout=5)
            snapshot_of_state = member.read_local(Dump())   # holds every write acknowledged before
        """
        return self._node.barrier(timeout)

    def snapshot_now(self, timeout: float | None = None) -> int:
        """Take a snapshot of this member's state machine now, store it and compact the log, and
        return its index (the last entry it covers), instead of waiting for
        ``compaction_threshold`` entries: e.g. before a backup of the data dir, or to cut a
        restart's replay after a burst of writes. Any member may (each snapshots its own state).
        The state is captured between two applied batches and written by the compactor thread
        while commands keep applying. With nothing applied since the latest snapshot, returns that
        snapshot's index (0: none) at once. Raises SnapshotTimeoutError when writing takes longer
        than ``timeout`` (default 60 s; the snapshot goes on), StorageError when it failed. ::

            index = member.snapshot_now()
            assert member.status()["log"]["snapshot"]["index"] == index
        """
        return self._node.snapshot_now(timeout)

    def session(self) -> ClientSession:
        """A client session (Raft thesis §6.3): its writes apply exactly once, and a write whose
        outcome is unknown can be sent again with ``error.retry()``, however many times, through
        any member. A session expires after an hour without a write (the log's time)."""
        return ClientSession(self._node)

    def read(self, command: ReadCommand, timeout: float | None = None) -> Any:
        """Linearizable read: sees every write acknowledged before it was called (answered on the
        leader through a ReadIndex round, or from its lease with ``with_lease_reads()``)."""
        return self._node.read(command, timeout)

    def read_local(self, command: ReadCommand) -> Any:
        """Read this member's state machine now: no network, possibly stale."""
        return self._node.read_local(command)

    def is_leader(self, timeout: float | None = None) -> bool:
        """Waits for an election to settle, then says whether this member leads (confirmed by a
        quorum: a ReadIndex round, or with lease reads a valid lease)."""
        return self._node.is_leader(timeout)

    def verify_leader(self, timeout: float | None = None) -> None:
        """Return only if this member leads and a quorum confirms it now (as :meth:`is_leader`
        confirms: a ReadIndex round, or a valid lease), so the caller can act as the leader, e.g.
        before a side effect only the leader should perform. Raises NotLeaderError (its ``leader``
        says who leads, when known) when another member leads or this one was deposed, and
        LeaderTimeoutError when no leader is known, or the quorum did not answer, within ``timeout``
        (default: the leader timeout). ::

            try:
                member.verify_leader(timeout=1)
            except NotLeaderError as error:
                redirect_to(error.leader)
        """
        self._node.verify_leader(timeout)

    def wait_for_leader(self, timeout: float | None = None) -> str:
        """The binding of the leader, once an election has settled (this member included); raises
        LeaderTimeoutError when no leader is known within ``timeout`` (default: the leader timeout).
        It is this member's belief: :meth:`verify_leader` on the leader confirms it. ::

            leader = member.wait_for_leader(timeout=10)
        """
        return self._node.wait_for_leader(timeout)

    def on_leader_change(self, callback: Callable[[str | None], object]) -> Callable[[], None]:
        """Call ``callback(leader)`` (the new leader's binding, or None while there is none) at
        every change of leader this member sees, and once at first with the current one; returns
        a function that unsubscribes it.

        The callbacks run on one thread of their own (``ckite-<port>-leader``), after the
        consensus lock is released, never on a thread that answers peers: a slow callback delays
        only the next notifications. Changes are coalesced: a callback is always called with the
        leader as it is then, never twice in a row with the same one, and two changes in quick
        succession may reach it as one. A callback that raises is logged and called again at the
        next change. ::

            unsubscribe = member.on_leader_change(lambda leader: log.info("leader: %s", leader))
        """
        return self._node.on_leader_change(callback)

    def add_member(self, binding: str, timeout: float | None = None) -> bool:
        """Add ``binding`` to the cluster (forwarded to the leader); returns True once it is a voter.

        It first catches up as a learner, which takes as long as it takes: start it before or
        after calling this. When ``timeout`` passes first, MembershipChangeError says so and the
        change goes on (``remove_member(binding)`` cancels it). Another change in progress makes
        this one wait. Retrying is safe: asking again joins the change in progress.
        """
        return self._finished(self.change_membership(add=[binding], wait=timeout), binding)

    def remove_member(self, binding: str, timeout: float | None = None) -> bool:
        """Remove ``binding`` from the cluster, or cancel its addition while it is still catching up;
        a leader that removes itself hands leadership over and steps down once the new
        configuration is committed. Raises MembershipChangeError as :meth:`add_member` does."""
        return self._finished(self.change_membership(remove=[binding], wait=timeout), binding)

    def add_learner(self, binding: str, timeout: float | None = None) -> bool:
        """Add ``binding`` as a *learner*: it receives the log (or a snapshot) and serves
        ``read_local`` and linearizable reads, but never votes, never counts toward a commit and
        never campaigns, so a slow or far-away one cannot slow the cluster down. True once the
        configuration naming it is committed (it need not have started yet); MembershipChangeError
        as :meth:`add_member`. ``promote`` makes it a voter, ``remove_member`` removes it. ::

            member.add_learner("10.0.0.9:9091")      # a read replica, or a warm spare
            member.promote("10.0.0.9:9091")          # later: a voter, once it has caught up
        """
        return self._finished(self.change_membership(learners=[binding], wait=timeout), binding)

    def promote(self, binding: str, timeout: float | None = None) -> bool:
        """Make the learner ``binding`` a voter: True once it is one. It becomes one only once it
        is within a batch of the leader's log, so promoting cannot stall commits. Raises
        MembershipChangeError when this member's configuration has no such learner, or as
        :meth:`add_member` when ``timeout`` passes first (the promotion goes on)."""
        binding = parse_binding(binding)
        configuration = self._node.consensus.configuration
        if binding not in configuration.learners:
            raise MembershipChangeError(f"{binding} is not a learner of this cluster (learners: "
                                        f"{', '.join(sorted(configuration.learners)) or 'none'})")
        return self._finished(self.change_membership(add=[binding], wait=timeout), binding)

    def change_membership(self, add: Iterable[str] = (), remove: Iterable[str] = (),
                          wait: float | None = None, learners: Iterable[str] = ()) -> MembershipChange:
        """Add and remove several members in one change (one joint configuration, Raft §6), and add
        ``learners`` that stay learners; waits up to ``wait`` seconds (default: the builder's
        membership timeout) and returns how far the change got: ``state`` DONE, or CATCHING_UP /
        JOINT when the wait ended first (it goes on)."""
        return self._node.change_membership([parse_binding(b) for b in add], [parse_binding(b) for b in remove],
                                            wait, [parse_binding(b) for b in learners])

    @property
    def membership_change(self) -> MembershipChange | None:
        """The membership change in progress as this member knows it (None: none)."""
        return self._node.consensus.membership_change()

    @staticmethod
    def _finished(change: MembershipChange, binding: str) -> bool:
        if change.state is not ChangeState.DONE:
            raise MembershipChangeError(
                f"the change of {binding} is not finished ({change.state.value}): it goes on, and completes once "
                f"every member being added has started and caught up; removing a member being added cancels it")
        return True

    def transfer_leadership(self, to: str | None = None, timeout: float | None = None) -> bool:
        """Hand leadership to ``to`` (default: the most up-to-date voter), e.g. before a rolling
        restart; writes wait meanwhile. Raises LeaderTimeoutError if no transfer happened."""
        return self._node.transfer_leadership(None if to is None else parse_binding(to), timeout)

    @property
    def members(self) -> frozenset[str]:
        """Every member of the current configuration, this one included."""
        return self._node.consensus.configuration.members

    @property
    def leader_timeout(self) -> float:
        """The builder's leader timeout, in seconds: what a call waits for an election by default."""
        return self._node.leader_timeout

    @property
    def leader(self) -> str | None:
        """The binding of the member this one believes leads, if any."""
        return self._node.consensus.leader_id

    def status(self) -> MemberStatus:
        """Role, term, leader, commit and applied index, configuration, replication progress and
        last contact, as typed attributes of a frozen :class:`~ckite.member_status.MemberStatus`;
        ``status().to_json()`` is the CKite-shaped document the admin console shows. The status is
        also a read-only mapping over that document, so ``status()["term"]`` (what callers wrote
        when it was a dict) still works.

        Example::

            status = member.status()
            if status.role == "Leader":
                lagging = [p for p, progress in status.replication.items()
                           if progress.match_index < status.commit_index]
        """
        return MemberStatus.from_document(self._node.status())
