"""Membership changes, driven by the leader one configuration entry at a time (Raft §6).

A change asks for a set of voters: members to add and members to remove. Each member to add
joins first as a *learner* marked ``promoting`` (it receives the log or a snapshot and counts
toward nothing), so adding a slow, empty or not yet started member never stalls commitment
(thesis §4.2.1). It stays a learner for as long as it takes to start and catch up: there is
no deadline after which the change is undone, only a cancellation (removing that member
again). Once every member to add is within one batch of the leader's log, the leader
appends the joint configuration C_old,new (voters asked for, and the current ones), in which
every decision needs a majority of both, and once that is committed, C_new.

Every configuration takes effect when appended, and the leader appends the next one only
once the previous one is committed, so at most one entry is in flight. The configuration
itself says how far a change got (promoting learners, a joint configuration), so whatever
leader comes next finishes it, even if an earlier leader started it. A change is identified
by what it asks for: asking again for the same change (a retry, on this or a new leader)
joins it instead of failing, which is what makes retrying a membership call safe.

A change may also add *learners that stay learners* (``CKite.add_learner``): non-voting members
that receive the log, for a read replica or a warm spare, until a later change promotes one
(``CKite.promote``: an addition of a member that is a learner already) or removes it.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckite.consensus.membership import Configuration
from ckite.errors import LostLeadershipError, MembershipChangeError, MembershipChangeInProgressError

if TYPE_CHECKING:
    from ckite.consensus.leader import Leader


class ChangeKind(enum.Enum):
    ADD = "add"
    REMOVE = "remove"


class ChangeState(str, enum.Enum):
    """How far a membership change got."""

    CATCHING_UP = "catching-up"   #: members to add are learners, not yet close to the leader's log
    JOINT = "joint"               #: C_old,new is in the log: both majorities decide
    DONE = "done"                 #: the configuration asked for is committed


@dataclass(frozen=True)
class MembershipChange:
    """A change's request and its progress: what ``/changecluster`` and ``/members`` answer."""

    members: tuple[str, ...]       #: the voters asked for
    added: tuple[str, ...]
    removed: tuple[str, ...]
    state: ChangeState
    cancelled: tuple[str, ...] = ()   #: members whose addition was cancelled before they became voters
    learners: tuple[str, ...] = ()    #: members added as learners that stay learners

    def to_json(self) -> dict[str, Any]:
        return {"members": list(self.members), "added": list(self.added), "removed": list(self.removed),
                "state": self.state.value, "cancelled": list(self.cancelled), "learners": list(self.learners)}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> MembershipChange:
        return cls(tuple(document["members"]), tuple(document["added"]), tuple(document["removed"]),
                   ChangeState(document["state"]), tuple(document.get("cancelled", ())),
                   tuple(document.get("learners", ())))


@dataclass
class PendingChange:
    """A client's request, completed once the configuration it asks for is committed."""

    target: frozenset[str]    #: the voters asked for
    added: frozenset[str]
    removed: frozenset[str]
    future: Future[MembershipChange] = field(default_factory=Future)
    cancelled: frozenset[str] = frozenset()
    learners: frozenset[str] = frozenset()   #: to add as learners that stay learners

    def describe(self, state: ChangeState) -> MembershipChange:
        return MembershipChange(tuple(sorted(self.target)), tuple(sorted(self.added)), tuple(sorted(self.removed)),
                                state, tuple(sorted(self.cancelled)), tuple(sorted(self.learners)))

    def done(self, configuration: Configuration) -> bool:
        """The committed ``configuration`` is what this change asks for."""
        return (configuration.voters == self.target and self.learners <= configuration.learners
                and not (self.cancelled & configuration.learners) and not (self.removed & configuration.members))


def derived_change(configuration: Configuration) -> MembershipChange | None:
    """The change a configuration shows in progress, for a member that knows no request."""
    if configuration.is_joint:
        old = configuration.old_voters or frozenset()
        return MembershipChange(tuple(sorted(configuration.voters)), tuple(sorted(configuration.voters - old)),
                                tuple(sorted(old - configuration.voters)), ChangeState.JOINT)
    if configuration.promoting:
        return MembershipChange(tuple(sorted(configuration.voters | configuration.promoting)),
                                tuple(sorted(configuration.promoting)), (), ChangeState.CATCHING_UP)
    return None


