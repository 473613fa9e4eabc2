"""The compactor thread: turns a state machine's snapshot into bytes and compacts the log.

The applier only *prepares* a snapshot (``StateMachine.prepare_snapshot``, which for a
state machine that supports it is a cheap copy); encoding and the durable write happen
here, so writes keep being appended, replicated, committed and applied meanwhile.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from ckite.consensus.consensus import Consensus
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)

#: Longest the compactor sleeps without work (bounds how late it notices stop()).
IDLE_WAIT = 0.1


class Compactor:
    """Holds at most one prepared snapshot; a new one is not prepared until it is stored."""

    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus
        self._lock = threading.Lock()
        self._job: tuple[int, Callable[[], bytes]] | None = None
        self._busy = False
        self.worker: Worker | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def submit(self, index: int, produce: Callable[[], bytes]) -> None:
        """Compact up to applied ``index`` with the bytes ``produce()`` returns (on this thread)."""
        with self._lock:
            self._job, self._busy = (index, produce), True
        if self.worker is not None:
            self.worker.wake()

    def step(self, worker: Worker) -> None:
        with self._lock:
            job, self._job = self._job, None
        if job is None:
            worker.wait(IDLE_WAIT)
            return
        index, produce = job
        try:
            self.consensus.take_snapshot(index, produce())
        except Exception:
            logger.exception("%s: snapshot at %d failed; the log is kept whole", self.consensus.member_id, index)
        finally:
            with self._lock:
                self._busy = self._job is not None
