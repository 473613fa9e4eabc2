"""Leader: replicate the log to every peer, advance the commit index, confirm reads (ReadIndex or lease)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ckite.consensus.lease import LeaderLease
from ckite.consensus.progress import Progress
from ckite.consensus.read_index import ReadIndexTracker
from ckite.consensus.reconfiguration import Reconfiguration
from ckite.consensus.role import Role
from ckite.consensus.transfer import LeadershipTransfer
from ckite.log.snapshot import Snapshot
from ckite.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Request,
    TimeoutNow,
    TimeoutNowResponse,
)

if TYPE_CHECKING:
    from ckite.consensus.consensus import Consensus
    from ckite.log.entry import LogEntry

_log = logging.getLogger(__name__)


class _AppendContext:
    """What the leader remembers about one AppendEntries it sent, to judge the reply."""

    __slots__ = ("leader", "round", "prev_index", "last_index", "seq", "sent_at")

    def __init__(self, leader: Leader, round_: int, prev_index: int, last_index: int, seq: int,
                 sent_at: float) -> None:
        self.leader = leader
        self.round = round_
        self.prev_index = prev_index
        self.last_index = last_index
        self.seq = seq   # this request's place in the order of requests sent to the peer
        self.sent_at = sent_at   # leader clock when it was built (no later than the peer received it)


class _SnapshotContext:
    """What the leader remembers about one InstallSnapshot chunk it sent (and the sender reads
    the chunk from: ``snapshot``)."""

    __slots__ = ("leader", "snapshot", "offset", "done")

    def __init__(self, leader: Leader, snapshot: Snapshot, offset: int, done: bool) -> None:
        self.leader = leader
        self.snapshot = snapshot
        self.offset = offset
        self.done = done


class _LaneContext:
    """A heartbeat sent on the peer's heartbeat lane: its reply says the peer follows us in our
    term (contact, lease, read rounds), and nothing about its log."""

    __slots__ = ("leader", "round", "sent_at")

    def __init__(self, leader: Leader, round_: int, sent_at: float) -> None:
        self.leader = leader
        self.round = round_
        self.sent_at = sent_at


class Leader(Role):
    """§5.3 log replication with batching, pipelining, fast backtracking and check-quorum."""

    name = "Leader"

    def __init__(self, consensus: Consensus) -> None:
        super().__init__(consensus)
        self.progress: dict[str, Progress] = {}
        self.reads = ReadIndexTracker()
        self.started_at = 0.0
        self.term_start_index = 0
        self.quorum_check_at = 0.0
        self.term = consensus.term
        self.reconfiguration = Reconfiguration(self)
        self.transfer: LeadershipTransfer | None = None
        self.leaving = False   # removed from the configuration: hand over, then step down
        self.lease = LeaderLease(consensus.settings.lease_duration)

    def begin(self, now: float) -> None:
        consensus = self.consensus
        self.started_at = now
        self.quorum_check_at = now + consensus.settings.max_election_timeout
        self.sync_progress(now)
        # §5.4.2 / §8: an entry of our own term lets us commit (and read) at once.
        self.term_start_index = consensus.append_leader_marker()
        consensus.advance_commit_as_leader()

    def end(self) -> None:
        self.reads.fail_all("leadership lost before the read was confirmed", self.consensus.effects)
        for progress in self.progress.values():
            self._end_transfer(progress)
        self.reconfiguration.end()
        if self.transfer is not None:
            if self.consensus.term > self.term:
                self.transfer.succeed()   # a newer term exists: most likely the target's
            else:
                self.transfer.fail("this leader stepped down before the target was elected")

    # --- membership changes and leadership transfer ---------------------------------------------

    def request_change(self, add: Iterable[str], remove: Iterable[str], learners: Iterable[str] = ()) -> Future[Any]:
        return self.reconfiguration.request(add, remove, learners)

    def request_transfer(self, requested: str | None, now: float) -> Future[bool]:
        if self.transfer is not None:
            return self.transfer.future
        future: Future[bool] = Future()
        target = LeadershipTransfer.choose_target(self, requested)
        self.transfer = LeadershipTransfer(self, target, now + self.consensus.settings.max_election_timeout, future)
        self.consensus.effects.wake_senders = True   # the target may be ready now
        return future

    def _on_timeout_now_response(self, transfer: LeadershipTransfer, response: TimeoutNowResponse,
                                 now: float) -> None:
        if transfer is not self.transfer:
            return
        if self.leaving:
            self.consensus.step_down(now, "removed from the configuration; handed over to " + transfer.target)
        elif not response.accepted:
            self.transfer = None
            transfer.fail("the target refused to stand for election")

    @property
    def accepts_writes(self) -> bool:
        """No new entries while leadership is being handed over (the target must catch up)."""
        return self.transfer is None

    def _after_commit_or_progress(self, now: float) -> None:
        """Advance a membership change; hand over when this leader is no longer a voter."""
        consensus = self.consensus
        self.reconfiguration.drive()
        configuration = consensus.configuration
        if (not self.leaving and consensus.member_id not in configuration.all_voters
                and consensus.configuration_index <= consensus.commit_index):
            self.leaving = True
            if configuration.voters:
                self.transfer = LeadershipTransfer(self, LeadershipTransfer.choose_target(self, None),
                                                   now + consensus.settings.max_election_timeout, Future())
                consensus.effects.wake_senders = True
            else:
                consensus.step_down(now, "removed from the configuration")

    def sync_progress(self, now: float) -> None:
        """Track the members of the current configuration (it changes on append), and members it
        removed until they hold it: a removed member must learn so, or it would campaign."""
        consensus = self.consensus
        peers = consensus.configuration.members - {consensus.member_id}
        for peer in peers - self.progress.keys():
            self.progress[peer] = Progress(next_index=consensus.log.last_index + 1, last_ack=now)
        for peer in self.progress.keys() - peers:
            self._release_if_departed(peer)
        self._renew_lease()   # the voters (so the quorum) may have changed

    def _release_if_departed(self, peer: str) -> bool:
        """Stop tracking ``peer`` once it is outside the configuration and holds it."""
        consensus = self.consensus
        if peer in consensus.configuration.members or \
                self.progress[peer].match_index < consensus.configuration_index:
            return False
        self._end_transfer(self.progress.pop(peer))
        return True

    # --- replication -------------------------------------------------------------------------

    def next_request(self, peer: str, now: float) -> tuple[Request, Any] | None:
        progress = self.progress.get(peer)
        if progress is None:
            return None
        consensus = self.consensus
        transfer = self.transfer
        if transfer is not None and transfer.target == peer and transfer.ready():
            transfer.sent = True
            self.lease.revoke()   # the target's transfer votes ignore the followers' leases
            return TimeoutNow(consensus.term, consensus.member_id), transfer
        settings = consensus.settings
        if progress.inflight >= progress.window(settings.max_inflight_appends):
            return None
        log = consensus.log
        batch = None
        if progress.inflight:
            # Another request before the reply only for a full batch (capped by count or by
            # bytes): what is appended meanwhile rides in the next request anyway, and fewer,
            # larger batches cost less CPU per entry on both sides. Pipelining pays off once
            # one batch per round trip is the limit (a follower far behind, a long round trip).
            waiting = log.last_index - progress.next_index + 1
            if waiting < settings.max_entries_per_append:
                if waiting <= 0 or log.term_at(progress.next_index - 1) is None:
                    return None
                batch = log.batch_from(progress.next_index, settings.max_entries_per_append,
                                       settings.max_bytes_per_append)
                if len(batch) == waiting:
                    return None   # it would take everything waiting: not full
        has_entries = progress.next_index <= log.last_index
        heartbeat_due = now - progress.last_sent >= settings.heartbeat_interval
        read_waiting = self.reads.current_round > progress.sent_round
        if not (has_entries or heartbeat_due or read_waiting):
            return None
        prev_index = progress.next_index - 1
        prev_term = log.term_at(prev_index)
        if prev_term is None:
            return self._next_snapshot_chunk(progress, now)   # the entries it needs were compacted
        if not has_entries:
            entries: list[LogEntry] = []
        elif batch is not None:
            entries = batch
        else:
            entries = log.batch_from(progress.next_index, settings.max_entries_per_append,
                                     settings.max_bytes_per_append)
        last_index = prev_index + len(entries)
        round_ = self.reads.round_to_send()
        progress.sent_round = round_
        progress.inflight += 1
        progress.last_sent = now
        if entries and not progress.probing:
            progress.next_index = last_index + 1
        request = AppendEntries(consensus.term, consensus.member_id, prev_index, prev_term, entries,
                                min(consensus.commit_index, last_index))
        progress.sent_seq += 1
        return request, _AppendContext(self, round_, prev_index, last_index, progress.sent_seq, now)

    def _next_snapshot_chunk(self, progress: Progress, now: float) -> tuple[Request, Any] | None:
        """§7: send the latest snapshot, one chunk in flight at a time, from the offset the
        follower acknowledged (a lost chunk is sent again). The snapshot is pinned in the store
        for the whole transfer: restarting whenever the leader compacts again would never
        finish a transfer that takes longer than filling ``compaction_threshold`` entries. The
        chunk itself is read from the file by the sender, without the lock
        (:meth:`Consensus.materialize`)."""
        consensus = self.consensus
        if progress.inflight:
            return None   # one chunk at a time: the next offset depends on the reply
        if progress.snapshot is None:
            if consensus.snapshot is None:
                return None
            progress.snapshot, progress.snapshot_offset = consensus.snapshot, 0
            consensus.snapshot_store.pin(progress.snapshot)
        snapshot = progress.snapshot
        offset = progress.snapshot_offset
        done = offset + consensus.settings.snapshot_chunk_bytes >= snapshot.size
        progress.inflight += 1
        progress.last_sent = now
        request = InstallSnapshot(consensus.term, consensus.member_id, snapshot.last_index, snapshot.last_term,
                                  snapshot.configuration, offset, b"", done, snapshot.size, snapshot.checksum)
        return request, _SnapshotContext(self, snapshot, offset, done)

    def _end_transfer(self, progress: Progress) -> None:
        if progress.snapshot is not None:
            self.consensus.snapshot_store.unpin(progress.snapshot)
            progress.snapshot, progress.snapshot_offset = None, 0

    def _on_snapshot_response(self, progress: Progress, context: _SnapshotContext,
                              response: InstallSnapshotResponse) -> None:
        if progress.snapshot is None or context.snapshot != progress.snapshot:
            return   # about an earlier transfer
        if response.success and context.done:
            self._end_transfer(progress)
            progress.acknowledge(context.snapshot.last_index)
            self.consensus.advance_commit_as_leader()
        else:
            progress.snapshot_offset = response.next_offset   # the next chunk, or where to resume

    def lane_heartbeat(self, peer: str, now: float) -> tuple[AppendEntries, _LaneContext] | None:
        """A heartbeat for the peer's second connection, when its replication requests have been
        held up for a heartbeat interval (a follower whose disk stalls answers late, and nothing
        else may pass them on their connection): without it, a follower that is busy writing
        would start an election, and a leader would count it as unreachable.

        It claims only what the peer already acknowledged: ``prev`` is its match index (or our
        log's base), so the reply needs nothing new on the peer's disk and the commit index it
        carries is one the peer's log is known to hold.
        """
        due = self.lane_deadline(peer, now)
        if due is None or now < due:
            return None
        progress = self.progress[peer]
        consensus = self.consensus
        prev_index = max(progress.match_index, consensus.log.base_index)
        prev_term = consensus.log.term_at(prev_index)
        if prev_term is None:
            return None
        round_ = self.reads.round_to_send()
        progress.sent_round = max(progress.sent_round, round_)
        progress.lane_busy, progress.lane_sent = True, now
        request = AppendEntries(consensus.term, consensus.member_id, prev_index, prev_term, [],
                                min(consensus.commit_index, prev_index))
        return request, _LaneContext(self, round_, now)

    def lane_deadline(self, peer: str, now: float) -> float | None:
        """When :meth:`lane_heartbeat` may next have something for ``peer`` (None: not while
        nothing is in flight on its replication connection, or the peer has not answered
        anything for an election timeout: a peer that is down gains nothing from more
        heartbeats; ask again a heartbeat later)."""
        progress = self.progress.get(peer)
        settings = self.consensus.settings
        if (progress is None or progress.lane_busy or not progress.inflight
                or now - progress.last_ack >= settings.max_election_timeout):
            return None
        return max(progress.last_sent, progress.lane_sent) + settings.heartbeat_interval

    def peer_deadline(self, peer: str) -> float | None:
        progress = self.progress.get(peer)
        if progress is None or progress.inflight:
            # With a request in flight, its reply (or its failure, within the RPC timeout) comes
            # first and opens the window; a heartbeat falling due meanwhile waits for it.
            return None
        return progress.last_sent + self.consensus.settings.heartbeat_interval

    def on_response(self, peer: str, request: Request, context: Any, response: Any, now: float) -> None:
        if isinstance(context, LeadershipTransfer):
            self._on_timeout_now_response(context, response, now)
            return
        progress = self.progress.get(peer)
        if progress is None or getattr(context, "leader", None) is not self:
            return
        progress.last_ack = now
        if isinstance(context, _LaneContext):
            progress.lane_busy = False
            self._heard_back(progress, context)
            return
        progress.inflight = max(progress.inflight - 1, 0)
        if isinstance(context, _SnapshotContext):
            self._on_snapshot_response(progress, context, response)
            self._after_commit_or_progress(now)
            return
        assert isinstance(response, AppendEntriesResponse)
        self._heard_back(progress, context)
        if response.success:
            if response.match_index > progress.match_index:
                progress.match_seq = progress.sent_seq   # every request sent so far left before this ack
            progress.acknowledge(response.match_index)
            self.consensus.advance_commit_as_leader()
            if self._release_if_departed(peer):
                self.consensus.effects.peers_changed = True
            if self.transfer is not None or self.consensus.configuration.promoting:
                self._after_commit_or_progress(now)
                if self.transfer is not None and self.transfer.ready():
                    self.consensus.effects.wake_senders = True
        elif context.prev_index >= progress.match_index:   # not a stale reply to an older request
            if (context.seq > progress.match_seq and response.conflict_term == 0
                    and 0 < response.conflict_index <= progress.match_index):
                # Sent after the peer acknowledged match_index, yet its log is shorter: the peer
                # lost entries it had stored, i.e. restarted with a wiped data dir (outside
                # Raft's model). Replicate its log again from where it now ends (or a snapshot).
                _log.warning("%s: %s lost its log after index %d (now ends at %d); replicating it again",
                             self.consensus.member_id, peer, progress.match_index, response.conflict_index - 1)
                progress.forget_beyond(response.conflict_index - 1)
            else:
                progress.restart_from(self._next_index_after_rejection(context.prev_index, response))

    def _heard_back(self, progress: Progress, context: _AppendContext | _LaneContext) -> None:
        """An AppendEntries answered in our term, success or rejection alike: the peer accepted
        our term and heard from us when ``context`` was sent (lease, read rounds)."""
        if context.sent_at > progress.acked_sent_at:
            progress.acked_sent_at = context.sent_at
            self._renew_lease()
        if context.round > progress.acked_round:
            progress.acked_round = context.round
            self._confirm_reads()

    def on_failure(self, peer: str, request: Request, context: Any, now: float) -> None:
        if isinstance(context, LeadershipTransfer):
            return   # a lost TimeoutNow: the transfer's deadline decides
        progress = self.progress.get(peer)
        if progress is None or getattr(context, "leader", None) is not self:
            return
        if isinstance(context, _LaneContext):
            progress.lane_busy = False
            return
        progress.inflight = max(progress.inflight - 1, 0)
        if not progress.probing:
            progress.restart_from(progress.match_index + 1)   # the lost request may have carried entries

    def _next_index_after_rejection(self, prev_index: int, response: AppendEntriesResponse) -> int:
        """Skip a whole conflicting term per round trip (thesis §5.3's optimisation)."""
        if response.conflict_term > 0:
            last_of_term = self.consensus.log.last_index_of_term(response.conflict_term, prev_index)
            if last_of_term is not None:
                return last_of_term + 1
        return max(1, min(response.conflict_index, prev_index))

    def match_indexes(self) -> dict[str, int]:
        matches = {peer: progress.match_index for peer, progress in self.progress.items()}
        matches[self.consensus.member_id] = self.consensus.log.durable_index   # its own entries count once on disk
        return matches

    # --- reads --------------------------------------------------------------------------------

    def request_read(self) -> Future[int]:
        """A future of the read index (shared by the reads of one confirmation round)."""
        consensus = self.consensus
        if consensus.commit_index < self.term_start_index:
            future: Future[int] = Future()
            self.reads.before_first_commit.append(future)
            return future
        round_before = self.reads.current_round
        shared = self.reads.add(consensus.commit_index)
        self._confirm_reads()
        if self.reads.current_round != round_before:
            consensus.effects.wake_senders = True   # the senders carry the new round at once
        return shared

    def on_commit(self) -> None:
        """Reads that arrived before our first commit can now take a read index; a membership
        change may take its next step."""
        if self.reads.before_first_commit and self.consensus.commit_index >= self.term_start_index:
            waiting, self.reads.before_first_commit = self.reads.before_first_commit, []
            for future in waiting:
                self.request_read().add_done_callback(lambda shared, mine=future: _copy_outcome(shared, mine))  # type: ignore[misc]   # mypy cannot type a lambda with a default
        self._after_commit_or_progress(self.consensus.clock())

    def lease_read_index(self, now: float) -> int | None:
        """The commit index, when the lease lets this leader read it without a quorum round
        (an entry of this term committed, the lease unexpired and not revoked; the caller checked
        that lease reads are on)."""
        consensus = self.consensus
        if consensus.commit_index < self.term_start_index or not self.lease.holds(now):
            return None
        return consensus.commit_index

    def _renew_lease(self) -> None:
        consensus = self.consensus
        if consensus.settings.lease_reads:
            self.lease.renew(consensus.configuration,
                             {peer: progress.acked_sent_at for peer, progress in self.progress.items()},
                             consensus.member_id)

    def _confirm_reads(self) -> None:
        if not self.reads.waiting:
            return
        rounds = {peer: progress.acked_round for peer, progress in self.progress.items()}
        rounds[self.consensus.member_id] = self.reads.current_round
        self.reads.confirm(self.consensus.configuration.quorum_value(rounds), self.consensus.effects)

    # --- check-quorum -------------------------------------------------------------------------

    def deadline(self) -> float | None:
        deadlines = [self.quorum_check_at] if self.consensus.settings.check_quorum else []
        if self.transfer is not None:
            deadlines.append(self.transfer.deadline)
        return min(deadlines, default=None)

    def on_tick(self, now: float) -> None:
        transfer = self.transfer
        if transfer is not None and transfer.expired(now):
            self.transfer = None
            transfer.fail("the target was not elected within an election timeout")
            if self.leaving:
                self.consensus.step_down(now, "removed from the configuration")
                return
        self._check_quorum(now)

    def _check_quorum(self, now: float) -> None:
        consensus = self.consensus
        if not consensus.settings.check_quorum or now < self.quorum_check_at:
            return
        window = consensus.settings.max_election_timeout
        active = {peer for peer, progress in self.progress.items() if now - progress.last_ack < window}
        active.add(consensus.member_id)
        if not consensus.configuration.has_quorum(active):
            consensus.step_down(now, "check-quorum: no majority heard from within the election timeout")
            return
        self.quorum_check_at = now + consensus.settings.min_election_timeout / 2

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        # Two leaders in one term would break Election Safety; refuse and say so.
        return AppendEntriesResponse(self.consensus.term, False, conflict_index=0)

    def on_install_snapshot(self, request: InstallSnapshot, now: float) -> InstallSnapshotResponse:
        return InstallSnapshotResponse(self.consensus.term, False)

    def status(self, now: float) -> dict[str, Any]:
        return {
            "leaderUptimeMs": round((now - self.started_at) * 1000),
            **self._read_status(now),
            "followers": {peer: {"matchIndex": p.match_index, "nextIndex": p.next_index,
                                 "inflight": p.inflight,
                                 "lastAckMs": None if p.last_ack == float("-inf")
                                 else round((now - p.last_ack) * 1000)}
                          for peer, p in sorted(self.progress.items())},
        }

    def _read_status(self, now: float) -> dict[str, Any]:
        """How reads are confirmed; with lease reads, how much of the lease is left (0: reads
        take a ReadIndex round until the next acknowledged heartbeat renews it)."""
        if not self.consensus.settings.lease_reads:
            return {"reads": "readIndex"}
        remaining = self.lease.until - now if self.lease_read_index(now) is not None else 0.0
        return {"reads": "lease", "leaseRemainingMs": round(remaining * 1000), "leaseRevoked": self.lease.revoked}


def _copy_outcome(source: Future[int], target: Future[int]) -> None:
    if target.done():
        return
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
