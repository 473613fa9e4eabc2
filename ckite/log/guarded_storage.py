"""A storage wrapper that reports the first durable write that fails.

A member whose disk fails (full, read-only, I/O error) must stop acknowledging anything:
the caller of the failed write gets the StorageError, and the consensus core is told so it
can take the member out of service instead of going on with a log it cannot persist.

It also keeps durable writes in the order they were decided. The leader writes its new
entries without holding the consensus lock (so replication runs during its fsync): it
reserves the storage (:meth:`~GuardedStorage.reserve`) while it still holds the lock, and every later
write (a vote, a truncation after stepping down, a compaction) waits for that reserved write
first. The failure hook runs after the order lock is released, so it may take the consensus
lock whoever the writer was.
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence

from ckite.errors import StorageError
from ckite.log.entry import LogEntry
from ckite.log.snapshot import Snapshot
from ckite.log.storage import LogStorage, StoredState


class GuardedStorage(LogStorage):
    def __init__(self, storage: LogStorage, on_failure: Callable[[StorageError], None]) -> None:
        self._storage = storage
        self._on_failure = on_failure
        self._order = threading.Lock()   # held by the write in progress, or reserved for the next
        self._failed: StorageError | None = None   # the first failure; guarded by _order

    def load(self) -> StoredState:
        return self._storage.load()

    def save_term_and_vote(self, term: int, voted_for: str | None) -> None:
        self._guard(self._storage.save_term_and_vote, term, voted_for)

    def append(self, entries: Sequence[LogEntry], truncate_from: int | None = None) -> None:
        self._guard(self._storage.append, entries, truncate_from)

    def save_snapshot(self, snapshot: Snapshot, discard_through: int) -> None:
        self._guard(self._storage.save_snapshot, snapshot, discard_through)

    def close(self) -> None:
        self._storage.close()

    def reserve(self) -> None:
        """Hold the next place in the order of writes for :meth:`append_reserved`."""
        self._order.acquire()

    def append_reserved(self, entries: Sequence[LogEntry]) -> None:
        """Append ``entries`` in the place :meth:`reserve` held (from any thread), then free it."""
        try:
            error = self._attempt(self._storage.append, entries, None)
        finally:
            self._order.release()
        self._report(error)

    def _guard(self, write: Callable[..., None], *args: object) -> None:
        with self._order:
            error = self._attempt(write, *args)
        self._report(error)

    def _attempt(self, write: Callable[..., None], *args: object) -> StorageError | None:
        """Run ``write`` (holding ``_order``) unless a write failed before: after a failure
        nothing more reaches the disk, not even in the moment before the member is Failed."""
        if self._failed is not None:
            return StorageError(f"an earlier durable write failed: {self._failed}")
        try:
            write(*args)
        except StorageError as exc:
            self._failed = exc
            return exc
        return None

    def _report(self, error: StorageError | None) -> None:
        if error is not None:
            self._on_failure(error)
            raise error
