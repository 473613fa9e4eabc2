"""The consensus object: Raft's persistent and volatile state, and every role transition.

This is the deterministic core. It never sleeps, spawns a thread or touches the network:
messages and timeouts come in through its methods, and what must be sent comes out of
:meth:`Consensus.next_request`. The threaded runtime (:mod:`ckite.runtime`) and the
simulation (``tests/simulation``) drive the very same object; only the clock differs.

All public methods take :attr:`Consensus.lock`. The :class:`ConsensusListener` callbacks run
with that lock held and must only wake other threads.
"""
from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Protocol, Sequence

from ckite.consensus.candidate import Candidate
from ckite.consensus.election import candidate_log_is_up_to_date, random_election_timeout
from ckite.consensus.follower import Follower, Joiner
from ckite.consensus.leader import Leader
from ckite.consensus.lifecycle import Failed, Starter, Stopped
from ckite.consensus.membership import Configuration
from ckite.consensus.reconfiguration import MembershipChange, derived_change
from ckite.consensus.role import Role
from ckite.consensus.settings import RaftSettings
from ckite.errors import CKiteError, NotLeaderError, ProtocolError, StorageError, StoppedError
from ckite.log.entry import EntryKind, LogEntry
from ckite.log.guarded_storage import GuardedStorage
from ckite.log.raft_log import RaftLog
from ckite.log.snapshot import Snapshot
from ckite.log.storage import LogStorage
from ckite.messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot, InstallSnapshotResponse, Request,
                            RequestVote, RequestVoteResponse, TimeoutNow, TimeoutNowResponse)
from ckite.metrics import MemberMetrics

logger = logging.getLogger(__name__)


class ConsensusListener(Protocol):
    """How the core tells its driver that something happened (called with the lock held)."""

    def entries_appended(self) -> None:
        """New entries, or a new read round: peer senders may have something to send."""

    def committed(self, commit_index: int) -> None:
        """The commit index moved: the applier has work."""

    def truncated(self, from_index: int) -> None:
        """Entries from ``from_index`` on were removed: their clients must hear so."""

    def snapshot_installed(self, snapshot: Snapshot) -> None:
        """A leader's snapshot replaced the log: the applier must restore the state machine."""

    def role_changed(self, role: Role) -> None:
        """A new role (or leader) is in place: timers and senders must re-read their deadlines."""

    def peers_changed(self, peers: frozenset[str]) -> None:
        """The configuration changed who this member talks to."""


class NullListener:
    """A listener that ignores everything (the simulation polls instead)."""

    def entries_appended(self) -> None: ...
    def committed(self, commit_index: int) -> None: ...
    def truncated(self, from_index: int) -> None: ...
    def snapshot_installed(self, snapshot: Snapshot) -> None: ...
    def role_changed(self, role: Role) -> None: ...
    def peers_changed(self, peers: frozenset[str]) -> None: ...


