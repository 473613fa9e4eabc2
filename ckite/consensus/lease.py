"""Leader leases (thesis §6.4.1): linearizable reads without a quorum round per read.

A follower that accepts an AppendEntries of the leader's term (success or rejection: both
mean it accepted this leadership) refuses non-transfer votes for ``min_election_timeout``
from when it received it (``Consensus._in_leader_lease``, with check-quorum on). So once a
quorum answered requests the leader built at times ``t`` or later, no other leader can be
elected before ``t + min_election_timeout`` on those followers' clocks; the leader keeps a
margin (``LEASE_FRACTION``) for clocks that run at slightly different rates, and until
``t + lease_duration`` on its own clock it may answer reads from its commit index alone.

What a lease does not cover, and so what turns it off:

* A leader that has not yet committed an entry of its own term does not know the latest
  commit index (the ReadIndex rule, thesis §6.4).
* Leadership transfer: the target campaigns with ``transfer=True`` and voters grant such
  votes despite a live leader. Once this leader has sent TimeoutNow its lease is revoked
  for good, even if the transfer fails: the target may still win with those votes.
* A member that restarts forgets when it last heard from the leader; it refuses votes for
  ``min_election_timeout`` after it starts instead (see ``Consensus.start``).
"""
from __future__ import annotations

from collections.abc import Mapping

from ckite.consensus.membership import Configuration

NEVER = float("-inf")


class LeaderLease:
    """The lease of one Leader object; guarded by the consensus lock."""

    __slots__ = ("duration", "until", "revoked")

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.until = NEVER
        self.revoked = False

    def renew(self, configuration: Configuration, acked_sent_at: Mapping[str, float], leader_id: str) -> None:
        """Recompute the lease from when the requests each voter answered were built.

        ``configuration.quorum_value`` takes the latest time a quorum of voters (of both groups
        while joint) acknowledged; the leader counts as always acknowledging itself. Every
        voter is named explicitly: one without an answer counts as never, not as time 0.
        """
        if not configuration.voters or (configuration.is_joint and not configuration.old_voters):
            self.until = NEVER   # no quorum to speak of (quorum_value would say 0, a time)
            return
        times = {voter: acked_sent_at.get(voter, NEVER) for voter in configuration.all_voters}
        times[leader_id] = float("inf")
        self.until = configuration.quorum_value(times) + self.duration

    def revoke(self) -> None:
        """TimeoutNow was sent: a transfer election ignores follower leases. Never undone."""
        self.revoked = True

    def holds(self, now: float) -> bool:
        return not self.revoked and now < self.until
