"""The counter workload: clients add 1 to one key, each increment under its own Idempotency-Key,
and send it again under that key until a member acknowledges it (``exactly_once.py`` judges it).

A client starts each increment on a random member and, after anything but a 200 (a 503, a
timeout, a refused or reset connection), sends the very same request to the next member: the
idempotency key makes a retry anywhere get the first outcome, so however many attempts reach the
cluster the increment applies once. It moves on only once acknowledged (or, after a 4xx, which no
retry would change: the checker reports it). Every attempt is one operation in the history; the
attempts of one increment share its key and its process (they are one operation, retried, unlike
the register workload's, which start a new process after an unknown outcome).

When the run stops the clients, each one finishes the increment it is on — the nemesis has
healed by then — so that every increment ends acknowledged and the count can be checked exactly;
one still unacknowledged after ``FINISH_TIMEOUT`` is left pending.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from tests.jepsen.history import INCR, OK, Recorder
from tests.jepsen.workload import CLIENT_TIMEOUT, ClientsConfig, ClientThreads, perform
from tests.processes import Member

#: The one key every client increments.
COUNTER_KEY = "counter"
#: After the last heal, how long a client may take to get its last increment acknowledged: an
#: election and a few retries, on a loaded machine.
FINISH_TIMEOUT = 30.0
#: Between two attempts of one increment: a refused connection fails at once, and a client
#: should not spin on a member that is down.
RETRY_PAUSE = 0.05


@dataclass(frozen=True)
class CounterConfig(ClientsConfig):
    name: ClassVar[str] = "counter"


class CounterWorkload(ClientThreads):
    """``config.clients`` threads incrementing ``COUNTER_KEY`` until :meth:`stop`."""

    def __init__(self, members: Sequence[Member], recorder: Recorder, config: CounterConfig, seed: int) -> None:
        super().__init__(members, recorder, config, [COUNTER_KEY], seed)
        self._abandon = threading.Event()   # set when even the increment in progress is given up

    def stop(self) -> None:
        """No new increments; wait up to ``FINISH_TIMEOUT`` for those in progress to be acknowledged."""
        self._stop.set()
        deadline = time.monotonic() + FINISH_TIMEOUT
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._abandon.set()
        super().stop()

    def _issue(self, index: int) -> None:
        rng = random.Random(f"{self._seed}-counter-{index}")
        for count in itertools.count(1):
            if self._stop.is_set():
                return
            self._increment(index, f"p{index}-{count}", rng.randrange(len(self.members)))
            self._stop.wait(rng.uniform(0, self.config.think))

    def _increment(self, process: int, key: str, first: int) -> None:
        """Send the increment named ``key`` to member ``first``, then to the next one after each
        failure, until it is acknowledged or rejected, or the run abandons it."""
        for attempt in itertools.count():
            member = self.members[(first + attempt) % len(self.members)]
            op = self.recorder.invoke(process, INCR, COUNTER_KEY, node=member.name, idempotency_key=key)
            op = perform(op, member.client(CLIENT_TIMEOUT), self.recorder)
            if op.outcome == OK or op.rejected or self._abandon.wait(RETRY_PAUSE):
                return
