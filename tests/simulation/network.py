"""The simulated network: a timeline of message deliveries, with faults chosen by a seeded RNG."""
from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    """Per-message fault probabilities and the delay range (seconds); delays reorder messages."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.001
    max_delay: float = 0.010


@dataclass(order=True)
class _Event:
    time: float
    sequence: int
    action: Callable[[], None] = field(compare=False)


class SimNetwork:
    """Delivers RPCs as two one-way messages (request, reply), each subject to faults.

    A request that gets no reply (dropped either way, partitioned, target down) makes the
    sender see a failure after ``rpc_timeout``, just as a real RPC times out.
    """

    def __init__(self, rng: random.Random, rpc_timeout: float) -> None:
        self.rng = rng
        self.rpc_timeout = rpc_timeout
        self.faults = Faults()
        self.blocked: set[tuple[str, str]] = set()   # (from, to) links that lose everything
        self._events: list[_Event] = []
        self._sequence = itertools.count()
        self.now = 0.0
        self.sent = 0

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, _Event(at, next(self._sequence), action))

    def next_time(self) -> float | None:
        return self._events[0].time if self._events else None

    def run_due(self, now: float) -> None:
        """Run every event due at or before ``now``, in time order."""
        self.now = now
        while self._events and self._events[0].time <= now:
            heapq.heappop(self._events).action()

    def link_up(self, source: str, target: str) -> bool:
        return (source, target) not in self.blocked

    def rpc(self, source: str, target: str, deliver: Callable[[], Any], on_reply: Callable[[Any], None],
            on_failure: Callable[[], None], reachable: Callable[[str], bool]) -> None:
        """Send a request from ``source`` to ``target``.

        ``deliver`` runs at the target and returns its reply (or raises); ``reachable(node)``
        says whether a node is up at delivery time.
        """
        self.sent += 1
        replied = [False]

        def reply_arrives(response: Any) -> None:
            if reachable(source) and not replied[0]:
                replied[0] = True
                on_reply(response)

        def request_arrives() -> None:
            if not reachable(target) or not self.link_up(source, target):
                return
            try:
                response = deliver()
            except Exception:   # the target refused (stopped, starting): the caller sees a failure
                return
            if self._lost() or not self.link_up(target, source):
                return
            self.schedule(self.now + self._delay(), lambda: reply_arrives(response))

        def timeout() -> None:
            if reachable(source) and not replied[0]:
                replied[0] = True
                on_failure()

        if not self._lost():
            self.schedule(self.now + self._delay(), request_arrives)
            if self.rng.random() < self.faults.duplicate:
                self.schedule(self.now + self._delay(), request_arrives)
        self.schedule(self.now + self.rpc_timeout, timeout)

    def _lost(self) -> bool:
        return self.rng.random() < self.faults.drop

    def _delay(self) -> float:
        return self.rng.uniform(self.faults.min_delay, self.faults.max_delay)
