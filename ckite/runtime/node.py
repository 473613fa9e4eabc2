"""A running member: the consensus core wired to threads, a transport and a state machine.

Threads (all named ``ckite-<port>-...``, all stopped and joined by :meth:`RaftNode.stop`):
``election`` (timer), ``replicate-<peer>`` (sends to one peer and handles its replies),
``apply`` (applier),
``forward_N`` (a small pool for forwarded async calls), plus the transport's server threads.
See docs/architecture.md for the locks and the path of a write.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from ckite.codec import decode_command, decode_value, encode_command, encode_value
from ckite.commands import ReadCommand, WriteCommand
from ckite.consensus.consensus import Consensus
from ckite.consensus.effects import Effects
from ckite.consensus.reconfiguration import ChangeState, MembershipChange
from ckite.errors import (
    CKiteError,
    CommandError,
    LeaderTimeoutError,
    LostLeadershipError,
    MemberFailedError,
    MembershipChangeError,
    MembershipChangeInProgressError,
    NotLeaderError,
    ReadTimeoutError,
    RpcError,
    SnapshotTimeoutError,
    StoppedError,
    UnreachableError,
    WriteInterruptedError,
    WriteTimeoutError,
)
from ckite.identity import MemberIdentity, same_endpoint
from ckite.log.entry import EntryKind
from ckite.messages import ForwardKind, ForwardRequest, ForwardResponse, JoinMember, JoinMemberResponse, Request
from ckite.rpc.transport import Transport
from ckite.runtime.applier import Applier
from ckite.runtime.compactor import Compactor
from ckite.runtime.election_timer import election_timer_step
from ckite.runtime.follower_reads import ReadIndexRounds
from ckite.runtime.joiner import join_step
from ckite.runtime.leader_watch import LeaderCallback, LeaderWatch
from ckite.runtime.pending import PendingWrites
from ckite.runtime.replicator import Replicator
from ckite.runtime.submitter import Submitter
from ckite.runtime.worker import Worker
from ckite.runtime.write_future import WriteFuture
from ckite.sessions.client import Session, retry_expired
from ckite.sessions.request import ClientRequest
from ckite.sessions.table import ClientTable
from ckite.statemachine import StateMachine
from ckite.write_result import WriteResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a caller waits before retrying a request that found no leader or a stale one.
RETRY_PAUSE = 0.02

#: Of a forwarded call's time, what is kept back for the leader's answer to travel (the leader
#: stops waiting this much earlier than the caller's socket).
FORWARD_MARGIN = 0.1

#: Beyond its wait for completion, the time a membership call has to reach a leader (and retry
#: while another change is in progress).
CHANGE_START_TIME = 2.0

#: How long ``snapshot_now`` waits by default for its snapshot to be written and synced.
SNAPSHOT_TIMEOUT = 60.0

#: Failures after which a write certainly was not appended anywhere, so retrying cannot apply it twice.
_CERTAINLY_NOT_APPLIED: tuple[type[CKiteError], ...] = (NotLeaderError, UnreachableError, LeaderTimeoutError,
                                                         StoppedError)


class RaftNode:
    """The transport's handler and the core's :class:`~ckite.consensus.effects.Runtime` for one member."""

    def __init__(self, consensus: Consensus, transport: Transport, state_machine: StateMachine,
                 *, leader_timeout: float, write_timeout: float, read_timeout: float,
                 listen_address: str | None = None, clock: Callable[[], float] = time.monotonic,
                 membership_timeout: float = 30.0, join_seeds: Sequence[str] = (), client_sessions: bool = True,
                 client_table: ClientTable | None = None) -> None:
        self.consensus = consensus
        self.listen_address = listen_address or consensus.member_id
        self.transport = transport
        self.clock = clock
        self.leader_timeout = leader_timeout
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout
        self.membership_timeout = membership_timeout
        self.pending = PendingWrites(consensus.metrics.commit_latency)
        self.compactor = Compactor(consensus)
        # Every member must use the same table timeouts (it is replicated state): tests only pass one.
        self.applier = Applier(consensus, state_machine, self.pending, clock, self.compactor, client_table)
        self.id = consensus.member_id
        self.identity = MemberIdentity(self.id, self.listen_address)
        tag = self.id.rsplit(":", 1)[-1]
        self._tag = tag
        self._leader_signal = threading.Condition()   # notified when a step changed the role or the leader
        self._peers_lock = threading.Lock()           # guards the replicators
        self._read_rounds = ReadIndexRounds(self._fetch_read_index, clock)
        self.submitter = Submitter(consensus, self.pending, clock)
        self._submit_worker = self.submitter.worker = Worker(f"ckite-{tag}-submit", self.submitter.step)
        self._election = Worker(f"ckite-{tag}-election", election_timer_step(consensus, clock))
        self._apply = self.applier.worker = Worker(f"ckite-{tag}-apply", self.applier.step)
        self._compact = self.compactor.worker = Worker(f"ckite-{tag}-compact", self.compactor.step)
        self._replicators: dict[str, Replicator] = {}
        self._retired: list[Replicator] = []
        self._join = (Worker(f"ckite-{tag}-join", join_step(consensus, transport, join_seeds, membership_timeout))
                      if join_seeds else None)
        self.leader_watch = LeaderWatch(tag, lambda: self.consensus.leader_id)
        self._forwarders = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"ckite-{tag}-forward")
        #: The member's own session, for its writes (None: client sessions off, plain entries).
        self._own_session = Session(self, keep_failed=False) if client_sessions else None
        self._started = False
        self._stopped = False
        consensus.runtime = self

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise StoppedError("a member can be started only once")
        self._started = True
        self.transport.serve(self.listen_address, self)
        self._apply.start()
        self._compact.start()
        self._submit_worker.start()
        self.consensus.start()
        self._sync_replicators()
        self._election.start()
        self.leader_watch.enable()
        if self._join is not None:
            self._join.start()

    def stop(self) -> None:
        if self._stopped:
            return
        with self._peers_lock:
            self._stopped = True
        self.consensus.stop()
        workers: list[Worker | Replicator] = [self._election, self._apply, self._compact, self._submit_worker,
                                              *self._replicators.values(), *self._retired,
                                              *([self._join] if self._join is not None else [])]
        for worker in workers:
            worker.signal_stop()
        self.applier.wake()
        self.submitter.wake()
        for worker in workers:
            worker.join()
        self.leader_watch.stop()
        self.transport.close()
        self._forwarders.shutdown(wait=True, cancel_futures=True)
        self.submitter.fail_queued(StoppedError(f"{self.id} stopped before the write was appended; it was not applied"))
        self.pending.fail_all(WriteInterruptedError(f"{self.id} stopped while the write was in flight; it may "
                                                    "still apply"))

    # --- Runtime: what the core's steps wake (called without the consensus lock) ------------

    def wake_senders(self) -> None:
        for replicator in list(self._replicators.values()):
            replicator.wake()

    def wake(self, effects: Effects) -> None:
        if effects.wake_applier:
            self.applier.wake()
        if effects.wake_timer:
            self._election.wake()
        if effects.leader_changed:
            with self._leader_signal:
                self._leader_signal.notify_all()
            self.leader_watch.changed()
        if effects.peers_changed:
            self._sync_replicators()

    def _sync_replicators(self) -> None:
        """One replicator per peer of the configuration in effect now (read afresh: effects of two
        steps may be carried out in either order)."""
        with self._peers_lock:
            if self._stopped:
                return
            peers = self.consensus.peers
            for peer in peers - self._replicators.keys():
                replicator = Replicator(self._tag, self.consensus, self.transport, peer, self.clock, self.identity)
                self._replicators[peer] = replicator
                if self._started:
                    replicator.start()
            # Retired threads end on their own; only those still running are kept for stop() to join.
            self._retired = [replicator for replicator in self._retired if not replicator.finished]
            for peer in self._replicators.keys() - peers:
                replicator = self._replicators.pop(peer)
                replicator.signal_stop()
                self._retired.append(replicator)

    # --- RpcHandler ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Any:
        if isinstance(request, ForwardRequest):
            return self._handle_forward(request)
        if isinstance(request, JoinMember):
            timeout = max(request.timeout_ms, 1) / 1000 if request.timeout_ms else self.membership_timeout
            change = self.change_membership(add=[request.member_id], wait=timeout)
            return JoinMemberResponse(change.state is ChangeState.DONE)
        return self.consensus.handle_request(request)

    def _handle_forward(self, request: ForwardRequest) -> ForwardResponse:
        timeout = max(request.timeout_ms, 1) / 1000
        if request.kind in (ForwardKind.WRITE, ForwardKind.WRITE_INDEXED):
            command = decode_command(request.payload)
            if not isinstance(command, WriteCommand):
                raise CommandError("forwarded write is not a WriteCommand", "TypeError")
            return self._answer_write(EntryKind.COMMAND, request, timeout, request.kind is ForwardKind.WRITE_INDEXED)
        if request.kind in (ForwardKind.CLIENT_REQUEST, ForwardKind.CLIENT_REQUEST_INDEXED):
            ClientRequest.decode(request.payload)   # refuse garbage before it reaches the log (EncodingError)
            return self._answer_write(EntryKind.CLIENT_REQUEST, request, timeout,
                                      request.kind is ForwardKind.CLIENT_REQUEST_INDEXED)
        if request.kind is ForwardKind.READ_INDEX:
            return ForwardResponse(encode_value(self._read_index_here(self.clock() + timeout)))
        if request.kind is ForwardKind.CHANGE_MEMBERS:
            change = decode_value(request.payload)   # its shape was checked on receipt (rpc.validation)
            return ForwardResponse(encode_value(self._change_membership_here(
                change["add"], change["remove"], timeout, change.get("learners", ())).to_json()))
        if request.kind is ForwardKind.TRANSFER_LEADERSHIP:
            return ForwardResponse(encode_value(self._transfer_here(request.payload.decode() or None, timeout)))
        raise CommandError(f"{request.kind.value} is not supported by this member", "NotImplementedError")

    # --- membership and leadership ----------------------------------------------------------------

    def change_membership(self, add: Collection[str] = (), remove: Collection[str] = (),
                          wait: float | None = None, learners: Collection[str] = ()) -> MembershipChange:
        """Add and remove members, add ``learners`` that stay learners (forwarded to the leader);
        waits up to ``wait`` seconds (default:
        the membership timeout) for the change to finish and returns how far it got: DONE, or the
        state it is in when the wait ends (it goes on: a member being added stays a learner until
        it has started and caught up; removing it again cancels its addition). Another change in
        progress makes this one retry until the wait ends (then MembershipChangeError)."""
        done_by = self.clock() + (self.membership_timeout if wait is None else wait)
        request = {"add": sorted(add), "remove": sorted(remove)}
        if learners:   # only then: a member from before learners reads exactly add and remove
            request["learners"] = sorted(learners)
        payload = encode_value(request)

        def attempt(remaining: float) -> MembershipChange:
            leader_wait = max(done_by - self.clock(), 0)
            if self.consensus.is_leader:
                return self._change_membership_here(add, remove, leader_wait, learners)
            answer = self._forward(self._known_leader(remaining), ForwardKind.CHANGE_MEMBERS, payload,
                                   min(remaining, leader_wait + FORWARD_MARGIN))
            return MembershipChange.from_json(answer)
        # Even with no wait, there is time to find the leader and hand it the request.
        deadline = done_by + CHANGE_START_TIME
        # Retrying is safe: asking again for the change in progress joins it.
        return self._until_deadline(deadline, attempt, MembershipChangeError,
                                    _CERTAINLY_NOT_APPLIED + (MembershipChangeInProgressError, LostLeadershipError))

    def _change_membership_here(self, add: Collection[str], remove: Collection[str], wait: float,
                                learners: Collection[str] = ()) -> MembershipChange:
        for binding in (*add, *learners):
            self._check_new_name(binding)
        future = self.consensus.request_membership_change(add, remove, learners)
        try:
            return future.result(max(wait, 0))
        except FutureTimeout:
            return self.consensus.membership_change() or future.result(0)

    def _check_new_name(self, binding: str) -> None:
        """Refuse to add a member that is already in the cluster under another name (this leader
        included): it would be replicated to twice and count as a voter that never votes."""
        members = self.consensus.configuration.members
        if binding in members:
            return   # the same name: adding it again changes nothing
        if self.identity.is_self(binding):
            raise MembershipChangeError(f"{binding} is this member ({self.id}) under another name; "
                                        "it is already in the cluster")
        for member in sorted(members):
            if same_endpoint(binding, member):
                raise MembershipChangeError(f"{binding} is the member {member} under another name; "
                                            "it is already in the cluster")

    def transfer_leadership(self, to: str | None = None, timeout: float | None = None) -> bool:
        """Hand leadership to ``to`` (or the most up-to-date voter); True once it moved."""
        deadline = self.clock() + (self.leader_timeout if timeout is None else timeout)

        def attempt(remaining: float) -> bool:
            if self.consensus.is_leader:
                return self._transfer_here(to, remaining)
            return self._forward(self._known_leader(remaining), ForwardKind.TRANSFER_LEADERSHIP,  # type: ignore[no-any-return]   # decoded from the wire
                                 (to or "").encode(), remaining)
        return self._until_deadline(deadline, attempt, LeaderTimeoutError, (UnreachableError, StoppedError))

    def _transfer_here(self, to: str | None, timeout: float) -> bool:
        return self._wait(self.consensus.request_leadership_transfer(to), timeout, LeaderTimeoutError,
                          "leadership transfer did not complete within the timeout")

    # --- writes -------------------------------------------------------------------------------

    def write(self, command: WriteCommand, timeout: float | None = None, idempotency_key: str | None = None,
              fingerprint: str | None = None, indexed: bool = False) -> Any:
        """Replicate ``command`` and return its result once applied on the leader. With client
        sessions (the default) the member's own session numbers it, so that its retries (after a
        lost reply, a leader change, a forward that timed out) never apply it twice; an
        ``idempotency_key`` makes any retry under that key, from any client, get the first outcome.
        With ``indexed``, a :class:`~ckite.write_result.WriteResult` (``CKite.apply``)."""
        data = encode_command(command)
        timeout = self.write_timeout if timeout is None else timeout
        if idempotency_key is not None:
            if self._own_session is None:
                raise ValueError("idempotency keys need client sessions (the member was built without them)")
            fingerprint = fingerprint or hashlib.sha256(data).hexdigest()
        if self._own_session is None:
            deadline = self.clock() + timeout
            return self._until_deadline(deadline, lambda remaining: self._write_plain(data, remaining, indexed),
                                        WriteTimeoutError, _CERTAINLY_NOT_APPLIED)
        session = self._own_session
        return retry_expired(session, lambda: session.write(data, timeout, idempotency_key, fingerprint, indexed))

    def write_async(self, command: WriteCommand, timeout: float | None = None, indexed: bool = False) -> Future[Any]:
        """Like :meth:`write`, but returns at once with a future of the result (one attempt on the
        leader; a follower forwards on a pool thread, retrying as :meth:`write`).

        The future fails with WriteTimeoutError once ``timeout`` passes without the write applied.
        With ``indexed`` it completes with a :class:`~ckite.write_result.WriteResult`.

        On the leader the write is a plain entry even with client sessions on: it is proposed
        once and never retried, and a log entry applies once, so the member's session would add
        only its cost. A write that must survive retries goes through ``CKite.session()``.
        """
        self._check_running()
        timeout = self.write_timeout if timeout is None else timeout
        if not self.consensus.is_leader:
            return self.in_background(self.write, command, timeout, None, None, indexed)
        return self.submitter.submit(EntryKind.COMMAND, encode_command(command), timeout, indexed)

    def _write_plain(self, data: bytes, remaining: float, indexed: bool = False) -> Any:
        if self.consensus.is_leader:
            return self._wait(self.submitter.propose_now(EntryKind.COMMAND, data, remaining, indexed), remaining,
                              WriteTimeoutError, "write not applied within the timeout")
        return self._forward_write(ForwardKind.WRITE, data, remaining, indexed)

    def send_client_request(self, payload: bytes, remaining: float, indexed: bool = False) -> Any:
        """One attempt of a session's request (an encoded ClientRequest), through the leader."""
        self._check_running()
        if self.consensus.is_leader:
            return self._wait(self.submitter.propose_now(EntryKind.CLIENT_REQUEST, payload, remaining, indexed),
                              remaining, WriteTimeoutError, "write not applied within the timeout; it may still apply")
        return self._forward_write(ForwardKind.CLIENT_REQUEST, payload, remaining, indexed)

    def send_client_request_async(self, payload: bytes, timeout: float, indexed: bool = False,
                                  future: WriteFuture | None = None) -> Future[Any]:
        """One attempt, its future at once: ``future`` itself on the leader (when given), else a
        pool thread's, forwarding."""
        self._check_running()
        if self.consensus.is_leader:
            return self.submitter.submit(EntryKind.CLIENT_REQUEST, payload, timeout, indexed, future)
        return self.in_background(self.send_client_request, payload, timeout, indexed)

    def in_background(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """``call(*args)`` on the member's forwarding pool: a future at once for a blocking call."""
        return self._forwarders.submit(call, *args)

    def pause_before_retry(self) -> None:
        """A new leader may be being elected: back off briefly before the next attempt."""
        time.sleep(RETRY_PAUSE)

    def _answer_write(self, kind: EntryKind, request: ForwardRequest, timeout: float, indexed: bool) -> ForwardResponse:
        """A forwarded write (its encoded command or client request, checked): only the leader
        accepts it (no second hop, so no forwarding loops). An indexed one is answered
        ``[result, index, term]``."""
        future = self.submitter.propose_now(kind, request.payload, timeout, indexed)
        answer = self._wait(future, timeout, WriteTimeoutError,
                            "forwarded write not applied within the timeout; it may still apply")
        if indexed:
            answer = [answer.result, answer.index, answer.term]
        return ForwardResponse(encode_value(answer))

    def _forward_write(self, kind: ForwardKind, payload: bytes, remaining: float, indexed: bool) -> Any:
        """A write through the leader: its result, or with ``indexed`` its WriteResult."""
        leader = self._known_leader(remaining)
        if not indexed:
            return self._forward(leader, kind, payload, remaining)
        kind = ForwardKind.WRITE_INDEXED if kind is ForwardKind.WRITE else ForwardKind.CLIENT_REQUEST_INDEXED
        result, index, term = self._forward(leader, kind, payload, remaining)
        return WriteResult(result, index, term)

    # --- reads --------------------------------------------------------------------------------

    def read(self, command: ReadCommand, timeout: float | None = None) -> Any:
        """Linearizable read. On the leader: from its lease when lease reads are on and it holds,
        else through a ReadIndex round. On any other member: from its own state machine once it
        has applied a read index the leader gave it (one request for all the reads waiting here)."""
        lease_index = self.consensus.lease_read_index()
        if lease_index is not None and self.applier.applied_index >= lease_index:
            return self.read_local(command)   # the lease's common case: nothing to wait for, no retry loop
        deadline = self.clock() + (self.read_timeout if timeout is None else timeout)
        return self._until_deadline(deadline, lambda remaining: self._read_once(command, deadline),
                                    ReadTimeoutError, _CERTAINLY_NOT_APPLIED + (LostLeadershipError, RpcError))

    def _read_once(self, command: ReadCommand, deadline: float) -> Any:
        self._caught_up(deadline)
        return self.read_local(command)

    def _caught_up(self, deadline: float) -> int:
        """Wait until this member's state machine has applied everything committed before the
        call (a read index: the leader's own, or one it gave this follower); that index."""
        if self.consensus.is_leader:
            index = self._read_index_here(deadline)
        else:
            index = self._read_rounds.read_index(deadline)
        if not self.applier.wait_applied(index, max(deadline - self.clock(), 0)):
            raise ReadTimeoutError(f"state machine did not reach index {index} within the timeout")
        return index

    def barrier(self, timeout: float | None = None) -> int:
        """Return once every write committed before the call is applied here; the index reached."""
        deadline = self.clock() + (self.read_timeout if timeout is None else timeout)
        return self._until_deadline(deadline, lambda remaining: self._caught_up(deadline),
                                    ReadTimeoutError, _CERTAINLY_NOT_APPLIED + (LostLeadershipError, RpcError))

    def _fetch_read_index(self, timeout: float) -> int:
        """A read index from the leader, for a round of this follower's reads."""
        return self._forward(self._known_leader(timeout), ForwardKind.READ_INDEX, b"", timeout)  # type: ignore[no-any-return]   # decoded from the wire

    def _read_index_here(self, deadline: float) -> int:
        """The index a linearizable read may be answered at, as leader. Under a leader lease the
        commit index is the read index at once, on this thread: no quorum round, no future.
        Without one (lease reads off, expired, revoked, or no entry of this term committed yet)
        the read takes a ReadIndex round."""
        read_index = self.consensus.lease_read_index()
        if read_index is None:
            read_index = self._wait(self.consensus.request_read(), deadline - self.clock(), ReadTimeoutError,
                                    "leadership not confirmed by a quorum within the timeout")
        return read_index

    def read_local(self, command: ReadCommand) -> Any:
        """Run ``command`` on this member's state machine: fast, possibly stale."""
        with self.applier.state_machine_lock:
            try:
                return self.applier.state_machine.apply(command)
            except Exception as exc:
                raise CommandError(str(exc), type(exc).__name__) from exc

    # --- leadership ---------------------------------------------------------------------------

    def is_leader(self, timeout: float | None = None) -> bool:
        """Wait for a leader to be known; True only if this member leads and a quorum confirms it."""
        remaining = self.leader_timeout if timeout is None else timeout
        deadline = self.clock() + remaining
        self._known_leader(remaining)   # LeaderTimeoutError when none is known, as always
        try:
            self.verify_leader(deadline - self.clock())
        except (NotLeaderError, LeaderTimeoutError):
            return False
        return True

    def verify_leader(self, timeout: float | None = None) -> None:
        """Return only if this member leads and a quorum confirms it now (a ReadIndex round, or a
        valid lease); NotLeaderError (with the leader it knows) or LeaderTimeoutError otherwise."""
        remaining = self.leader_timeout if timeout is None else timeout
        deadline = self.clock() + remaining
        leader = self._known_leader(remaining)
        if not self.consensus.is_leader:
            raise NotLeaderError(f"{self.id} is not the leader", leader)
        if self.consensus.lease_read_index() is not None:   # a lease is a quorum's confirmation too
            return
        try:
            self._wait(self.consensus.request_read(), deadline - self.clock(), LeaderTimeoutError,
                       f"{self.id}: leadership not confirmed by a quorum within the timeout")
        except LostLeadershipError as exc:
            raise NotLeaderError(f"{self.id} lost leadership while confirming it", self.consensus.leader_id) from exc

    def wait_for_leader(self, timeout: float | None = None) -> str:
        """The leader's binding, once one is known (LeaderTimeoutError when none within ``timeout``)."""
        return self._known_leader(self.leader_timeout if timeout is None else timeout)

    def on_leader_change(self, callback: LeaderCallback) -> Callable[[], None]:
        """``callback(leader)`` on the leader-watch thread at each change; returns its unsubscriber."""
        return self.leader_watch.subscribe(callback)

    def _known_leader(self, timeout: float) -> str:
        with self._leader_signal:
            found = self._leader_signal.wait_for(
                lambda: self.consensus.leader_id is not None or self._stopped, max(timeout, 0))
            self._check_running()
            if not found:
                raise LeaderTimeoutError(f"no leader known to {self.id} within {timeout:.3f}s")
            return self.consensus.leader_id  # type: ignore[return-value]   # set when wait_for returned

    # --- helpers ------------------------------------------------------------------------------

    def _forward(self, leader: str, kind: ForwardKind, payload: bytes, remaining: float) -> Any:
        """Ask the leader; it gets a little less time than the call, so that it answers (with its own
        timeout error) before the socket here gives up and leaves the outcome unknown."""
        if leader == self.id:
            raise NotLeaderError("leadership changed while forwarding")
        leader_budget = remaining - min(FORWARD_MARGIN, remaining / 2)
        request = ForwardRequest(kind, payload, max(int(leader_budget * 1000), 1))
        response: ForwardResponse = self.transport.call(leader, request, remaining)  # type: ignore[assignment]
        return decode_value(response.result)

    def _until_deadline(self, deadline: float, attempt: Callable[[float], T], timeout_error: type,
                        retryable: tuple[type[CKiteError], ...]) -> T:
        """Retry ``attempt`` while it fails with a ``retryable`` error and time remains."""
        while True:
            self._check_running()
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise timeout_error(f"{self.id}: no leader could complete the request within the timeout")
            try:
                return attempt(remaining)
            except retryable as exc:
                if self._stopped:
                    raise StoppedError(f"{self.id} stopped") from exc
                if deadline - self.clock() <= RETRY_PAUSE:
                    if isinstance(exc, LeaderTimeoutError):
                        raise
                    raise timeout_error(f"{self.id}: gave up: {exc}") from exc
                time.sleep(RETRY_PAUSE)   # a new leader is being elected; back off briefly

    @staticmethod
    def _wait(future: Future[T], timeout: float, timeout_error: type, message: str) -> T:
        try:
            return future.result(max(timeout, 0))
        except FutureTimeout:
            raise timeout_error(message) from None

    def _check_running(self) -> None:
        if self._stopped or not self._started:
            raise StoppedError(f"{self.id} is not running")
        if self.consensus.failure is not None:
            failure = self.consensus.failure
            raise MemberFailedError(f"{self.id} is out of service: {failure}") from failure

    def snapshot_now(self, timeout: float | None = None) -> int:
        """Snapshot the state machine now and compact the log; the snapshot's index."""
        self._check_running()
        return self._wait(self.applier.snapshot_now(), SNAPSHOT_TIMEOUT if timeout is None else timeout,
                          SnapshotTimeoutError, f"{self.id}: the snapshot was not stored within the timeout; "
                          "it goes on")

    def status(self) -> dict[str, Any]:
        return self.consensus.status()
