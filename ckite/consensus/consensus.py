"""The consensus object: Raft's persistent and volatile state, and every role transition.

This is the deterministic core. It never sleeps, spawns a thread, touches the network or
waits on the disk. Every public method is a *step*: under :attr:`Consensus.lock` it changes
memory and records the consequences in an :class:`~ckite.consensus.effects.Effects`
(durable writes queued in the :class:`~ckite.log.log_writer.LogWriter`, futures to complete,
threads to wake), then, with the lock released, carries them out: senders woken, the writes
flushed, the futures completed, the other threads woken (see ``effects.py`` for why in that
order). A reply to a peer leaves only once every write decided before it is durable.

The threaded runtime (:mod:`ckite.runtime`) and the simulation (``tests/simulation``) drive
the very same object; only the clock and the :class:`~ckite.consensus.effects.Runtime` differ.
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, BinaryIO

from ckite.consensus.candidate import Candidate
from ckite.consensus.configurations import ConfigurationHistory
from ckite.consensus.effects import Effects, NoRuntime, Runtime
from ckite.consensus.election import candidate_log_is_up_to_date, random_election_timeout
from ckite.consensus.follower import Follower, Joiner
from ckite.consensus.leader import Leader
from ckite.consensus.lifecycle import Failed, Starter, Stopped
from ckite.consensus.membership import Configuration
from ckite.consensus.reconfiguration import MembershipChange, derived_change
from ckite.consensus.role import Role
from ckite.consensus.settings import RaftSettings
from ckite.consensus.status import member_status
from ckite.errors import CKiteError, NotLeaderError, ProtocolError, StoppedError, StorageError
from ckite.log.entry import EntryKind, LogEntry
from ckite.log.log_writer import LogWriter
from ckite.log.raft_log import RaftLog
from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_receiver import SnapshotReceiver
from ckite.log.snapshot_store import SnapshotStore
from ckite.log.storage import DurableWrite, LogStorage
from ckite.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Request,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TimeoutNowResponse,
)
from ckite.metrics.counts import MemberCounts

logger = logging.getLogger(__name__)

#: What a sender gets from :meth:`Consensus.outgoing`: the requests to send (each with its
#: context), when to ask again, and the log writer position they may not leave before.
Outgoing = tuple[list[tuple[Request, Any]], float | None, int]


class Consensus:
    """One member's Raft state machine (Figure 2), with pre-vote, check-quorum and ReadIndex."""

    def __init__(self, member_id: str, storage: LogStorage, initial_configuration: Configuration,
                 settings: RaftSettings = RaftSettings(), *, clock: Callable[[], float],
                 rng: random.Random | None = None, runtime: Runtime | None = None, join: bool = False,
                 metrics: MemberCounts | None = None) -> None:
        self.lock = threading.RLock()
        self.member_id = member_id
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.runtime: Runtime = runtime or NoRuntime()
        self.join = join
        #: The error that took this member out of service (None while healthy).
        self.failure: CKiteError | None = None
        self.metrics = metrics if metrics is not None else MemberCounts()
        self.writer = LogWriter(storage, self._on_durable, self.fail)
        #: The effects of the step in progress; None between steps, when only _step looks at it
        #: (every role runs inside a step), so it is typed as always there.
        self.effects: Effects = None  # type: ignore[assignment]
        self._step_start = 0          # the writer's last_seq when the step began: later ones are its own
        self._hard_state_seq = 0      # the latest write of term/vote or a truncation: what messages wait for
        stored = storage.load(settings.log_cache_bytes)
        self.term = stored.term
        self.voted_for = stored.voted_for
        self.snapshot_store = storage.snapshots
        #: The latest snapshot whose state is whole; everything up to its last index is committed.
        self.snapshot: Snapshot | None = usable_snapshot(member_id, stored.snapshots, storage.snapshots)
        self.receiver = SnapshotReceiver(storage.snapshots, lambda: self.snapshot,
                                         lambda snapshot, seconds: self.metrics.snapshot_written(
                                             "received", snapshot.size, seconds))
        snapshot = self.snapshot
        self.log = RaftLog(self._persist, stored.entries, snapshot, storage.read_entries, settings.log_cache_bytes)
        self.commit_index = snapshot.last_index if snapshot else 0
        self.applied_index = 0
        self.leader_id: str | None = None
        self.last_leader_contact: float | None = None
        #: Until then (clock time) this member refuses non-transfer votes as if it had just heard
        #: from a leader: set at start when it may have acknowledged one before (see start()).
        self.votes_refused_until = float("-inf")
        self.election_deadline = 0.0
        self.configurations = ConfigurationHistory(
            Configuration.decode(snapshot.configuration) if snapshot else initial_configuration,
            snapshot.last_index if snapshot else 0, stored.entries)
        self.role: Role = Starter(self)
        self._warned_own_id = False
        self._draw_compaction_jitter()

    # --- steps --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _step(self, reply: bool = False) -> Iterator[Effects]:
        """One step: decide under the lock, then carry the effects out without it. A ``reply``
        step (an answer to a peer) waits for every write decided before it, unless it says it
        rests on fewer (``Effects.reply_rests_on``); any other step only for the writes it made
        itself. A step inside a step adds to the outer one's effects."""
        with self.lock:
            if self.effects is not None:
                yield self.effects
                return
            effects = self.effects = Effects()
            self._step_start = self.writer.last_seq
            try:
                yield effects
            finally:
                self.effects = None
                last = self.writer.last_seq
                if last > self._step_start:
                    effects.barrier = last
                elif reply:
                    effects.barrier = last if effects.reply_rests_on is None else effects.reply_rests_on
        self._carry_out(effects)

    def _carry_out(self, effects: Effects) -> None:
        if effects.wake_senders:
            self.runtime.wake_senders()   # a leader's entries leave while it writes them (thesis §10.2.1)
        self.writer.flush(effects.barrier)
        effects.complete_futures()
        self.runtime.wake(effects)

    def _persist(self, write: DurableWrite) -> int:
        seq = self.writer.enqueue(write)
        if write.changes_hard_state:
            self._hard_state_seq = seq
        return seq

    def _on_durable(self, writes: Sequence[DurableWrite], seconds: float) -> None:
        """The log writer made ``writes`` durable: a leader may now count its own new entries."""
        self.metrics.append_latency.observe(seconds)
        with self._step():
            for write in writes:
                if write.entries:
                    self.log.mark_durable(write.entries)
            if isinstance(self.role, Leader):
                self.advance_commit_as_leader()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self._step():
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
        with self._step():
            self._set_role(Stopped(self), self.clock())

    def fail(self, error: CKiteError) -> None:
        """Take the member out of service for good (until restarted): see :class:`Failed`."""
        with self._step():
            if self.failure is not None or isinstance(self.role, Stopped):
                return
            self.failure = error
            logger.error("%s: out of service: %s", self.member_id, error)
            self._set_role(Failed(self, str(error)), self.clock())

    @property
    def configuration(self) -> Configuration:
        """The latest configuration in the log, committed or not: it takes effect on append (§6)."""
        return self.configurations.current

    @property
    def configuration_index(self) -> int:
        """Index of the entry holding the current configuration (the snapshot's index, or 0,
        when the log holds none)."""
        return self.configurations.current_index

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
        """Answer a peer's RequestVote / AppendEntries / InstallSnapshot / TimeoutNow; returns once
        everything the answer rests on is durable."""
        with self._step(reply=True):
            if not self.role.accepts_rpcs:
                raise StoppedError(f"{self.member_id} is {self.role.name}")
            self._refuse_own_id(request)
            now = self.clock()
            response: AppendEntriesResponse | RequestVoteResponse | TimeoutNowResponse | InstallSnapshotResponse | None
            if isinstance(request, AppendEntries):
                response = self._on_append_entries(request, now)
                if not request.entries and response.success and response.match_index <= self.log.durable_index:
                    # A heartbeat (either lane) matching what is on disk: only our term must be.
                    self.effects.reply_rests_on = self._hard_state_seq
            elif isinstance(request, RequestVote):
                response = self._on_request_vote(request, now)
            elif isinstance(request, TimeoutNow):
                response = self._on_timeout_now(request, now)
            elif isinstance(request, InstallSnapshot):
                response = self._on_install_snapshot(request, now)
                term = self.term
            else:
                raise TypeError(f"consensus does not handle {type(request).__name__}")
        if response is None:   # a chunk to heed: written to its file without the lock
            return self._receive_snapshot_chunk(request, term)  # type: ignore[arg-type]   # only it answers None
        return response

    def _receive_snapshot_chunk(self, request: InstallSnapshot, term: int) -> InstallSnapshotResponse:
        accepted, next_offset, snapshot = self.receiver.deliver(request)
        if snapshot is not None:
            with self._step(reply=True):
                self.install_snapshot(snapshot)
        return InstallSnapshotResponse(term, accepted, next_offset=next_offset)

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

    def _on_install_snapshot(self, request: InstallSnapshot, now: float) -> InstallSnapshotResponse | None:
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
        """What to send to ``peer`` now (and a context to pass back with the reply), if anything.
        The caller (a test or the simulation, which flush synchronously) sends it at once."""
        with self._step():
            item = self.role.next_request(peer, self.clock())
        return None if item is None else (self.materialize(*item), item[1])

    def materialize(self, request: Request, context: Any) -> Request:
        """``request`` with what the role left for the sender to fetch without the lock: the
        chunk of a snapshot's state an InstallSnapshot carries, read from its file."""
        if isinstance(request, InstallSnapshot) and request.size:
            request.data = self.snapshot_store.read_chunk(context.snapshot, request.offset,
                                                          self.settings.snapshot_chunk_bytes)
        elif isinstance(request, AppendEntries) and request.entries:
            request.entries = self.log.load(request.entries)   # a lagging follower's: read back from disk
        return request

    def lane_heartbeat(self, peer: str) -> tuple[tuple[Request, Any] | None, float | None]:
        """For the peer's heartbeat lane: a heartbeat to send now (with its context), if the
        leader has one, and when to ask again (None: a heartbeat interval from now)."""
        with self.lock:
            role = self.role
            if not isinstance(role, Leader):
                return None, None
            now = self.clock()
            return role.lane_heartbeat(peer, now), role.lane_deadline(peer, now)

    def peer_deadline(self, peer: str) -> float | None:
        """The clock time at which :meth:`next_request` for ``peer`` should be asked again."""
        with self.lock:
            return self.role.peer_deadline(peer)

    def outgoing(self, peer: str) -> Outgoing:
        """Everything to send to ``peer`` now (as :meth:`next_request` would give it, one by one),
        :meth:`peer_deadline` after that, and the log writer position the requests may not leave
        before (a candidate's term and vote; a leader's new entries need not wait), under one
        acquisition of the lock: the senders take it once per wake-up."""
        with self._step():
            now = self.clock()
            requests = []
            while (item := self.role.next_request(peer, now)) is not None:
                requests.append(item)
            return requests, self.role.peer_deadline(peer), self._hard_state_seq

    def handle_response(self, peer: str, request: Request, context: Any, response: Any) -> None:
        with self._step():
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
        self.metrics.rpc_failed(peer, type(request).__name__)   # before the lock: it waits on nothing
        with self._step():
            self.role.on_failure(peer, request, context, self.clock())

    # --- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Run whatever deadline has passed (election timeout, check-quorum)."""
        with self._step():
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
            self._role_changed()

    # --- client requests ----------------------------------------------------------------------

    def propose(self, items: Sequence[tuple[EntryKind, bytes]],
                appended: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """Append entries as leader: the followers get them while this leader writes them to its
        own disk (thesis §10.2.1, one durable write for the whole batch); returns (first index,
        term) once that write is done. ``appended(first, term)`` runs under the lock as soon as
        the entries are in the log, before anything can commit them (the caller registers the
        writes' futures there). Raises :class:`NotLeaderError` on any other member, and
        StorageError when the write fails (the member is then out of service)."""
        with self._step():
            self._check_accepts_writes()
            first = self._append_as_leader(items)
            if appended is not None:
                appended(first, self.term)
            return first, self.term

    def _check_accepts_writes(self) -> None:
        if not isinstance(self.role, Leader):
            raise NotLeaderError(leader=self.leader_id)
        if not self.role.accepts_writes:
            raise NotLeaderError("leadership is being handed over", leader=None)

    def _append_as_leader(self, items: Sequence[tuple[EntryKind, bytes]]) -> int:
        """Append as leader; it counts itself as holding them once the log writer flushed them."""
        first = self.log.last_index + 1
        entries = [LogEntry(first + offset, self.term, data, kind) for offset, (kind, data) in enumerate(items)]
        self.log.append(entries)
        self.on_entries_stored(entries)
        self.effects.wake_senders = True
        return first

    def append_configuration(self, configuration: Configuration) -> None:
        """The leader's next configuration entry (membership changes); effective at once (§6)."""
        logger.info("%s: appending configuration %s", self.member_id, configuration.describe())
        self._append_as_leader([(EntryKind.CONFIGURATION, configuration.encode())])

    def request_membership_change(self, add: Iterable[str] = (), remove: Iterable[str] = (),
                                  learners: Iterable[str] = ()) -> Future[MembershipChange]:
        """Add and remove members, add learners (leader only): the future yields the
        :class:`~ckite.consensus.reconfiguration.MembershipChange` once the configuration asked
        for is committed. Raises NotLeaderError, or MembershipChangeInProgressError while
        another change is in progress (the same change again joins it)."""
        with self._step():
            if not isinstance(self.role, Leader):
                raise NotLeaderError(leader=self.leader_id)
            return self.role.request_change(add, remove, learners)

    def membership_change(self) -> MembershipChange | None:
        """The membership change in progress, as this member knows it (None: none)."""
        with self.lock:
            if isinstance(self.role, Leader):
                return self.role.reconfiguration.describe()
            return derived_change(self.configuration)

    def request_leadership_transfer(self, to: str | None) -> Future[bool]:
        """Hand leadership to ``to`` (or the most up-to-date voter); the future completes when
        this leader sees a newer term, or fails after an election timeout."""
        with self._step():
            if not isinstance(self.role, Leader):
                raise NotLeaderError(leader=self.leader_id)
            return self.role.request_transfer(to, self.clock())

    def request_read(self) -> Future[int]:
        """Start a ReadIndex read: the future yields the index the state machine must reach."""
        with self._step():
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
            self.log.evict(min(self.applied_index, self.log.durable_index))

    # --- snapshots ----------------------------------------------------------------------------

    def compaction_due(self, applied_index: int) -> bool:
        """Whether ``compaction_threshold`` entries (plus this member's jitter) were applied since
        the latest snapshot. The jitter, drawn anew after each snapshot, keeps the members from
        all compacting at the same index: a cluster never pauses as one."""
        threshold = self.settings.compaction_threshold
        with self.lock:
            covered = self.snapshot.last_index if self.snapshot else 0
            return threshold > 0 and applied_index - covered >= threshold + self._compaction_jitter

    def _draw_compaction_jitter(self) -> None:
        self._compaction_jitter = self.rng.randint(0, self.settings.compaction_threshold // 4)

    def take_snapshot(self, index: int, content: bytes | Callable[[BinaryIO], None]) -> Snapshot | None:
        """Store the state machine as of applied ``index`` (``content``: its bytes, or a function
        that writes them to a file) as the latest snapshot, and delete the log it covers. Runs
        without the lock but for two short steps: the state goes to a new file of the snapshot
        store (fsynced, renamed into place), then its metadata and the log deletion are one
        durable write. The log is kept from the previous snapshot on, if there is one (so it can
        be fallen back on should the new one be found damaged), and ``compaction_trailing_entries``
        before the new one (so a follower slightly behind catches up from the log rather than a
        snapshot). None when a newer snapshot arrived meanwhile."""
        with self.lock:
            if self.snapshot is not None and index <= self.snapshot.last_index:
                return None   # a newer snapshot was installed meanwhile
            term = self.log.term_at(index)
            if term is None or index > self.applied_index:
                raise ValueError(f"cannot snapshot at {index}: not an applied entry of the log")
            configuration = self.configurations.at(index)
            previous = self.snapshot
        self.snapshot_store.retain([previous] if previous else [])   # at most it and the new one on disk
        began = time.perf_counter()
        snapshot = self._write_snapshot(index, term, configuration.encode(), content)
        self.metrics.snapshot_written("taken", snapshot.size, time.perf_counter() - began)
        with self._step():
            if self.snapshot is not previous:
                return None   # another snapshot was installed or taken meanwhile: this one is not needed
            discard_through = index - self.settings.compaction_trailing_entries
            if previous is not None:   # keep the log from it: it is what a damaged new one falls back on
                discard_through = min(discard_through, previous.last_index)
            discard_through = max(discard_through, self.log.base_index)
            self.log.compact(snapshot, discard_through)
            self.snapshot = snapshot
            self.configurations.rebase(configuration, index)
            self._draw_compaction_jitter()
            self.metrics.snapshots_taken.inc()
            logger.info("%s: snapshot at index %d (term %d, %d bytes); log now starts at %d",
                        self.member_id, index, term, snapshot.size, self.log.first_index)
        self.snapshot_store.retain([snapshot, *([previous] if previous else [])])
        return snapshot

    def _write_snapshot(self, index: int, term: int, configuration: bytes,
                        content: bytes | Callable[[BinaryIO], None]) -> Snapshot:
        writer = self.snapshot_store.create(index, term, configuration)
        try:
            if isinstance(content, bytes):
                writer.file.write(content)
            else:
                content(writer.file)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Adopt a snapshot the leader sent (§7), its state whole and durable in the snapshot
        store; the applier then restores the state machine from it."""
        if snapshot.last_index <= self.commit_index:
            return   # we already hold (and will apply) everything it covers
        before = self.configuration
        discarded_from = self.log.install(snapshot)
        if discarded_from is not None:
            self.configurations.truncate(discarded_from)   # the entries after the snapshot went too
        self.snapshot = snapshot
        self.configurations.rebase(Configuration.decode(snapshot.configuration), snapshot.last_index)
        self.commit_index = snapshot.last_index
        self.metrics.snapshots_installed.inc()
        logger.info("%s: installed the leader's snapshot at index %d (term %d, %d bytes)",
                    self.member_id, snapshot.last_index, snapshot.last_term, snapshot.size)
        if self.configuration != before:
            self._configuration_changed()
        self.effects.wake_applier = True

    def open_snapshot(self, snapshot: Snapshot) -> BinaryIO:
        """A reader of ``snapshot``'s state (for the applier's restore)."""
        return self.snapshot_store.open(snapshot)

    def snapshot_to_restore(self, applied_index: int) -> Snapshot | None:
        """The snapshot a state machine at ``applied_index`` must load before applying more."""
        with self.lock:
            if self.snapshot is not None and self.snapshot.last_index > applied_index:
                return self.snapshot
            return None

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in effect once the log up to ``index`` is applied."""
        return self.configurations.at(index)

    # --- transitions --------------------------------------------------------------------------

    def _set_role(self, role: Role, now: float) -> None:
        previous = self.role
        previous.end()
        self.role = role
        if not isinstance(role, (Follower, Stopped)):
            self.leader_id = self.member_id if isinstance(role, Leader) else None
        logger.info("%s: %r -> %r", self.member_id, previous, role)
        role.begin(now)
        self._role_changed()

    def _role_changed(self) -> None:
        """A new role or leader: timers, senders and callers waiting for a leader look again."""
        effects = self.effects
        effects.wake_timer = effects.wake_senders = effects.leader_changed = True
        self.metrics.leader_seen(self.leader_id, self.term)

    def become_follower(self, now: float) -> None:
        self._set_role(Follower(self), now)

    def become_candidate(self, now: float, transfer: bool) -> None:
        if not self.settings.pre_vote or transfer:
            self.start_real_election(now, transfer)
        else:
            self._campaign(Candidate(self, pre_vote=True, transfer=False), now)

    def start_real_election(self, now: float, transfer: bool) -> None:
        self.term += 1
        self.metrics.elections.inc()
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
        self._persist(DurableWrite(hard_state=(self.term, self.voted_for)))

    # --- log bookkeeping ----------------------------------------------------------------------

    def append_leader_marker(self) -> int:
        """A new leader's first entry: the configuration if the log has none yet, else a no-op."""
        if self.configurations.only_base and self.snapshot is None:
            item = (EntryKind.CONFIGURATION, self.configurations.base.encode())
        else:
            item = (EntryKind.NOOP, b"")
        return self._append_as_leader([item])

    def on_entries_stored(self, entries: Sequence[LogEntry]) -> None:
        """Configurations take effect as soon as they are in the log (§6)."""
        if self.configurations.add(entries):
            self._configuration_changed()

    def on_truncated(self, from_index: int) -> None:
        """A conflicting suffix was removed: roll back the configurations it held. The writes
        waiting on those entries learn their fate when their index is applied (a different
        entry: certainly not applied) or when their timeout passes: another leader may yet
        commit an entry this member lost (Figure 8), so losing it here proves nothing."""
        if from_index <= self.commit_index:
            raise AssertionError(f"{self.member_id}: truncating committed entry {from_index} "
                                 f"(commit index {self.commit_index})")
        if self.configurations.truncate(from_index):
            self._configuration_changed()

    def _configuration_changed(self) -> None:
        if isinstance(self.role, Leader):
            self.role.sync_progress(self.clock())
        elif isinstance(self.role, Joiner) and self.member_id in self.configuration.all_voters:
            self.become_follower(self.clock())   # added: from now on it may stand for election
        self.effects.peers_changed = True

    def advance_commit(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = min(index, self.log.last_index)
            self.effects.wake_applier = True

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

    def status(self) -> dict[str, Any]:
        """:func:`~ckite.consensus.status.member_status`, and the metrics read once the lock is released."""
        with self.lock:
            status = member_status(self, self.clock())
        status["metrics"] = self.metrics.summary()
        return status


def usable_snapshot(member_id: str, kept: Sequence[Snapshot], store: SnapshotStore) -> Snapshot | None:
    """The newest of the kept snapshots whose state is whole (size and CRC-32 match); the older
    one is fallen back on when the newest was torn or damaged, never a partial one. StorageError
    when none is: the member's committed state is gone, and it must not serve."""
    for snapshot in kept:
        if store.verify(snapshot):
            return snapshot
        logger.error("%s: snapshot %s is damaged (its size or CRC-32 does not match)%s", member_id, snapshot.name,
                     "; falling back on the previous one" if snapshot is not kept[-1] else "")
    if kept:
        raise StorageError(f"no whole snapshot left (kept: {', '.join(s.name for s in kept)}); restore the "
                           "member from another member (remove it, wipe its data dir, add it again)")
    return None
