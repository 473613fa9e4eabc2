"""A :class:`~ckite.log.storage.LogStorage` kept in memory, for tests and the simulation.

"Durable" here means "outlives the :class:`~ckite.consensus.consensus.Consensus` that used
it": the simulation crashes a member by dropping its core and builds a new one from the very
same ``MemoryStorage`` object, exactly as a restarted process would reopen its database.

This module also holds :func:`check_append`, the append contract every storage enforces.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from ckite.log.entry import LogEntry
from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_store import MemorySnapshotStore
from ckite.log.storage import LogStorage, StoredState


def check_append(last_index: int, entries: Sequence[LogEntry], truncate_from: int | None) -> int:
    """The last index that ``append(entries, truncate_from)`` keeps of a log ending at ``last_index``
    (``entries`` then follow it).

    Raises ValueError, before anything is written, when the batch would leave a gap or an
    overlap: ``entries`` must be consecutive and start right after what the truncation keeps.
    That is a bug in the caller (the consensus core), never a storage failure, so the check
    is cheap and exact rather than forgiving. Shared by every storage, so they agree on it.
    """
    kept = last_index
    if truncate_from is not None:
        if truncate_from < 1:
            raise ValueError(f"truncate_from must be >= 1 (index 0 is the empty log), got {truncate_from}")
        kept = min(last_index, truncate_from - 1)
    if not entries:
        return kept
    first = entries[0].index
    if first != kept + 1:
        raise ValueError(f"entries must continue the log: first index {first}, expected {kept + 1}")
    for offset, entry in enumerate(entries):
        if entry.index != first + offset:
            raise ValueError(f"entries must be consecutive: index {entry.index} at position {offset}, "
                             f"expected {first + offset}")
    return kept


class MemoryStorage(LogStorage):
    """Term, vote and entries in plain Python objects.

    Unlike a file-backed storage, :meth:`close` only marks the storage closed (see
    :attr:`closed`) and every method keeps working afterwards: a "restarted" member (the
    simulation, the in-process test clusters) reopens its storage by simply using the same
    object again after the previous member closed it on stop.
    """

    def __init__(self) -> None:
        # Callers hold the consensus lock; this lock only keeps a test thread that reads
        # (load) while a member runs from seeing a half-applied append.
        self._lock = threading.Lock()
        self._term = 0
        self._voted_for: str | None = None
        self._entries: list[LogEntry] = []
        self._snapshots: list[Snapshot] = []   # newest first, at most two
        self.snapshots = MemorySnapshotStore()
        self.closed = False   #: set by close(); informative only, nothing refuses to run

    def load(self, data_bytes: int | None = None) -> StoredState:
        """A copy of what is stored, every entry's data with it (it is in memory anyway):
        callers may mutate the returned list freely."""
        with self._lock:
            return StoredState(self._term, self._voted_for, list(self._entries), list(self._snapshots))

    def read_entries(self, first: int, last: int) -> list[LogEntry]:
        with self._lock:
            return [entry for entry in self._entries if first <= entry.index <= last]

    def save_term_and_vote(self, term: int, voted_for: str | None) -> None:
        with self._lock:
            self._term = term
            self._voted_for = voted_for

    def append(self, entries: Sequence[LogEntry], truncate_from: int | None = None) -> None:
        with self._lock:
            last_index = self._last_index()
            kept = check_append(last_index, entries, truncate_from)
            if kept < last_index and self._entries:
                del self._entries[max(kept - self._entries[0].index + 1, 0):]
            self._entries.extend(entries)

    def save_snapshot(self, snapshot: Snapshot, discard_through: int) -> None:
        with self._lock:
            self._snapshots = [snapshot, *(s for s in self._snapshots if s.last_index < snapshot.last_index)][:2]
            self._entries = [entry for entry in self._entries if entry.index > discard_through]

    def _last_index(self) -> int:
        return max(self._entries[-1].index if self._entries else 0,
                   self._snapshots[0].last_index if self._snapshots else 0)

    def close(self) -> None:
        """Mark the storage closed; the data stays and the object remains usable (a reopen)."""
        self.closed = True
