"""The applier thread: applies committed entries, in order, and completes waiting writes.

It waits for the commit index to pass what it has applied, takes the newly committed
entries in one batch, applies them to the state machine outside the consensus lock, and
then publishes the new applied index for readers waiting on it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from ckite.codec import decode_command
from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError, CommandError
from ckite.log.entry import EntryKind, LogEntry
from ckite.runtime.pending import PendingWrites
from ckite.runtime.worker import Worker
from ckite.statemachine import StateMachine

logger = logging.getLogger(__name__)

#: Longest the applier sleeps without a wake-up: bounds how late it notices stop() and how late
#: an expired write future fails.
IDLE_WAIT = 0.1


class Applier:
    """Owns ``applied_index``; ``state_machine_lock`` serialises applies with reads."""

    def __init__(self, consensus: Consensus, state_machine: StateMachine, pending: PendingWrites,
                 clock: Callable[[], float]) -> None:
        self.consensus = consensus
        self.clock = clock
        self.state_machine = state_machine
        self.pending = pending
        self.state_machine_lock = threading.Lock()
        self.commit_signal = threading.Condition(consensus.lock)
        self.applied_signal = threading.Condition()
        self.applied_index = state_machine.last_applied_index
        consensus.set_applied(self.applied_index)

    def step(self, worker: Worker) -> None:
        with self.commit_signal:
            if self.consensus.commit_index <= self.applied_index:
                self.commit_signal.wait(IDLE_WAIT)
            if worker.stopping or self.consensus.commit_index <= self.applied_index:
                self.pending.expire(self.clock())
                return
            entries = self.consensus.log.slice(self.applied_index + 1, self.consensus.commit_index + 1)
        with self.state_machine_lock:
            outcomes = [(entry, *self._apply(entry)) for entry in entries]
        for entry, result, error in outcomes:
            future = self.pending.take(entry.index, entry.term)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
        self.pending.expire(self.clock())
        last = entries[-1].index
        self.consensus.set_applied(last)
        with self.applied_signal:
            self.applied_index = last
            self.applied_signal.notify_all()

    def _apply(self, entry: LogEntry) -> tuple[Any, CKiteError | None]:
        if entry.kind != EntryKind.COMMAND:
            return None, None
        try:
            command = decode_command(entry.data)
        except CKiteError as exc:
            logger.error("entry %d cannot be decoded (%s); skipped on this member", entry.index, exc)
            return None, exc
        try:
            return self.state_machine.apply(command), None
        except Exception as exc:   # the user's code: fail this command, keep applying
            logger.warning("state machine raised on entry %d (%s): %r", entry.index, type(command).__name__, exc)
            return None, CommandError(str(exc), type(exc).__name__)

    def wait_applied(self, index: int, timeout: float) -> bool:
        """Block until ``index`` is applied; False when ``timeout`` passes first."""
        with self.applied_signal:
            return self.applied_signal.wait_for(lambda: self.applied_index >= index, timeout)

    def notify_stop(self) -> None:
        with self.commit_signal:
            self.commit_signal.notify_all()
