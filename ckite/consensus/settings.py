"""The timing and batching knobs the consensus core obeys (seconds, counts, bytes)."""
from __future__ import annotations

from dataclasses import dataclass

#: The share of ``min_election_timeout`` a leader lease lasts (thesis §6.4.1). A follower that
#: acknowledged the leader refuses votes for ``min_election_timeout`` *on its own clock* from
#: when it received the request; the leader counts its lease from when it built the request, on
#: *its* clock. The 10% margin covers clocks whose rates differ by less than 10%
#: (monotonic clocks; their offsets do not matter, only how fast they run).
LEASE_FRACTION = 0.9


@dataclass(frozen=True)
class RaftSettings:
    """Defaults live here and nowhere else; :class:`ckite.CKiteBuilder` overrides them.

    The election timeout is drawn from [min, max) each time a member starts waiting for
    a leader; heartbeats must come several times within the minimum so one lost message
    does not start an election.
    """

    min_election_timeout: float = 1.0
    max_election_timeout: float = 1.5
    heartbeat_interval: float = 0.25
    max_entries_per_append: int = 2000
    max_bytes_per_append: int = 4 * 1024 * 1024
    max_inflight_appends: int = 4
    pre_vote: bool = True
    check_quorum: bool = True
    compaction_threshold: int = 10_000          # applied entries between snapshots (CKite's default); 0: never
    snapshot_chunk_bytes: int = 1024 * 1024     # InstallSnapshot sends the state in chunks this big
    #: The most log entry data a member keeps in memory; the data of older entries that are
    #: applied and on disk is read back from the storage when a lagging follower needs them.
    log_cache_bytes: int = 64 * 1024 * 1024
    #: The most entry data the applier hands the state machine at once (a member far behind, or
    #: restarting, applies its log in batches of about this size, not all at once).
    apply_batch_bytes: int = 16 * 1024 * 1024
    #: Answer linearizable reads on the leader from its lease, without a quorum round (thesis
    #: §6.4.1). Needs check_quorum (followers then refuse votes while they hear from a leader),
    #: and clocks whose rates differ by less than 10% (see LEASE_FRACTION).
    lease_reads: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.min_election_timeout < self.max_election_timeout:
            raise ValueError("need 0 < min_election_timeout < max_election_timeout")
        if not 0 < self.heartbeat_interval < self.min_election_timeout:
            raise ValueError("heartbeat_interval must be positive and below min_election_timeout")
        if self.max_entries_per_append < 1 or self.max_bytes_per_append < 1 or self.max_inflight_appends < 1:
            raise ValueError("batch and window limits must be at least 1")
        if self.compaction_threshold < 0 or self.snapshot_chunk_bytes < 1:
            raise ValueError("compaction_threshold must be >= 0 and snapshot_chunk_bytes >= 1")
        if self.log_cache_bytes < 0 or self.apply_batch_bytes < 1:
            raise ValueError("log_cache_bytes must be >= 0 and apply_batch_bytes >= 1")
        if self.lease_reads and not self.check_quorum:
            raise ValueError("lease_reads needs check_quorum: without it followers do not refuse votes "
                             "while a leader is alive, and a lease would not exclude a newer leader")

    @property
    def compaction_trailing_entries(self) -> int:
        """Entries kept in the log before a new snapshot's index, so that a follower a little
        behind at compaction time still catches up from the log (half the threshold)."""
        return self.compaction_threshold // 2

    @property
    def lease_duration(self) -> float:
        """How long after building a request that a quorum acknowledged the leader may serve
        reads alone (``LEASE_FRACTION`` of the minimum election timeout)."""
        return self.min_election_timeout * LEASE_FRACTION

    @property
    def rpc_timeout(self) -> float:
        """How long one call to a peer may take before it counts as lost."""
        return self.min_election_timeout / 2
