"""ReadIndex (thesis §6.4): linearizable reads without writing to the log.

The leader records its commit index for a read, then confirms it is still the leader by
hearing from a quorum in a heartbeat *round* started after the read arrived. Every read
that arrives before the round's first heartbeat leaves shares that round, so a burst of
reads costs one quorum round trip, not one each.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from ckite.consensus.effects import Effects
from ckite.errors import LostLeadershipError


@dataclass(slots=True)
class _PendingRead:
    round: int
    read_index: int
    future: Future[int]


@dataclass
class ReadIndexTracker:
    """Rounds and the reads waiting on them; guarded by the consensus lock."""

    current_round: int = 0
    sent_round: int = 0
    waiting: list[_PendingRead] = field(default_factory=list)
    before_first_commit: list[Future[int]] = field(default_factory=list)

    def add(self, commit_index: int) -> Future[int]:
        """Register a read at ``commit_index``; opens a new round unless the open one is unsent.

        Every read of a round shares one future, resolved with the highest commit index among
        them: waiting for a later index than a read's own is still linearizable, and one
        wake-up serves the whole round instead of one per read.
        """
        open_round = self.waiting[-1] if self.waiting and self.waiting[-1].round == self.current_round else None
        if open_round is None or self.current_round <= self.sent_round:
            # The open round was sent already, or confirmed already (a one-voter cluster
            # confirms without sending): the read needs a new round.
            self.current_round += 1
            open_round = _PendingRead(self.current_round, commit_index, Future())
            self.waiting.append(open_round)
        read = open_round
        read.read_index = max(read.read_index, commit_index)
        return read.future

    def round_to_send(self) -> int:
        """The round a heartbeat sent now will confirm."""
        self.sent_round = self.current_round
        return self.current_round

    def confirm(self, confirmed_round: int, effects: Effects) -> None:
        """A quorum acknowledged every round up to ``confirmed_round``: release those reads."""
        still_waiting = []
        for read in self.waiting:
            if read.round <= confirmed_round:
                effects.complete(read.future, read.read_index)
            else:
                still_waiting.append(read)
        self.waiting = still_waiting

    def fail_all(self, reason: str, effects: Effects) -> None:
        for future in [read.future for read in self.waiting] + self.before_first_commit:
            effects.fail(future, LostLeadershipError(reason))
        self.waiting = []
        self.before_first_commit = []
