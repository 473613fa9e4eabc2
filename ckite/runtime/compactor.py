"""The compactor thread: writes a state machine's snapshot to a file and compacts the log.

The applier only *begins* a snapshot (``StateMachine.begin_snapshot``, between two commands:
for a state machine that supports it, a cheap copy) and hands over the function that writes
it. Writing the file, its fsync and the log's compaction happen here, without the consensus
lock, so writes keep being appended, replicated, committed and applied, and heartbeats, votes
and ``/status`` answered, meanwhile.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import BinaryIO

from ckite.consensus.consensus import Consensus
from ckite.errors import StorageError
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)

#: Longest the compactor sleeps without work (bounds how late it notices stop()).
IDLE_WAIT = 0.1
#: After a failed snapshot (a full or read-only disk), none is tried again for this long,
#: doubling with each further failure up to MAX_RETRY_DELAY: retrying at every applied entry
#: would fill the log with tracebacks and the disk with partial files.
FIRST_RETRY_DELAY, MAX_RETRY_DELAY = 1.0, 60.0


class Compactor:
    """Holds at most one prepared snapshot; a new one is not prepared until it is stored."""

    def __init__(self, consensus: Consensus, clock: Callable[[], float] = time.monotonic) -> None:
        self.consensus = consensus
        self._clock = clock
        self._lock = threading.Lock()
        self._job: tuple[int, Callable[[BinaryIO], None]] | None = None
        self._busy = False
        self._failures = 0               # snapshots failed in a row
        self._retry_at = float("-inf")   # no snapshot is prepared before then
        self._waiters: list[Future[int]] = []   # callers of snapshot_now waiting for the job held
        self.worker: Worker | None = None

    @property
    def busy(self) -> bool:
        """A snapshot is being stored, or the last one failed and its retry delay runs."""
        with self._lock:
            return self._busy or self._clock() < self._retry_at

    def submit(self, index: int, write: Callable[[BinaryIO], None], waiter: Future[int] | None = None) -> None:
        """Compact up to applied ``index``; ``write(file)`` writes the state (on this thread).
        ``waiter`` completes with the index of the snapshot stored (a job not begun yet that a
        newer one replaces hands its waiters on: they get the newer snapshot)."""
        with self._lock:
            self._job, self._busy = (index, write), True
            if waiter is not None:
                self._waiters.append(waiter)
        if self.worker is not None:
            self.worker.wake()

    def step(self, worker: Worker) -> None:
        with self._lock:
            job, self._job = self._job, None
            waiters, self._waiters = self._waiters, []
        if job is None:
            worker.wait(IDLE_WAIT)
            return
        index, write = job
        try:
            stored = self.consensus.take_snapshot(index, write)
        except Exception as exc:
            self._failed(index, exc)
            for waiter in waiters:
                waiter.set_exception(StorageError(f"the snapshot at {index} failed: {exc!r}"))
        else:
            with self._lock:
                self._failures, self._retry_at = 0, float("-inf")
            newer = self.consensus.snapshot   # None stored: a newer snapshot was installed meanwhile
            taken = stored.last_index if stored is not None else newer.last_index if newer is not None else index
            for waiter in waiters:
                waiter.set_result(taken)
        finally:
            with self._lock:
                self._busy = self._job is not None

    def _failed(self, index: int, error: Exception) -> None:
        with self._lock:
            self._failures += 1
            delay = min(FIRST_RETRY_DELAY * 2 ** (self._failures - 1), MAX_RETRY_DELAY)
            self._retry_at = self._clock() + delay
            first = self._failures == 1
        message = "%s: snapshot at %d failed (%s); the log is kept whole; next try in %.0f s"
        args = (self.consensus.member_id, index, error, delay)
        if first:   # the whole story once per run of failures, a line for each retry after it
            logger.exception(message, *args)
        else:
            logger.warning(message, *args)
