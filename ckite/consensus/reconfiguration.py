"""Membership changes, driven by the leader one configuration entry at a time (Raft §6).

Adding X: X joins as a *learner* (it receives the log or a snapshot and counts toward
nothing) until its log is within one batch of the leader's (thesis §4.2.1), so adding a
slow or empty member never stalls commitment. Then the leader appends the joint
configuration C_old,new, in which every decision needs a majority of both the old and the
new voters, and once that is committed, C_new. Removing X goes through the same joint step.

Every configuration takes effect when appended, and the leader appends the next one only
once the previous one is committed, so at most one change is in flight. Whatever leader
finds a joint configuration or a caught-up learner in its log finishes the change, even if
an earlier leader started it.
"""
from __future__ import annotations

import enum
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckite.consensus.membership import Configuration
from ckite.errors import LostLeadershipError, MembershipChangeError, MembershipChangeInProgressError

if TYPE_CHECKING:
    from ckite.consensus.leader import Leader


class ChangeKind(enum.Enum):
    ADD = "add"
    REMOVE = "remove"


@dataclass
class PendingChange:
    """A client's request, completed once the configuration it asked for is committed."""

    kind: ChangeKind
    member: str
    future: Future
    deadline: float   # an added member must have caught up by then, or the change is undone
    expired: bool = False


class Reconfiguration:
    """The leader's side of membership changes; every method runs under the consensus lock."""

    def __init__(self, leader: "Leader") -> None:
        self.leader = leader
        self.pending: PendingChange | None = None
        self._driving = False
        self._again = False

    def request(self, kind: ChangeKind, member: str, deadline: float) -> Future:
        """Start a change; fails at once (MembershipChangeError) while another one is in progress."""
        if self.pending is not None:
            raise MembershipChangeInProgressError(
                f"a change is in progress ({self.pending.kind.value} {self.pending.member}); retry when it ends")
        configuration = self.leader.consensus.configuration
        if kind is ChangeKind.REMOVE and configuration.voters == {member} and not configuration.is_joint:
            raise MembershipChangeError(f"{member} is the last voter; a cluster cannot remove all its members")
        future: Future = Future()
        self.pending = PendingChange(kind, member, future, deadline)
        self.drive(self.leader.consensus.clock())
        return future

    def drive(self, now: float) -> None:
        """Take every step whose previous configuration is committed. Appending may commit at
        once (a one-voter cluster) and call back here: that call only asks for another round."""
        if self._driving:
            self._again = True
            return
        self._driving = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._step(now)
        finally:
            self._driving = False

    def _step(self, now: float) -> None:
        consensus = self.leader.consensus
        if consensus.configuration_index > consensus.commit_index:
            return   # one configuration in flight at a time
        configuration = consensus.configuration
        if configuration.is_joint:
            self._append(Configuration(configuration.voters, None, configuration.learners))
            return
        if self._finish_pending(configuration):
            return
        for learner in sorted(configuration.learners):
            if self._caught_up(learner):
                self._append(Configuration(configuration.voters | {learner}, configuration.voters,
                                           configuration.learners - {learner}))
                return
        if self.pending is not None:
            self._start_pending(configuration, now)

    def _finish_pending(self, configuration: Configuration) -> bool:
        """Complete the client's future when the committed configuration is what it asked for."""
        pending = self.pending
        if pending is None:
            return False
        done = (pending.member in configuration.voters if pending.kind is ChangeKind.ADD
                else pending.member not in configuration.members)
        if done:
            self.pending = None
            if not pending.future.done():
                pending.future.set_result(True)
        return done

    def _start_pending(self, configuration: Configuration, now: float) -> None:
        pending = self.pending
        assert pending is not None
        member = pending.member
        if pending.kind is ChangeKind.ADD:
            if member not in configuration.learners:
                self._append(Configuration(configuration.voters, None, configuration.learners | {member}))
            elif pending.expired:
                self._append(Configuration(configuration.voters, None, configuration.learners - {member}))
                self._fail(MembershipChangeError(f"{member} did not catch up with the leader's log in time; "
                                                 "it was not added (is it running and reachable?)"))
        elif member in configuration.learners:
            self._append(Configuration(configuration.voters, None, configuration.learners - {member}))
        else:
            self._append(Configuration(configuration.voters - {member}, configuration.voters,
                                       configuration.learners))

    def deadline(self) -> float | None:
        """When an added member's time to catch up runs out (None: no such wait)."""
        pending = self.pending
        if pending is None or pending.expired or pending.kind is not ChangeKind.ADD:
            return None
        return pending.deadline

    def on_tick(self, now: float) -> None:
        pending = self.pending
        if pending is not None and not pending.expired and now >= pending.deadline:
            pending.expired = True
            self.drive(now)

    def _caught_up(self, learner: str) -> bool:
        """Within one batch of the leader's log: promoting it cannot stall commitment for long."""
        progress = self.leader.progress.get(learner)
        consensus = self.leader.consensus
        return (progress is not None and progress.match_index > 0
                and consensus.log.last_index - progress.match_index <= consensus.settings.max_entries_per_append)

    def _append(self, configuration: Configuration) -> None:
        self.leader.consensus.append_configuration(configuration)

    def _fail(self, error: Exception) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and not pending.future.done():
            pending.future.set_exception(error)

    def end(self) -> None:
        """Leadership lost: the client cannot know whether the change will complete."""
        self._fail(LostLeadershipError("leadership lost during the membership change; it may still complete"))
