"""Durable writes, in the order the consensus core decided them, made outside its lock.

The core never touches the disk. Under its lock it only *enqueues* what must become durable
(a :class:`DurableWrite`: term and vote, a truncation, entries, a snapshot) and notes the
queue's position. Whoever must not go on before that is durable (the RPC thread before its
reply, the election timer before its RequestVotes, the submitter for the leader's own
entries) calls :meth:`LogWriter.flush` after releasing the lock. The first such thread
becomes the writer: it takes everything queued so far and hands it to the storage in one
call (one SQLite transaction, one fsync: group commit across threads); the others wait for
it, and one of them writes what was queued meanwhile. No extra thread, no hand-off when one
thread is alone (the common case for a follower answering its leader).

After a failed write nothing more reaches the disk, every waiter gets the StorageError, and
``on_failure`` takes the member out of service. ``on_durable`` tells the core which writes are
on disk, and how long the storage took (a leader counts itself as holding an entry only
then); both run on the writing thread, with no lock of this object held, so they may take
the consensus lock.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ckite.errors import StorageError
from ckite.log.storage import DurableWrite, LogStorage


class LogWriter:
    """The ordered queue of durable writes of one member, flushed by the threads that need them."""

    def __init__(self, storage: LogStorage, on_durable: Callable[[Sequence[DurableWrite], float], None],
                 on_failure: Callable[[StorageError], None]) -> None:
        self._storage = storage
        self._on_durable = on_durable
        self._on_failure = on_failure
        self._changed = threading.Condition()
        self._queue: list[DurableWrite] = []
        self._queued = 0       # writes enqueued so far; the last one's sequence number
        self._durable = 0      # writes on disk so far
        self._writing = False
        self._failed: StorageError | None = None

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest write enqueued (0: none yet)."""
        return self._queued

    @property
    def durable_seq(self) -> int:
        return self._durable

    def enqueue(self, write: DurableWrite) -> int:
        """Queue ``write`` after every write enqueued before it; returns its sequence number.
        Memory only: the core calls this under its lock."""
        with self._changed:
            self._queue.append(write)
            self._queued += 1
            return self._queued

    def flush(self, seq: int) -> None:
        """Return once every write up to ``seq`` is durable, writing them on this thread if no
        other is; raises StorageError if one failed. Never call this holding the consensus lock."""
        while True:
            with self._changed:
                while self._failed is None and self._durable < seq and self._writing:
                    self._changed.wait()
                if self._durable >= seq:
                    return
                if self._failed is not None:
                    raise StorageError(f"an earlier durable write failed: {self._failed}")
                batch, self._queue, self._writing = self._queue, [], True
            error = None
            started = time.perf_counter()
            try:
                self._storage.write(batch)
            except StorageError as exc:
                error = exc
            seconds = time.perf_counter() - started
            with self._changed:
                self._writing = False
                if error is None:
                    self._durable += len(batch)
                else:
                    self._failed = error
                self._changed.notify_all()
            if error is not None:
                self._on_failure(error)
                raise error
            self._on_durable(batch, seconds)
