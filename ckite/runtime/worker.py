"""A named background thread that loops until stopped and survives its own exceptions.

CKite's workers died silently on the first unexpected exception (a node then stopped
applying, forever). A :class:`Worker` logs the exception, pauses briefly so a persistent
fault does not spin, and carries on.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Pause after an unexpected exception before the loop runs again.
ERROR_BACKOFF = 0.05


class Worker:
    """Runs ``step(worker)`` repeatedly on its own thread; ``step`` waits with :meth:`wait`."""

    def __init__(self, name: str, step: Callable[[Worker], None],
                 on_exit: Callable[[], None] | None = None) -> None:
        self.name = name
        self._step = step
        self._on_exit = on_exit
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def finished(self) -> bool:
        """The thread ran and ended (so ``on_exit`` has run)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wakeup.set()

    def wait(self, timeout: float | None) -> None:
        """Sleep until woken, stopped, or ``timeout`` seconds pass (None: no limit)."""
        if timeout is not None and timeout <= 0:
            return
        self._wakeup.wait(timeout)
        self._wakeup.clear()

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped; wake-ups do not cut it short (a back-off)."""
        self._stop.wait(seconds)

    def signal_stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("thread %s did not stop within %.1fs", self.name, timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step(self)
                except Exception:
                    logger.exception("%s: unexpected error; continuing", self.name)
                    self._stop.wait(ERROR_BACKOFF)
        finally:
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    logger.exception("%s: cleaning up failed", self.name)
