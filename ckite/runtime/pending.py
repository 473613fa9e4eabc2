"""Futures of writes waiting for their entry to be applied, keyed by (index, term).

An index alone is not enough: a deposed leader's entry at index i can be replaced by a
different entry at i. CKite completed the old client's future with the new entry's result;
here a future completes only when the entry applied at its index carries its term, and
fails with LostLeadershipError when another entry took its place.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Iterable

from ckite.errors import CKiteError, LostLeadershipError, WriteTimeoutError
from ckite.metrics import LatencyHistogram


class PendingWrites:
    """Guarded by its own lock; taken after the consensus lock when both are held.

    Each write also has a deadline, so that a future handed out by ``write_async`` fails with
    WriteTimeoutError instead of waiting forever on a leader that lost its quorum.
    """

    def __init__(self, commit_latency: LatencyHistogram | None = None) -> None:
        self._lock = threading.Lock()
        self._commit_latency = commit_latency or LatencyHistogram()
        self._by_index: dict[int, tuple[int, Future, float]] = {}
        self._deadlines: deque[tuple[float, Future]] = deque()   # in registration order

    def register(self, first_index: int, term: int, futures: Iterable[Future], deadline: float) -> None:
        now = time.monotonic()
        with self._lock:
            for offset, future in enumerate(futures):
                self._by_index[first_index + offset] = (term, future, now)
                self._deadlines.append((deadline, future))

    def expire(self, now: float) -> None:
        """Fail the futures whose deadline passed (their entries may still commit later).

        Deadlines are checked in registration order, so a write registered after one with a
        longer timeout expires no earlier than that one: a cheap bound, not an exact timer.
        """
        expired = []
        with self._lock:
            while self._deadlines and (self._deadlines[0][0] <= now or self._deadlines[0][1].done()):
                expired.append(self._deadlines.popleft()[1])
        for future in expired:
            _fail(future, WriteTimeoutError("write not applied within its timeout; it may still apply"))

    def __len__(self) -> int:
        return len(self._by_index)

    def take(self, index: int, term: int) -> Future | None:
        """The future waiting on (index, term), removed; a waiter on another term is failed."""
        with self._lock:
            waiting = self._by_index.pop(index, None)
        if waiting is None:
            return None
        waiting_term, future, registered_at = waiting
        if waiting_term != term:
            _fail(future, LostLeadershipError(
                f"entry {index} of term {waiting_term} was overwritten by term {term}; it was not applied"))
            return None
        self._commit_latency.observe(time.monotonic() - registered_at)
        return future

    def fail_from(self, index: int, error: CKiteError) -> None:
        """Fail every waiter at ``index`` or later (their entries were truncated)."""
        with self._lock:
            doomed = [i for i in self._by_index if i >= index]
            futures = [self._by_index.pop(i)[1] for i in doomed]
        for future in futures:
            _fail(future, error)

    def fail_all(self, error: CKiteError) -> None:
        self.fail_from(0, error)


def _fail(future: Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
