"""Leadership transfer (thesis §3.10): hand leadership to a chosen, up-to-date voter.

The leader stops accepting writes, lets replication bring the target's log up to its own,
then sends it TimeoutNow: the target starts an election at once (without pre-vote, and
voters grant it despite a live leader). The transfer succeeds when this leader sees the
newer term; it is abandoned after an election timeout, and the leader accepts writes again.
Used for rolling restarts and by a leader that removed itself from the cluster.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from ckite.errors import LeaderTimeoutError, MembershipChangeError

if TYPE_CHECKING:
    from ckite.consensus.leader import Leader


class LeadershipTransfer:
    """One transfer in progress; guarded by the consensus lock."""

    def __init__(self, leader: Leader, target: str, deadline: float, future: Future[bool]) -> None:
        self.leader = leader
        self.target = target
        self.deadline = deadline
        self.future = future
        self.sent = False

    @classmethod
    def choose_target(cls, leader: Leader, requested: str | None) -> str:
        """``requested`` if it is another voter, else the voter whose log is most up to date."""
        consensus = leader.consensus
        voters = consensus.configuration.voters - {consensus.member_id}
        if requested is not None:
            if requested not in voters:
                raise MembershipChangeError(f"{requested} is not a voter of the current configuration")
            return requested
        if not voters:
            raise MembershipChangeError("there is no other voter to hand leadership to")
        return max(sorted(voters), key=lambda peer: leader.progress[peer].match_index)

    def ready(self) -> bool:
        """The target holds our whole log: TimeoutNow may go."""
        progress = self.leader.progress.get(self.target)
        return (not self.sent and progress is not None
                and progress.match_index == self.leader.consensus.log.last_index)

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def succeed(self) -> None:
        self.leader.consensus.effects.complete(self.future, True)

    def fail(self, reason: str) -> None:
        self.leader.consensus.effects.fail(
            self.future, LeaderTimeoutError(f"leadership transfer to {self.target} failed: {reason}"))
