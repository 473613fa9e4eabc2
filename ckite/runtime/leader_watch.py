"""The leader-watch thread: tells the application's callbacks who leads, outside every lock.

A step of the core that changes the role or the leader sets ``Effects.leader_changed``; the
runtime, with the consensus lock released, wakes this thread (``changed``), which reads the
leader afresh and calls each callback of ``CKite.on_leader_change`` with it. The callbacks
run here, not on the thread that carried out the step (an RPC thread answering a peer, the
election timer): a slow callback delays other callbacks, never a heartbeat or a vote.

Notifications are coalesced: a callback sees the leader as it is when it is called, and is
not called again until it differs from the last one delivered (two changes in quick
succession may be one call with the latest). The thread starts with the first callback.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)

#: Longest the thread sleeps without a wake-up (bounds how late it notices stop()).
IDLE_WAIT = 0.1

LeaderCallback = Callable[[str | None], object]


class LeaderWatch:
    def __init__(self, tag: str, current_leader: Callable[[], str | None]) -> None:
        self._current_leader = current_leader
        self._lock = threading.Lock()   # guards the callbacks and whether the thread runs; never held calling them
        self._callbacks: list[LeaderCallback] = []
        self._delivered: dict[int, str | None] = {}   # by id(callback): the last leader it was told
        self._running = False
        self._enabled = False
        self.worker = Worker(f"ckite-{tag}-leader", self.step)

    def enable(self) -> None:
        """The member started: run the thread once there is a callback."""
        with self._lock:
            self._enabled = True
            start = bool(self._callbacks) and not self._running
            self._running = self._running or start
        if start:
            self.worker.start()

    def subscribe(self, callback: LeaderCallback) -> Callable[[], None]:
        """Call ``callback(leader)`` now-ish with the current leader and at every change; returns
        the function that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)
            start = self._enabled and not self._running
            self._running = self._running or start
        if start:
            self.worker.start()
        self.worker.wake()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
        return unsubscribe

    def changed(self) -> None:
        """A step changed the role or the leader (called without the consensus lock)."""
        self.worker.wake()

    def stop(self) -> None:
        self.worker.signal_stop()
        self.worker.join()

    def step(self, worker: Worker) -> None:
        worker.wait(IDLE_WAIT)
        if worker.stopping:
            return
        leader = self._current_leader()
        with self._lock:
            due = [c for c in self._callbacks if self._delivered.get(id(c), _NEVER) != leader]
            for callback in due:
                self._delivered[id(callback)] = leader
        for callback in due:
            try:
                callback(leader)
            except Exception:   # the user's code: logged, and the others are still told
                logger.exception("%s: a leader-change callback raised", worker.name)


_NEVER = object()   # delivered to no callback yet: the first call tells the current leader, even None
