"""The submitter thread: appends queued client writes to the leader's log in batches.

``write``/``write_async`` only queue the encoded command and wake this thread, so a client
that issues many writes at once pays microseconds per call, not a durable append each.
The thread drains everything queued and proposes it as one batch: under the consensus lock
the entries join the log and their futures are registered; then, without the lock, the
replicators are woken to send the batch while this thread writes it to disk (one SQLite
transaction, one fsync: group commit). While that fsync runs, followers persist the same
batch and the next batch accumulates.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError, WriteInterruptedError
from ckite.log.entry import EntryKind
from ckite.runtime.pending import PendingWrites
from ckite.runtime.worker import Worker
from ckite.runtime.write_future import WriteFuture
from ckite.sessions.request import stamped

#: Longest the submitter sleeps with an empty queue (bounds how late it notices stop()).
IDLE_WAIT = 0.1


class Submitter:
    def __init__(self, consensus: Consensus, pending: PendingWrites, clock: Callable[[], float],
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.consensus = consensus
        self.pending = pending
        self.clock = clock
        self.wall_clock = wall_clock
        self._queue: deque[tuple[EntryKind, bytes, Future[Any], float, bool]] = deque()
        self._ready = threading.Event()
        self._appending = threading.Lock()   # held by whoever proposes a batch: batches stay in order
        self.worker: Worker | None = None

    def submit(self, kind: EntryKind, data: bytes, timeout: float, indexed: bool = False,
               future: WriteFuture | None = None) -> Future[Any]:
        """Queue one entry; the future (``future``, or a new one) completes with its result once
        applied on this leader (``indexed``: with a :class:`~ckite.write_result.WriteResult`)."""
        if future is None:
            future = WriteFuture()
        self._queue.append((kind, data, future, self.clock() + timeout, indexed))
        if not self._ready.is_set():   # once per batch, not per write: setting it costs a lock and a notify
            self._ready.set()
        return future

    def propose_now(self, kind: EntryKind, data: bytes, timeout: float, indexed: bool = False) -> Future[Any]:
        """For a caller that waits for its result anyway (``write``): when nothing is queued and no
        batch is being appended, propose on the caller's own thread, saving the hand-off to the
        submitter thread (tens of microseconds of a lone client's latency); else queue it."""
        if not self._queue and self._appending.acquire(blocking=False):
            try:
                if not self._queue:
                    future = WriteFuture()
                    self._append([(kind, data, future, self.clock() + timeout, indexed)])
                    return future
            finally:
                self._appending.release()
        return self.submit(kind, data, timeout, indexed)

    def step(self, worker: Worker) -> None:
        if not self._ready.wait(IDLE_WAIT):
            return
        self._ready.clear()
        with self._appending:
            batch = []
            while self._queue:
                batch.append(self._queue.popleft())
            if batch:
                self._append(batch)

    def _append(self, batch: list[tuple[EntryKind, bytes, Future[Any], float, bool]]) -> None:
        futures = [(future, indexed) for _, _, future, _, indexed in batch]
        deadline = max(item[3] for item in batch)   # one for the batch: no write fails before its own timeout
        stamp = stamped(int(self.wall_clock() * 1000), b"")   # the log's time for client sessions: this leader's clock
        appended = False

        def register(first: int, term: int) -> None:
            nonlocal appended
            appended = True
            self.pending.register(first, term, futures, deadline)
        items = [(kind, stamp + data if kind == EntryKind.CLIENT_REQUEST else data)
                 for kind, data, _, _, _ in batch]
        try:
            self.consensus.propose(items, appended=register)
        except CKiteError as exc:
            if appended:   # the entries were in the log, perhaps sent: the failure of the leader's own write
                exc = WriteInterruptedError(f"the leader's disk failed while the write was in flight; it may still "
                                            f"apply: {exc}")
            for future, _ in futures:
                if not future.done():
                    future.set_exception(exc)

    def wake(self) -> None:
        """Unblock :meth:`step` (on stop)."""
        self._ready.set()

    def fail_queued(self, error: CKiteError) -> None:
        while self._queue:
            future = self._queue.popleft()[2]
            if not future.done():
                future.set_exception(error)
