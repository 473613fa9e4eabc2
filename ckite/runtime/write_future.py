"""The future of one write: a ``concurrent.futures.Future`` that builds its lock only if needed.

A stock Future makes a Condition (and its RLock) when created and takes it for every call;
on the write path that is several microseconds per write, most of it for nothing: a future
completed before anyone waits on it needs no condition at all. :class:`WriteFuture` is a real
Future (``asyncio.wrap_future`` and ``concurrent.futures.wait`` accept it) whose condition is
made on first need (a thread that waits in ``result()``/``exception()``, a ``cancel()``).
Until then, completing it and adding callbacks take one short module-wide lock instead; the
first thread that needs the condition makes it under that lock, so completion and waiting
never miss each other.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, LOGGER, PENDING, RUNNING
from typing import Any

#: Guards every WriteFuture that has no condition yet (held for a few bytecodes at a time).
_UNCONDITIONED = threading.Lock()

_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class WriteFuture(Future[Any]):
    def __init__(self) -> None:   # Future.__init__ without the Condition
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []

    def __getattr__(self, name: str) -> Any:
        """``_condition``, made the first time anything asks for it."""
        if name != "_condition":
            raise AttributeError(name)
        with _UNCONDITIONED:
            condition = self.__dict__.get("_condition")
            if condition is None:
                condition = self.__dict__["_condition"] = threading.Condition()
        return condition

    def _unconditioned(self) -> bool:
        return "_condition" not in self.__dict__

    # Reading the state is atomic: no lock needed to answer these.
    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> Any:
        if self._state == FINISHED:   # the common case for a write's caller: no lock, no wait
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with _UNCONDITIONED:
            if self._unconditioned():
                if self._state not in _DONE:
                    self._done_callbacks.append(fn)
                    return
                run_now = True
            else:
                run_now = False
        if run_now:
            self._run_callback(fn)
        else:
            super().add_done_callback(fn)

    def set_result(self, result: Any) -> None:
        if not self._finish(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._finish(None, exception):
            super().set_exception(exception)

    def _finish(self, result: Any, exception: BaseException | None) -> bool:
        """Complete without a condition when none exists (so nobody waits); False otherwise."""
        with _UNCONDITIONED:
            if not self._unconditioned():
                return False
            state = self._state
            if state not in _DONE:
                self._result, self._exception, self._state = result, exception, FINISHED
        if state in _DONE:   # raised without the lock: the message's repr() may make the condition
            raise InvalidStateError(f"{state}: {self!r}")
        self._invoke_callbacks()
        return True

    def _run_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        try:
            fn(self)
        except Exception:   # as Future does: a callback's failure is logged, not raised
            LOGGER.exception("exception calling callback for %r", self)