class Reconfiguration:
    """The leader's side of membership changes; every method runs under the consensus lock."""

    def __init__(self, leader: Leader) -> None:
        self.leader = leader
        self.pending: PendingChange | None = None
        self._driving = False
        self._again = False

    def request(self, add: Iterable[str], remove: Iterable[str],
                learners: Iterable[str] = ()) -> Future[MembershipChange]:
        """Start a change (a future of its :class:`MembershipChange` once done): ``add`` voters
        (through the learner stage), ``remove`` members, add ``learners`` that stay learners.
        The same change again joins the one in progress; removing members whose addition is
        still catching up cancels their addition; any other change while one is in progress
        fails at once (MembershipChangeInProgressError); removing every voter, or a learner that
        is also to be a voter, fails (MembershipChangeError)."""
        add, remove, learners = frozenset(add), frozenset(remove), frozenset(learners)
        configuration = self.leader.consensus.configuration
        if learners & (add | configuration.voters):
            raise MembershipChangeError(f"{', '.join(sorted(learners & (add | configuration.voters)))}: a voter "
                                        "(or one asked for) cannot also be added as a learner")
        pending = self.pending
        if pending is not None:
            if not (add - pending.added) and not (remove - pending.removed) and not (learners - pending.learners):
                return pending.future   # the change in progress, asked for again
            if (not add and not learners and remove <= pending.added and not configuration.is_joint
                    and not remove & configuration.voters):
                pending.target -= remove
                pending.added -= remove
                pending.cancelled |= remove
                self.drive()
                return pending.future
            raise MembershipChangeInProgressError(
                f"a change is in progress ({self._summary(pending)}); retry when it ends")
        target = (configuration.voters | configuration.promoting | add) - remove
        if not target:
            raise MembershipChangeError("cannot remove the last voter: a cluster cannot remove all its voters")
        self.pending = pending = PendingChange(target, add - configuration.voters, remove & configuration.members,
                                               learners=learners - configuration.learners)
        self.drive()   # may complete it at once (nothing to change, or a one-voter cluster)
        return pending.future

    @staticmethod
    def _summary(pending: PendingChange) -> str:
        parts = [f"adding {', '.join(sorted(pending.added))}"] if pending.added else []
        parts += [f"removing {', '.join(sorted(pending.removed))}"] if pending.removed else []
        return "; ".join(parts) or "no change"

    def describe(self) -> MembershipChange | None:
        """The change in progress: the request this leader took, or what the configuration shows."""
        configuration = self.leader.consensus.configuration
        if self.pending is None:
            return derived_change(configuration)
        return self.pending.describe(ChangeState.JOINT if configuration.is_joint else ChangeState.CATCHING_UP)

    def drive(self) -> None:
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
                self._step()
        finally:
            self._driving = False

    def _step(self) -> None:
        consensus = self.leader.consensus
        if consensus.configuration_index > consensus.commit_index:
            return   # one configuration in flight at a time
        configuration = consensus.configuration
        if configuration.is_joint:
            self._append(Configuration(configuration.voters, None, configuration.learners, configuration.promoting))
            return
        pending = self.pending
        if pending is None:
            self._promote_caught_up(configuration)
        elif pending.done(configuration):
            self.pending = None
            self.leader.consensus.effects.complete(pending.future, pending.describe(ChangeState.DONE))
        else:
            self._advance(pending, configuration)

    def _promote_caught_up(self, configuration: Configuration) -> None:
        """No request here (a new leader): finish the additions the configuration shows, one by one."""
        for learner in sorted(configuration.promoting):
            if self._caught_up(learner):
                self._append(Configuration(configuration.voters | {learner}, configuration.voters,
                                           configuration.learners - {learner}, configuration.promoting - {learner}))
                return

    def _advance(self, pending: PendingChange, configuration: Configuration) -> None:
        """The next configuration toward ``pending.target``: learners first, then the joint step."""
        joining = pending.target - configuration.voters
        learners = ((configuration.learners | joining | pending.learners) - pending.cancelled
                    - (pending.removed - configuration.voters))
        promoting = (configuration.promoting | joining) & learners
        if learners != configuration.learners or promoting != configuration.promoting:
            self._append(Configuration(configuration.voters, None, learners, promoting))
        elif all(self._caught_up(member) for member in joining):
            self._append(Configuration(pending.target, configuration.voters, learners - joining,
                                       promoting - joining))

    def _caught_up(self, learner: str) -> bool:
        """Within one batch of the leader's log: promoting it cannot stall commitment for long."""
        progress = self.leader.progress.get(learner)
        consensus = self.leader.consensus
        return (progress is not None and progress.match_index > 0
                and consensus.log.last_index - progress.match_index <= consensus.settings.max_entries_per_append)

    def _append(self, configuration: Configuration) -> None:
        self.leader.consensus.append_configuration(configuration)

    def end(self) -> None:
        """Leadership lost: the change may still complete under the next leader."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.leader.consensus.effects.fail(pending.future, LostLeadershipError(
                "leadership lost during the membership change; it may still complete"))
