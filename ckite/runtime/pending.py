"""Futures of writes waiting for their entry to be applied, keyed by (index, term).

An index alone is not enough: a deposed leader's entry at index i can be replaced by a
different entry at i. CKite completed the old client's future with the new entry's result;
here a future completes only when the entry applied at its index carries its term, and
fails with EntryOverwrittenError (certainly not applied) when another entry took its place.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from ckite.errors import CKiteError, EntryOverwrittenError, WriteTimeoutError
from ckite.log.entry import LogEntry
from ckite.metrics.counts import Observer
from ckite.sessions.table import Outcome
from ckite.write_result import WriteResult


class PendingWrites:
    """Guarded by its own lock; taken after the consensus lock when both are held.

    Each write also has a deadline, so that a future handed out by ``write_async`` fails with
    WriteTimeoutError instead of waiting forever on a leader that lost its quorum.

    A future registered ``indexed`` completes with a :class:`~ckite.write_result.WriteResult`
    (``CKite.apply``); the others with the command's result alone, as they always did, so the
    writes that do not ask for the index pay nothing for it.
    """

    def __init__(self, commit_latency: Observer | None = None) -> None:
        self._lock = threading.Lock()
        self._commit_latency = commit_latency
        self._by_index: dict[int, tuple[int, Future[Any], float, bool]] = {}
        self._deadlines: deque[tuple[float, Future[Any]]] = deque()   # in registration order

    def register(self, first_index: int, term: int, futures: Iterable[tuple[Future[Any], bool]],
                 deadline: float) -> None:
        """``futures``: (future, indexed) of the entries appended from ``first_index`` on."""
        now = time.monotonic()
        with self._lock:
            for offset, (future, indexed) in enumerate(futures):
                self._by_index[first_index + offset] = (term, future, now, indexed)
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

    def complete(self, entries: Sequence[LogEntry], outcomes: Sequence[Outcome]) -> None:
        """``entries`` were applied with these outcomes: complete their writers' futures, under
        one acquisition of the lock for the whole batch. A writer waiting on an index where
        another term's entry was applied certainly failed: an entry has one index, and a
        different one is committed there."""
        with self._lock:
            waiting = [(entry, outcome, self._by_index.pop(entry.index))
                       for entry, outcome in zip(entries, outcomes, strict=True) if entry.index in self._by_index]
        if not waiting:
            return
        if self._commit_latency is not None:
            self._commit_latency.observe(time.monotonic() - waiting[0][2][2])   # the batch's longest wait
        for entry, outcome, (term, future, _, indexed) in waiting:
            if term != entry.term:
                _fail(future, EntryOverwrittenError(f"entry {entry.index} of term {term} was overwritten by term "
                                                    f"{entry.term}; it was not applied"))
            elif outcome.error is not None:
                _fail(future, outcome.error)
            elif not future.done():
                future.set_result(WriteResult(outcome.result, outcome.index or entry.index, outcome.term or entry.term)
                                  if indexed else outcome.result)

    def fail_all(self, error: CKiteError) -> None:
        with self._lock:
            futures = [future for _, future, _, _ in self._by_index.values()]
            self._by_index.clear()
        for future in futures:
            _fail(future, error)


def _fail(future: Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