class Consensus:
    """One member's Raft state machine (Figure 2), with pre-vote, check-quorum and ReadIndex."""

    def __init__(self, member_id: str, storage: LogStorage, initial_configuration: Configuration,
                 settings: RaftSettings = RaftSettings(), *, clock: Callable[[], float],
                 rng: random.Random | None = None, listener: ConsensusListener | None = None,
                 join: bool = False) -> None:
        self.lock = threading.RLock()
        self.member_id = member_id
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.listener: ConsensusListener = listener or NullListener()
        self.join = join
        self._storage = storage = GuardedStorage(storage, self._storage_failed)
        #: The error that took this member out of service (None while healthy).
        self.failure: CKiteError | None = None
        stored = storage.load()
        self.term = stored.term
        self.voted_for = stored.voted_for
        self.metrics = MemberMetrics()
        #: The latest durable snapshot; everything up to its last index is committed.
        self.snapshot: Snapshot | None = stored.snapshot
        self.log = RaftLog(storage, stored.entries, self.metrics.append_latency, stored.snapshot)
        self.commit_index = stored.snapshot.last_index if stored.snapshot else 0
        self.applied_index = 0
        self.leader_id: str | None = None
        self.last_leader_contact: float | None = None
        #: Until then (clock time) this member refuses non-transfer votes as if it had just heard
        #: from a leader: set at start when it may have acknowledged one before (see start()).
        self.votes_refused_until = float("-inf")
        self.election_deadline = 0.0
        snapshot_index = stored.snapshot.last_index if stored.snapshot else 0
        #: The configuration before the first one in ``_configurations``: the snapshot's, or
        #: the one the member was built with when no snapshot exists.
        self._base_configuration = (Configuration.decode(stored.snapshot.configuration) if stored.snapshot
                                    else initial_configuration)
        self._configurations: list[tuple[int, Configuration]] = [
            (entry.index, Configuration.decode(entry.data))
            for entry in stored.entries if entry.kind == EntryKind.CONFIGURATION and entry.index > snapshot_index]
        self.role: Role = Starter(self)
        self._warned_own_id = False

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            if self.failure is not None:
                return   # failed while starting (e.g. its snapshot cannot be restored): stays out
            now = self.clock()
            if self.term > 0 and self.settings.check_quorum:
                # Before it stopped, this member may have acknowledged a leader that now counts
                # on it to refuse votes for min_election_timeout (check-quorum's vote refusal,
                # and the leader lease built on it). It forgot when: refuse for a whole window.
                self.votes_refused_until = now + self.settings.min_election_timeout
            joining = self.join and self.member_id not in self.configuration.members
            self._set_role(Joiner(self) if joining else Follower(self), now)
            if self.configuration.voters == {self.member_id} and not self.configuration.is_joint:
                self.become_candidate(now, transfer=False)   # a one-member cluster need not wait

    def stop(self) -> None:
        with self.lock:
            self._set_role(Stopped(self), self.clock())

    def fail(self, error: CKiteError) -> None:
        """Take the member out of service for good (until restarted): see :class:`Failed`."""
        with self.lock:
            if self.failure is not None or isinstance(self.role, Stopped):
                return
            self.failure = error
            logger.error("%s: out of service: %s", self.member_id, error)
            self._set_role(Failed(self, str(error)), self.clock())

    def _storage_failed(self, error: StorageError) -> None:
        self.fail(error)

    @property
    def configuration(self) -> Configuration:
        """The latest configuration in the log, committed or not: it takes effect on append (§6)."""
        return self._configurations[-1][1] if self._configurations else self._base_configuration

    @property
    def configuration_index(self) -> int:
        """Index of the entry holding the current configuration (the snapshot's index, or 0,
        when the log holds none)."""
        if self._configurations:
            return self._configurations[-1][0]
        return self.snapshot.last_index if self.snapshot else 0

    @property
    def peers(self) -> frozenset[str]:
        """Who this member talks to: the configuration's members, and for a leader also the
        members it removed that have not yet received the configuration removing them."""
        if isinstance(self.role, Leader):
            return frozenset(self.role.progress)
        return self.configuration.members - {self.member_id}

    @property
    def is_joining(self) -> bool:
        """A new member waiting to be added (it never stands for election meanwhile)."""
        return isinstance(self.role, Joiner)

    @property
    def is_leader(self) -> bool:
        return isinstance(self.role, Leader)

    # --- inbound requests ---------------------------------------------------------------------

    def handle_request(self, request: Request) -> Any:
        """Answer a peer's RequestVote / AppendEntries / InstallSnapshot / TimeoutNow."""
        with self.lock:
            if not self.role.accepts_rpcs:
                raise StoppedError(f"{self.member_id} is {self.role.name}")
            self._refuse_own_id(request)
            now = self.clock()
            if isinstance(request, AppendEntries):
                return self._on_append_entries(request, now)
            if isinstance(request, RequestVote):
                return self._on_request_vote(request, now)
            if isinstance(request, TimeoutNow):
                return self._on_timeout_now(request, now)
            if isinstance(request, InstallSnapshot):
                return self._on_install_snapshot(request, now)
            raise TypeError(f"consensus does not handle {type(request).__name__}")

    def _refuse_own_id(self, request: Request) -> None:
        """A request claiming to come from this member's own id is this member talking to itself
        under another name, or another process using its id: never acted on, said once."""
        sender = request.candidate_id if isinstance(request, RequestVote) else getattr(request, "leader_id", None)
        if sender != self.member_id:
            return
        if not self._warned_own_id:
            self._warned_own_id = True
            logger.warning("%s: refusing %s that claims to come from this member's own id: is another process "
                           "using it, or does the configuration name this member twice? (said once)",
                           self.member_id, type(request).__name__)
        raise ProtocolError(f"{self.member_id} refuses requests claiming to come from its own id")

    def _on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        if request.term < self.term:
            return AppendEntriesResponse(self.term, False)
        if request.term > self.term:
            self._adopt_term(request.term, now)
        if isinstance(self.role, Leader):
            logger.error("%s: AppendEntries from %s in my own term %d", self.member_id, request.leader_id,
                         self.term)
        return self.role.on_append_entries(request, now)

    def _on_install_snapshot(self, request: InstallSnapshot, now: float) -> InstallSnapshotResponse:
        if request.term < self.term:
            return InstallSnapshotResponse(self.term, False)
        if request.term > self.term:
            self._adopt_term(request.term, now)
        if isinstance(self.role, Candidate):
            self.become_follower(now)   # the leader of our term exists (§5.2)
        return self.role.on_install_snapshot(request, now)

    def _on_request_vote(self, request: RequestVote, now: float) -> RequestVoteResponse:
        up_to_date = candidate_log_is_up_to_date(request.last_log_term, request.last_log_index,
                                                 self.log.last_term, self.log.last_index)
        voters = self.configuration.all_voters
        if voters and request.candidate_id not in voters and not up_to_date:
            # A member removed by a configuration it never received keeps campaigning; its
            # higher term must not depose our leader (thesis §4.2.3). It lacks the committed
            # entry that removed it, so its log is behind: refuse without adopting the term.
            # A candidate outside *our* configuration whose log is up to date may be a member
            # added while we were cut off (thesis §4.1): it is judged like any other.
            return RequestVoteResponse(self.term, False)
        repeated = request.term == self.term and self.voted_for == request.candidate_id
        if request.term >= self.term and not request.transfer and not repeated and self._in_leader_lease(now):
            # A current leader is alive: a candidate that lost contact must not depose it (thesis §4.2.3).
            # Its term may equal ours: a stray reply can have moved us to it without a vote.
            return RequestVoteResponse(self.term, False)
        if request.pre_vote:
            granted = request.term > self.term and up_to_date
            return RequestVoteResponse(request.term if granted else self.term, granted)
        if request.term > self.term:
            self._adopt_term(request.term, now)
        if request.term < self.term:
            return RequestVoteResponse(self.term, False)
        granted = up_to_date and self.voted_for in (None, request.candidate_id)
        if granted and self.voted_for is None:
            self.voted_for = request.candidate_id
            self._persist_term_and_vote()
        if granted:
            self.reset_election_deadline(now)
        return RequestVoteResponse(self.term, granted)

    def _on_timeout_now(self, request: TimeoutNow, now: float) -> TimeoutNowResponse:
        if request.term < self.term:
            return TimeoutNowResponse(self.term, False)
        if request.term > self.term:
            self._adopt_term(request.term, now)
        return TimeoutNowResponse(self.term, self.role.on_timeout_now(request, now))

    def _in_leader_lease(self, now: float) -> bool:
        """Whether to refuse a (pre-)vote for this or a newer term that is not a leadership transfer:
        this member leads, or heard from a leader (or restarted) less than min_election_timeout ago.

        Only time counts, not whether a leader is still known: adopting a newer term from a
        stray reply forgets the leader, yet that leader may hold a lease that counts on us.
        """
        if not self.settings.check_quorum:
            return False
        if isinstance(self.role, Leader) or now < self.votes_refused_until:
            return True
        return (self.last_leader_contact is not None
                and now - self.last_leader_contact < self.settings.min_election_timeout)

    # --- outbound requests and their replies -------------------------------------------------

    def next_request(self, peer: str) -> tuple[Request, Any] | None:
        """What to send to ``peer`` now (and a context to pass back with the reply), if anything."""
        with self.lock:
            return self.role.next_request(peer, self.clock())

    def peer_deadline(self, peer: str) -> float | None:
        """The clock time at which :meth:`next_request` for ``peer`` should be asked again."""
        with self.lock:
            return self.role.peer_deadline(peer)

    def outgoing(self, peer: str) -> tuple[list[tuple[Request, Any]], float | None]:
        """Everything to send to ``peer`` now (as :meth:`next_request` would give it, one by one)
        and :meth:`peer_deadline` after that, under one acquisition of the lock: the
        replicators take it once per wake-up, not once per request plus once to find out
        there is nothing more."""
        with self.lock:
            now = self.clock()
            requests = []
            while (item := self.role.next_request(peer, now)) is not None:
                requests.append(item)
            return requests, self.role.peer_deadline(peer)

    def handle_response(self, peer: str, request: Request, context: Any, response: Any) -> None:
        with self.lock:
            now = self.clock()
            term = getattr(response, "term", 0)
            if term > self.term and not (isinstance(request, RequestVote) and request.pre_vote
                                         and getattr(response, "granted", False)):
                if isinstance(self.role, Leader) and peer not in self.configuration.members:
                    # A member this leader removed, still being told so, campaigned meanwhile:
                    # no voter of ours gave it that term's leadership, so it cannot depose us.
                    return
                self.observe_term(term, now)
                return
            if term == self.term or isinstance(request, RequestVote):
                self.role.on_response(peer, request, context, response, now)

    def handle_failure(self, peer: str, request: Request, context: Any) -> None:
        with self.lock:
            self.metrics.rpc_errors[peer] += 1
            self.role.on_failure(peer, request, context, self.clock())

    # --- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Run whatever deadline has passed (election timeout, check-quorum)."""
        with self.lock:
            self.role.on_tick(self.clock())

    def deadline(self) -> float | None:
        with self.lock:
            return self.role.deadline()

    def reset_election_deadline(self, now: float) -> None:
        self.election_deadline = now + random_election_timeout(
            self.rng, self.settings.min_election_timeout, self.settings.max_election_timeout)

    def heard_from_leader(self, leader_id: str, now: float) -> None:
        self.last_leader_contact = now
        self.reset_election_deadline(now)
        if self.leader_id != leader_id:
            self.leader_id = leader_id
            self.listener.role_changed(self.role)

    # --- client requests ----------------------------------------------------------------------

    def propose(self, items: Sequence[tuple[EntryKind, bytes]]) -> tuple[int, int]:
        """Append entries as leader (one durable write for the whole batch).

        Returns (first index, term). Raises :class:`NotLeaderError` on any other member.
        """
        with self.lock:
            self._check_accepts_writes()
            return self._append_as_leader(items), self.term

    def _check_accepts_writes(self) -> None:
        if not isinstance(self.role, Leader):
            raise NotLeaderError(leader=self.leader_id)
        if not self.role.accepts_writes:
            raise NotLeaderError("leadership is being handed over", leader=None)

    def propose_unpersisted(self, items: Sequence[tuple[EntryKind, bytes]]) -> tuple[int, int, list[LogEntry]]:
        """Like :meth:`propose`, but the entries are replicated while this leader writes them
        to its own disk (thesis §10.2.1). The caller must pass the returned entries to
        :meth:`persist_proposed` exactly once (from any thread, without the lock), and make no
        other durable write on its thread before that: the storage is reserved for them. Until
        then this leader does not count itself as holding them, so nothing commits (or is
        acknowledged) on its behalf. Returns (first index, term, entries to persist)."""
        with self.lock:
            self._check_accepts_writes()
            first = self.log.last_index + 1
            unpersisted = self.log.append_unpersisted(self._new_entries(first, items))
            self.on_entries_stored(unpersisted[-len(items):])
            self.listener.entries_appended()
            self.log.reserve_storage()   # last: nothing after it may fail and leave it held
            return first, self.term, unpersisted

    def persist_proposed(self, entries: Sequence[LogEntry]) -> None:
        """Write what :meth:`propose_unpersisted` returned, without the lock; raises StorageError
        (the member is then out of service)."""
        self.log.persist(entries)
        with self.lock:
            self.log.mark_persisted(entries)
            if isinstance(self.role, Leader):
                self.advance_commit_as_leader()

    def _new_entries(self, first: int, items: Sequence[tuple[EntryKind, bytes]]) -> list[LogEntry]:
        return [LogEntry(first + offset, self.term, data, kind) for offset, (kind, data) in enumerate(items)]

    def _append_as_leader(self, items: Sequence[tuple[EntryKind, bytes]]) -> int:
        first = self.log.last_index + 1
        entries = self._new_entries(first, items)
        self.log.append(entries)
        self.on_entries_stored(entries)
        self.advance_commit_as_leader()
        self.listener.entries_appended()
        return first

    def append_configuration(self, configuration: Configuration) -> None:
        """The leader's next configuration entry (membership changes); effective at once (§6)."""
        logger.info("%s: appending configuration %s", self.member_id, configuration.describe())
        self._append_as_leader([(EntryKind.CONFIGURATION, configuration.encode())])

    def request_membership_change(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Future:
        """Add and remove members (leader only): the future yields the
        :class:`~ckite.consensus.reconfiguration.MembershipChange` once the configuration asked
        for is committed. Raises NotLeaderError, or MembershipChangeInProgressError while
        another change is in progress (the same change again joins it)."""
        with self.lock:
            if not isinstance(self.role, Leader):
                raise NotLeaderError(leader=self.leader_id)
            return self.role.request_change(add, remove)

    def membership_change(self) -> MembershipChange | None:
        """The membership change in progress, as this member knows it (None: none)."""
        with self.lock:
            if isinstance(self.role, Leader):
                return self.role.reconfiguration.describe()
            return derived_change(self.configuration)

    def request_leadership_transfer(self, to: str | None) -> Future:
        """Hand leadership to ``to`` (or the most up-to-date voter); the future completes when
        this leader sees a newer term, or fails after an election timeout."""
        with self.lock:
            if not isinstance(self.role, Leader):
                raise NotLeaderError(leader=self.leader_id)
            return self.role.request_transfer(to, self.clock())

    def request_read(self) -> Future:
        """Start a ReadIndex read: the future yields the index the state machine must reach."""
        with self.lock:
            if not isinstance(self.role, Leader):
                raise NotLeaderError(leader=self.leader_id)
            return self.role.request_read()

    def lease_read_index(self) -> int | None:
        """The index a linearizable read may use at once, without a quorum round, when this
        member leads under a valid lease (``RaftSettings.lease_reads``); None otherwise, and the
        read must go through :meth:`request_read`."""
        if not self.settings.lease_reads:
            return None   # the default: no lock taken on every read for nothing
        with self.lock:
            role = self.role
            if not isinstance(role, Leader):
                return None
            return role.lease_read_index(self.clock())

    def set_applied(self, index: int) -> None:
        with self.lock:
            self.applied_index = max(self.applied_index, index)

    # --- snapshots ----------------------------------------------------------------------------

    def compaction_due(self, applied_index: int) -> bool:
        """Whether ``compaction_threshold`` entries were applied since the latest snapshot."""
        threshold = self.settings.compaction_threshold
        with self.lock:
            covered = self.snapshot.last_index if self.snapshot else 0
            return threshold > 0 and applied_index - covered >= threshold

    def take_snapshot(self, index: int, data: bytes) -> Snapshot | None:
        """Store ``data`` (the state machine as of applied ``index``) as the latest snapshot and
        delete the log up to ``compaction_trailing_entries`` before it. The trailing entries let
        a follower that is slightly behind catch up from the log rather than a snapshot."""
        with self.lock:
            if self.snapshot is not None and index <= self.snapshot.last_index:
                return None   # a newer snapshot was installed meanwhile
            term = self.log.term_at(index)
            if term is None or index > self.applied_index:
                raise ValueError(f"cannot snapshot at {index}: not an applied entry of the log")
            configuration = self.configuration_at(index)
            snapshot = Snapshot(index, term, configuration.encode(), data)
            discard_through = max(index - self.settings.compaction_trailing_entries, self.log.base_index)
            self.log.compact(snapshot, discard_through)
            self._adopt_snapshot_configuration(snapshot, configuration)
            self.metrics.snapshots_taken += 1
            logger.info("%s: snapshot at index %d (term %d, %d bytes); log now starts at %d",
                        self.member_id, index, term, len(data), self.log.first_index)
            return snapshot

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot the leader sent (§7); the applier then restores the state machine."""
        if snapshot.last_index <= self.commit_index:
            return   # we already hold (and will apply) everything it covers
        discarded_from = self.log.install(snapshot)
        before = self.configuration
        if discarded_from is not None:
            self._configurations = [(i, c) for i, c in self._configurations if i < discarded_from]
            self.listener.truncated(discarded_from)
        self._adopt_snapshot_configuration(snapshot, Configuration.decode(snapshot.configuration))
        self.commit_index = snapshot.last_index
        self.metrics.snapshots_installed += 1
        logger.info("%s: installed the leader's snapshot at index %d (term %d, %d bytes)",
                    self.member_id, snapshot.last_index, snapshot.last_term, len(snapshot.data))
        if self.configuration != before:
            self._configuration_changed()
        self.listener.snapshot_installed(snapshot)
        self.listener.committed(self.commit_index)

    def _adopt_snapshot_configuration(self, snapshot: Snapshot, configuration: Configuration) -> None:
        self.snapshot = snapshot
        self._base_configuration = configuration
        self._configurations = [(i, c) for i, c in self._configurations if i > snapshot.last_index]

    def snapshot_to_restore(self, applied_index: int) -> Snapshot | None:
        """The snapshot a state machine at ``applied_index`` must load before applying more."""
        with self.lock:
            if self.snapshot is not None and self.snapshot.last_index > applied_index:
                return self.snapshot
            return None

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in effect once the log up to ``index`` is applied."""
        for config_index, configuration in reversed(self._configurations):
            if config_index <= index:
                return configuration
        return self._base_configuration

    # --- transitions --------------------------------------------------------------------------

    def _set_role(self, role: Role, now: float) -> None:
        previous = self.role
        previous.end()
        self.role = role
        if not isinstance(role, (Follower, Stopped)):
            self.leader_id = self.member_id if isinstance(role, Leader) else None
        logger.info("%s: %r -> %r", self.member_id, previous, role)
        role.begin(now)
        self.listener.role_changed(role)

    def become_follower(self, now: float) -> None:
        self._set_role(Follower(self), now)

    def become_candidate(self, now: float, transfer: bool) -> None:
        if not self.settings.pre_vote or transfer:
            self.start_real_election(now, transfer)
        else:
            self._campaign(Candidate(self, pre_vote=True, transfer=False), now)

    def start_real_election(self, now: float, transfer: bool) -> None:
        self.term += 1
        self.metrics.elections += 1
        self.voted_for = self.member_id
        self.leader_id = None
        self._persist_term_and_vote()
        self._campaign(Candidate(self, pre_vote=False, transfer=transfer), now)

    def _campaign(self, candidate: Candidate, now: float) -> None:
        self._set_role(candidate, now)
        candidate.check_won(now)   # a one-voter cluster wins on its own vote

    def become_leader(self, now: float) -> None:
        self._set_role(Leader(self), now)

    def step_down(self, now: float, reason: str) -> None:
        logger.warning("%s: stepping down in term %d: %s", self.member_id, self.term, reason)
        self.leader_id = None
        self.become_follower(now)

    def observe_term(self, term: int, now: float) -> None:
        """A reply carried a newer term: we are out of date (§5.1)."""
        if term > self.term:
            self._adopt_term(term, now)

    def _adopt_term(self, term: int, now: float) -> None:
        self.term = term
        self.voted_for = None
        self.leader_id = None
        self._persist_term_and_vote()
        if isinstance(self.role, (Leader, Candidate)):
            self.become_follower(now)

    def _persist_term_and_vote(self) -> None:
        self._storage.save_term_and_vote(self.term, self.voted_for)

    # --- log bookkeeping ----------------------------------------------------------------------

    def append_leader_marker(self) -> int:
        """A new leader's first entry: the configuration if the log has none yet, else a no-op."""
        if not self._configurations and self.snapshot is None:
            item = (EntryKind.CONFIGURATION, self._base_configuration.encode())
        else:
            item = (EntryKind.NOOP, b"")
        first = self.log.last_index + 1
        entry = LogEntry(first, self.term, item[1], item[0])
        self.log.append([entry])
        self.on_entries_stored([entry])
        self.listener.entries_appended()
        return first

    def on_entries_stored(self, entries: Sequence[LogEntry]) -> None:
        """Configurations take effect as soon as they are in the log (§6)."""
        changed = False
        for entry in entries:
            if entry.kind == EntryKind.CONFIGURATION:
                self._configurations.append((entry.index, Configuration.decode(entry.data)))
                changed = True
        if changed:
            self._configuration_changed()

    def on_truncated(self, from_index: int) -> None:
        """A conflicting suffix was removed: roll back configurations it held, tell the clients."""
        if from_index <= self.commit_index:
            raise AssertionError(f"{self.member_id}: truncating committed entry {from_index} "
                                 f"(commit index {self.commit_index})")
        before = len(self._configurations)
        self._configurations = [(index, config) for index, config in self._configurations if index < from_index]
        if len(self._configurations) != before:
            self._configuration_changed()
        self.listener.truncated(from_index)

    def _configuration_changed(self) -> None:
        if isinstance(self.role, Leader):
            self.role.sync_progress(self.clock())
        elif isinstance(self.role, Joiner) and self.member_id in self.configuration.all_voters:
            self.become_follower(self.clock())   # added: from now on it may stand for election
        self.listener.peers_changed(self.peers)

    def advance_commit(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = min(index, self.log.last_index)
            self.listener.committed(self.commit_index)

    def advance_commit_as_leader(self) -> None:
        """§5.3/§5.4.2: commit the highest index a quorum holds, if it is of the current term."""
        leader = self.role
        assert isinstance(leader, Leader)
        # Never past this leader's own disk: what it compacts and applies is on its disk too.
        candidate = min(self.configuration.quorum_value(leader.match_indexes()), self.log.durable_index)
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self.advance_commit(candidate)
            leader.on_commit()

    # --- inspection ---------------------------------------------------------------------------

    def _state_name(self) -> str:
        """The role, or "Removed" for a member the configuration no longer includes."""
        if type(self.role) is Follower and self.member_id not in self.configuration.members:
            return "Removed"
        return self.role.name

    def status(self) -> dict:
        with self.lock:
            now = self.clock()
            last = self.log.last_index
            last_entry = self.log.entry(last) if len(self.log) else None
            return {
                "id": self.member_id,
                "term": self.term,
                "state": self._state_name(),
                "leader": self.leader_id,
                "votedFor": self.voted_for,
                "stateInfo": self.role.status(now),
                "configuration": self.configuration.describe(),
                "membershipChange": None if (change := self.membership_change()) is None else change.to_json(),
                "log": {"length": len(self.log), "firstIndex": self.log.first_index, "lastIndex": last,
                        "lastTerm": self.log.last_term, "commitIndex": self.commit_index,
                        "lastApplied": self.applied_index,
                        "snapshot": self.snapshot.describe() if self.snapshot else None,
                        "lastEntry": None if last_entry is None else {"kind": last_entry.kind.name,
                                                                      "data": last_entry.data}},
                "metrics": self.metrics.snapshot(),
            }
