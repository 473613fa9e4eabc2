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
from collections.abc import Callable
from concurrent.futures import Future
from typing import BinaryIO

from ckite.consensus.consensus import Consensus
from ckite.errors import StorageError
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)

#: Longest the compactor sleeps without work (bounds how late it notices stop()).
IDLE_WAIT = 0.1


class Compactor:
    """Holds at most one prepared snapshot; a new one is not prepared until it is stored."""

    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus
        self._lock = threading.Lock()
        self._job: tuple[int, Callable[[BinaryIO], None]] | None = None
        self._busy = False
        self._waiters: list[Future[int]] = []   # callers of snapshot_now waiting for the job held
        self.worker: Worker | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

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
            logger.exception("%s: snapshot at %d failed; the log is kept whole", self.consensus.member_id, index)
            for waiter in waiters:
                waiter.set_exception(StorageError(f"the snapshot at {index} failed: {exc!r}"))
        else:
            newer = self.consensus.snapshot   # None stored: a newer snapshot was installed meanwhile
            taken = stored.last_index if stored is not None else newer.last_index if newer is not None else index
            for waiter in waiters:
                waiter.set_result(taken)
        finally:
            with self._lock:
                self._busy = self._job is not None
