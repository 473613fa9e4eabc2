"""What the leader knows about one follower's log (Raft's nextIndex/matchIndex, plus flow control)."""
from __future__ import annotations

from dataclasses import dataclass

from ckite.log.snapshot import Snapshot


@dataclass(slots=True)
class Progress:
    """Replication state of one peer, owned by the leader and guarded by the consensus lock.

    A peer starts *probing*: one AppendEntries in flight until a success says where its log
    matches ours. Then the leader *pipelines*: up to ``max_inflight`` requests, each moving
    ``next_index`` forward optimistically. A rejection or a lost request sends it back to probing.
    """

    next_index: int
    match_index: int = 0
    inflight: int = 0
    probing: bool = True
    last_sent: float = float("-inf")
    last_ack: float = float("-inf")
    acked_round: int = 0
    sent_round: int = 0
    #: When (leader clock) the latest AppendEntries the peer answered in our term was built: the
    #: peer then refuses votes for ``min_election_timeout`` from its receipt (the leader lease).
    acked_sent_at: float = float("-inf")
    sent_seq: int = 0          # AppendEntries sent so far (numbers each request)
    match_seq: int = 0         # requests sent before the success that established match_index
    snapshot: Snapshot | None = None   # the snapshot being sent, pinned until the transfer ends
    snapshot_offset: int = 0   # the byte of it to send next
    #: A heartbeat is in flight on the peer's heartbeat lane (its second connection), and when
    #: the latest one was sent: see :meth:`~ckite.consensus.leader.Leader.lane_heartbeat`.
    lane_busy: bool = False
    lane_sent: float = float("-inf")

    def window(self, max_inflight: int) -> int:
        return 1 if self.probing else max_inflight

    def acknowledge(self, match_index: int) -> None:
        """A success: the peer's log matches ours up to ``match_index``."""
        if match_index > self.match_index:
            self.match_index = match_index
        if self.next_index <= self.match_index:
            self.next_index = self.match_index + 1
        self.probing = False

    def restart_from(self, next_index: int) -> None:
        """Back to probing from ``next_index`` (never below what is known to match)."""
        self.next_index = max(self.match_index + 1, next_index)
        self.probing = True

    def forget_beyond(self, last_index: int) -> None:
        """The peer lost its log after ``last_index`` (a wiped data dir): probe again from there."""
        self.match_index = min(self.match_index, last_index)
        self.restart_from(last_index + 1)
