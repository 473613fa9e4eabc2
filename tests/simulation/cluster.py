"""A simulated cluster: real consensus cores on a simulated clock and network, plus a checker.

The checker asserts Raft's safety properties (Figure 3 of the paper) after every step:

* Election Safety: at most one leader per term, over the whole run.
* Log Matching: two logs holding an entry with the same index and term are identical up to it.
* Leader Completeness: a leader's log holds every entry committed in an earlier term.
* State Machine Safety: no two members apply different entries at the same index, and a
  state restored from a snapshot equals the commands committed up to the snapshot's index.

and, for clients: every acknowledged write is applied everywhere by the end, and every
linearizable read reflects every write acknowledged before the read began. With lease reads
(thesis §6.4.1) one more property holds after every step, since every member runs on the same
clock: a leader whose lease holds is the newest leader (no higher term has elected anyone yet).
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import msgpack

from ckite.consensus.consensus import Consensus
from ckite.consensus.membership import Configuration
from ckite.consensus.settings import RaftSettings
from ckite.errors import CKiteError
from ckite.log.entry import EntryKind
from ckite.log.memory_storage import MemoryStorage
from ckite.log.snapshot import Snapshot
from ckite.sessions.request import stamped, unstamped
from ckite.sessions.table import ClientTable, Outcome
from tests.simulation.network import SimNetwork

logger = logging.getLogger(__name__)

#: Client sessions expire after this much log time here (the stamps are simulated milliseconds).
SESSION_TIMEOUT_MS = 3000
KEY_TTL_MS = 6000

SIM_SETTINGS = RaftSettings(min_election_timeout=0.150, max_election_timeout=0.300, heartbeat_interval=0.050,
                            max_entries_per_append=16, max_bytes_per_append=4096, max_inflight_appends=3)


class SafetyViolation(AssertionError):
    """A Raft safety property failed; the message names the seed to replay."""


@dataclass
class SimMember:
    """One member: its durable storage outlives crashes; the core and applied state do not."""

    member_id: str
    storage: MemoryStorage
    consensus: Consensus | None = None
    applied: list[bytes] = field(default_factory=list)   # the state machine: the writes applied, in order
    applied_index: int = 0
    table: ClientTable = field(default_factory=lambda: ClientTable(SESSION_TIMEOUT_MS, KEY_TTL_MS))
    restored_at: int = 0   # the index of the snapshot its state was last restored from

    @property
    def up(self) -> bool:
        return self.consensus is not None


class SimCluster:
    def __init__(self, seed: int, size: int = 3, settings: RaftSettings = SIM_SETTINGS, spares: int = 0) -> None:
        """``size`` founding members, plus ``spares`` that start as joiners (empty configuration,
        never campaigning) for membership changes to add."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = settings
        self.now = 0.0
        self.network = SimNetwork(random.Random(self.rng.random()), settings.rpc_timeout)
        self.ids = [f"n{i}:{9000 + i}" for i in range(1, size + spares + 1)]
        self.configuration = Configuration.of(self.ids[:size])
        self.spares = spares
        self.membership_changes = 0
        self.members = {member_id: SimMember(member_id, MemoryStorage()) for member_id in self.ids}
        self.leaders_by_term: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}     # index -> (term, data), as applied anywhere
        self.committed_by_term: dict[int, int] = {}           # index -> highest leader term when first applied
        self.commands: dict[int, bytes] = {}                  # index -> the command applied there (once)
        self.session_decisions: dict[int, bytes | None] = {}  # index -> what a client-session entry applied
        self.expired_at: dict[int, frozenset[int]] = {}       # index -> the sessions applying it expired
        self.snapshots_restored = 0
        self.sent: Counter[str] = Counter()                   # requests sent, by message type (and loss)
        self.acknowledged: list[bytes] = []
        #: (leader, index) -> (term, data, what to tell the session client that sent it, if one did)
        self.pending_writes: dict[tuple[str, int], tuple[int, bytes, Callable[[Outcome], None] | None]] = {}
        self.pending_reads: list[tuple[SimMember, Future, set[bytes], int]] = []
        self.reads_checked = 0
        self.write_share = 0.75                               # the schedule's share of writes among client calls
        self.lease_reads = 0                                  # reads answered from a leader lease
        self.steps = 0
        self._write_counter = 0
        self._leaders_seen: dict[str, object] = {}
        for member_id in self.ids:
            self.restart(member_id)

    # --- fault control ------------------------------------------------------------------------

    def crash(self, member_id: str) -> None:
        member = self.members[member_id]
        if member.up:
            logger.debug("t=%.3f crash %s", self.now, member_id)
            member.consensus = None
            member.applied = []
            member.applied_index = 0
            member.table = ClientTable(SESSION_TIMEOUT_MS, KEY_TTL_MS)
            member.restored_at = 0
            self.pending_reads = [r for r in self.pending_reads if r[0] is not member]

    def restart(self, member_id: str) -> None:
        member = self.members[member_id]
        if member.up:
            return
        logger.debug("t=%.3f start %s", self.now, member_id)
        founding = member_id in self.configuration.voters
        member.consensus = Consensus(member_id, member.storage,
                                     self.configuration if founding else Configuration.of([]), self.settings,
                                     clock=lambda: self.now, rng=random.Random(self.rng.random()), join=not founding)
        member.consensus.start()

    def partition(self, *groups: set[str]) -> None:
        """Cut every link between members of different groups (members not named are isolated)."""
        self.network.blocked = {(a, b) for a in self.ids for b in self.ids
                                if a != b and not any(a in g and b in g for g in groups)}

    def cut_off(self, member_id: str, others: set[str]) -> None:
        """Cut only the links between ``member_id`` and ``others``, who still reach everyone else
        (a partial partition, like Jepsen's "bridge": not every fault splits into groups)."""
        self.network.blocked = {(member_id, other) for other in others} | {(other, member_id) for other in others}

    def heal(self) -> None:
        self.network.blocked = set()

    def up_members(self) -> list[SimMember]:
        return [m for m in self.members.values() if m.up]

    def leaders(self) -> list[SimMember]:
        return [m for m in self.up_members() if m.consensus.is_leader]

    # --- clients ------------------------------------------------------------------------------

    def client_write(self, member_id: str) -> bool:
        """Propose a unique value at ``member_id`` if it leads; True when it was accepted."""
        member = self.members[member_id]
        if not member.up or not member.consensus.is_leader:
            return False
        self._write_counter += 1
        data = f"w{self._write_counter}".encode()
        try:
            index, term = member.consensus.propose([(EntryKind.COMMAND, data)])
        except CKiteError:
            return False   # e.g. leadership is being handed over
        self.pending_writes[(member_id, index)] = (term, data, None)
        return True

    def client_request(self, member_id: str, payload: bytes, learn: Callable[[Outcome], None]) -> bool:
        """Propose a client-session request at ``member_id`` if it leads, stamped with the
        simulated clock as the runtime's submitter does; ``learn`` gets its outcome if this
        leader applies it (else the client never hears: its reply was lost)."""
        member = self.members[member_id]
        if not member.up or not member.consensus.is_leader:
            return False
        data = stamped(int(self.now * 1000), payload)
        try:
            index, term = member.consensus.propose([(EntryKind.CLIENT_REQUEST, data)])
        except CKiteError:
            return False
        self.pending_writes[(member_id, index)] = (term, data, learn)
        return True

    def client_read(self, member_id: str) -> bool:
        """Start a linearizable read at ``member_id`` if it leads: from its lease when it holds
        one (the read index is known at once, as in RaftNode._read_here), else ReadIndex."""
        member = self.members[member_id]
        if not member.up or not member.consensus.is_leader:
            return False
        lease_index = member.consensus.lease_read_index()
        if lease_index is not None:
            future: Future = Future()
            future.set_result(lease_index)
            self.lease_reads += 1
        else:
            try:
                future = member.consensus.request_read()
            except CKiteError:
                return False
        self.pending_reads.append((member, future, set(self.acknowledged), self.steps))
        return True

    def change_membership(self, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> bool:
        """Ask the leader (if any) to add and remove members; True when it took the request."""
        leaders = self.leaders()
        if not leaders:
            return False
        try:
            leaders[0].consensus.request_membership_change(add, remove)
        except CKiteError:
            return False   # another change in progress, or the last voter
        self.membership_changes += 1
        return True

    def final_members(self) -> frozenset[str]:
        """Who must hold every acknowledged write at the end: the leader's configuration."""
        leaders = self.leaders()
        return leaders[0].consensus.configuration.members if leaders else frozenset(self.ids)

    # --- the event loop -----------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        while self.now < end:
            self.step(end)

    def step(self, limit: float) -> None:
        self.steps += 1
        self.now = min(self._next_event_time(), limit)
        self.network.run_due(self.now)
        for member in self.up_members():
            member.consensus.tick()
        for member in self.up_members():
            self._send_all(member)
        for member in self.up_members():
            self._apply(member)
        self._complete_reads()
        self.check_safety()

    def _next_event_time(self) -> float:
        candidates = [self.network.next_time()]
        for member in self.up_members():
            consensus = member.consensus
            candidates.append(consensus.deadline())
            for peer in sorted(consensus.peers):
                candidates.extend((consensus.peer_deadline(peer), consensus.lane_heartbeat(peer)[1]))
        later = [c for c in candidates if c is not None and c > self.now]
        return min(later, default=self.now + 0.010)

    def _send_all(self, member: SimMember) -> None:
        consensus = member.consensus
        for peer in sorted(consensus.peers):
            while (item := consensus.next_request(peer)) is not None:
                request, context = item
                self._send(member, peer, request, context)
            lane_item, _ = consensus.lane_heartbeat(peer)   # the runtime's second connection
            if lane_item is not None:
                self._send(member, peer, *lane_item)

    def _send(self, member: SimMember, peer: str, request, context) -> None:
        sender = member.consensus
        self.sent[type(request).__name__] += 1
        if self.network.faults.drop > 0:
            self.sent[f"{type(request).__name__} on a lossy network"] += 1

        def deliver():
            return self.members[peer].consensus.handle_request(request)

        def on_reply(response) -> None:
            if member.consensus is sender:
                sender.handle_response(peer, request, context, response)

        def on_failure() -> None:
            if member.consensus is sender:
                sender.handle_failure(peer, request, context)

        self.network.rpc(member.member_id, peer, deliver, on_reply, on_failure,
                         lambda node: self.members[node].up and self.members[node].consensus is not None)

    def _apply(self, member: SimMember) -> None:
        consensus = member.consensus
        snapshot = consensus.snapshot_to_restore(member.applied_index)
        if snapshot is not None:
            self._restore(member, snapshot)
        while member.applied_index < consensus.commit_index:
            index = member.applied_index + 1
            entry = consensus.log.entry(index)
            self._record_commit(member, index, entry.term, entry.data, entry.kind)
            outcome = None
            if entry.kind == EntryKind.COMMAND:
                member.applied.append(entry.data)
            elif entry.kind == EntryKind.CLIENT_REQUEST:
                outcome = self._admit(member, index, entry.data)
            member.applied_index = index
            pending = self.pending_writes.pop((member.member_id, index), None)
            if pending is not None and pending[:2] == (entry.term, entry.data):
                if entry.kind == EntryKind.COMMAND:
                    self.acknowledged.append(entry.data)
                elif pending[2] is not None:
                    pending[2](outcome)   # the session client that sent it learns the outcome
        consensus.set_applied(member.applied_index)
        if consensus.compaction_due(member.applied_index):
            consensus.take_snapshot(member.applied_index, msgpack.packb([member.applied, member.table.encode()]))

    def _admit(self, member: SimMember, index: int, data: bytes) -> Outcome:
        """A client-session entry, through the member's client table as the runtime does: applied
        only if new; what each member applied at an index must be the same everywhere."""
        stamp, request = unstamped(data)
        before = len(member.table.expired)
        decision = member.table.admit(index, stamp, request)
        expired = frozenset(session for _, session in member.table.expired[before:])
        if self.expired_at.setdefault(index, expired) != expired:
            self.fail(f"session expiry: {member.member_id} expires {sorted(expired)} at {index}, another member "
                      f"{sorted(self.expired_at[index])}")
        if decision.apply:
            if request.command in member.applied:
                self.fail(f"exactly once: {member.member_id} applies {request.command!r} a second time at {index}")
            member.applied.append(request.command)
            self.commands.setdefault(index, request.command)   # what a restored snapshot must hold
            decision.outcome.result = request.command
        applied = request.command if decision.apply else None
        known = self.session_decisions.setdefault(index, applied)
        if known != applied:
            self.fail(f"client table: {member.member_id} applies {applied!r} at {index}, another member {known!r}")
        return decision.outcome

    def _restore(self, member: SimMember, snapshot: Snapshot) -> None:
        """Load a snapshot as the state machine would, checking it holds exactly the commands
        committed up to its index (every one of them was applied one by one somewhere first)."""
        with member.consensus.open_snapshot(snapshot) as reader:
            restored, table = msgpack.unpackb(reader.read())
        expected = [data for index, data in sorted(self.commands.items()) if index <= snapshot.last_index]
        if restored != expected:
            self.fail(f"State Machine Safety: {member.member_id} restores a snapshot at {snapshot.last_index} "
                      f"with {len(restored)} commands, {len(expected)} were committed up to it")
        member.applied, member.applied_index = restored, snapshot.last_index
        member.table = ClientTable(SESSION_TIMEOUT_MS, KEY_TTL_MS)
        member.table.restore(table)
        member.restored_at = snapshot.last_index
        member.consensus.set_applied(snapshot.last_index)
        self.snapshots_restored += 1

    def _record_commit(self, member: SimMember, index: int, term: int, data: bytes, kind: EntryKind) -> None:
        known = self.committed.get(index)
        if known is None:
            self.committed[index] = (term, data)
            if kind == EntryKind.COMMAND:
                self.commands[index] = data
            self.committed_by_term[index] = max(self.leaders_by_term, default=0)
        elif known != (term, data):
            self.fail(f"State Machine Safety: {member.member_id} applies {(term, data)} at {index}, "
                      f"another member applied {known}")

    def _complete_reads(self) -> None:
        still = []
        for member, future, acknowledged_before, _ in self.pending_reads:
            if not future.done():
                still.append((member, future, acknowledged_before, _))
                continue
            if future.exception() is not None:
                continue
            read_index = future.result()
            if member.applied_index < read_index:
                still.append((member, future, acknowledged_before, _))
                continue
            missing = acknowledged_before - set(member.applied)
            if missing:
                self.fail(f"stale read at {member.member_id}: misses acknowledged writes {sorted(missing)[:5]}")
            self.reads_checked += 1
        self.pending_reads = still

    # --- safety -------------------------------------------------------------------------------

    def fail(self, message: str) -> None:
        raise SafetyViolation(f"seed {self.seed}, step {self.steps}, t={self.now:.3f}: {message}")

    def check_safety(self) -> None:
        for member in self.leaders():
            term = member.consensus.term
            holder = self.leaders_by_term.setdefault(term, member.member_id)
            if holder != member.member_id:
                self.fail(f"Election Safety: {holder} and {member.member_id} both lead term {term}")
            if self._leaders_seen.get(member.member_id) is not member.consensus.role:
                self._leaders_seen[member.member_id] = member.consensus.role
                self.check_leader_completeness(member)
            if self.settings.lease_reads:
                self.check_lease_safety(member)
        if self.steps % 50 == 0:
            self.check_log_matching()

    def check_lease_safety(self, member: SimMember) -> None:
        """A leader that may read from its lease is the newest leader (one clock for everyone,
        so the lease margin for clock rates is not needed: this holds exactly)."""
        term = member.consensus.term
        if member.consensus.lease_read_index() is None:
            return
        newer = sorted(t for t in self.leaders_by_term if t > term)
        if newer:
            self.fail(f"Lease Safety: {member.member_id} reads from its lease in term {term} while "
                      f"{self.leaders_by_term[newer[0]]} was elected in term {newer[0]}")

    def check_leader_completeness(self, member: SimMember) -> None:
        log = member.consensus.log
        for index, (term, data) in self.committed.items():
            # Only entries certainly committed in an earlier term must be present (§5.4.3).
            if self.committed_by_term[index] >= member.consensus.term or index < log.first_index:
                continue
            if index > log.last_index or log.entry(index).term != term or log.entry(index).data != data:
                self.fail(f"Leader Completeness: leader {member.member_id} of term {member.consensus.term} "
                          f"lacks committed entry {index} (term {term})")

    def check_log_matching(self) -> None:
        logs = {m.member_id: m.storage.load().entries for m in self.members.values()}
        ids = sorted(logs)
        for position, a in enumerate(ids):
            for b in ids[position + 1:]:
                by_index = {e.index: e for e in logs[b]}
                highest_match = 0
                for entry in logs[a]:
                    other = by_index.get(entry.index)
                    if other is not None and other.term == entry.term:
                        highest_match = entry.index
                for entry in logs[a]:
                    if entry.index > highest_match:
                        break
                    other = by_index.get(entry.index)
                    if other is not None and other != entry:
                        self.fail(f"Log Matching: {a} and {b} agree at {highest_match} but differ at {entry.index}")

    def check_convergence(self) -> None:
        """After healing: every member of the final configuration applied the same writes,
        including every acknowledged one (removed members may lag behind forever)."""
        final = self.final_members()
        states = {m.member_id: m.applied for m in self.up_members() if m.member_id in final}
        reference = max(states.values(), key=len)
        for member_id, applied in states.items():
            if applied != reference:
                self.fail(f"convergence: {member_id} applied {len(applied)} writes, expected {len(reference)}")
        lost = set(self.acknowledged) - set(reference)
        if lost:
            self.fail(f"acknowledged writes lost: {sorted(lost)[:5]}")
