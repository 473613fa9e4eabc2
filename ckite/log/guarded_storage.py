"""A storage wrapper that reports the first durable write that fails.

A member whose disk fails (full, read-only, I/O error) must stop acknowledging anything:
the caller of the failed write gets the StorageError, and the consensus core is told so it
can take the member out of service instead of going on with a log it cannot persist.
"""
from __future__ import annotations

from typing import Callable, Sequence

from ckite.errors import StorageError
from ckite.log.entry import LogEntry
from ckite.log.snapshot import Snapshot
from ckite.log.storage import LogStorage, StoredState


class GuardedStorage(LogStorage):
    def __init__(self, storage: LogStorage, on_failure: Callable[[StorageError], None]) -> None:
        self._storage = storage
        self._on_failure = on_failure

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

    def _guard(self, write: Callable[..., None], *args: object) -> None:
        try:
            write(*args)
        except StorageError as exc:
            self._on_failure(exc)
            raise
