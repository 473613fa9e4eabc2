"""The election timer thread: sleeps until the consensus deadline, then lets the role act.

Followers and candidates use it for the election timeout, the leader for check-quorum.
It decides nothing itself: when the deadline moved (a heartbeat arrived), ``tick`` finds
nothing to do and the loop sleeps until the new deadline.
"""
from __future__ import annotations

from collections.abc import Callable

from ckite.consensus.consensus import Consensus
from ckite.runtime.worker import Worker


def election_timer_step(consensus: Consensus, clock: Callable[[], float]) -> Callable[[Worker], None]:
    def step(worker: Worker) -> None:
        deadline = consensus.deadline()
        worker.wait(None if deadline is None else deadline - clock())
        if not worker.stopping:
            consensus.tick()
    return step
