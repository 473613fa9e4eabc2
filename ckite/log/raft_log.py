"""The replicated log as the consensus core sees it: entries in memory, durability delegated.

Every mutation goes to the :class:`~ckite.log.storage.LogStorage` first and changes the
in-memory view only once the storage returned, so the view never holds an entry that a
crash could lose — with one exception: a leader's own new entries (thesis §10.2.1). They
join the view at once, so they can be replicated while the leader writes them to its disk;
``durable_index`` says how far the leader's log is on disk, and only that much counts as
the leader's own acknowledgement. Reads (term lookups, slices to send) never touch the disk.
"""
from __future__ import annotations

import time
from typing import Sequence

from ckite.log.entry import LogEntry
from ckite.log.snapshot import Snapshot
from ckite.log.guarded_storage import GuardedStorage
from ckite.metrics import LatencyHistogram


class RaftLog:
    """Entries ``first_index .. last_index`` after a *base*: index 0 (term 0) for a log that was
    never compacted, else the last entry deleted by compaction or the snapshot's last index.
    Everything up to the base is committed and covered by the snapshot."""

    def __init__(self, storage: GuardedStorage, entries: Sequence[LogEntry] = (),
                 append_latency: LatencyHistogram | None = None, snapshot: Snapshot | None = None) -> None:
        self._storage = storage
        self._append_latency = append_latency or LatencyHistogram()
        self._entries: list[LogEntry] = list(entries)
        self._base_index = snapshot.last_index if snapshot else 0   # index just before _entries[0]
        self._base_term: int | None = snapshot.last_term if snapshot else 0   # None: not known
        if self._entries and self._entries[0].index - 1 != self._base_index:
            # Compaction kept some entries before the snapshot's index; the term of the one
            # before them was not stored, so a peer that needs it gets the snapshot instead.
            self._base_index, self._base_term = self._entries[0].index - 1, None
        self._durable_index = self.last_index   # all of it was read from the disk

    @property
    def last_index(self) -> int:
        return self._base_index + len(self._entries)

    @property
    def durable_index(self) -> int:
        """The last index on disk. Equal to ``last_index`` except on a leader, while its newest
        entries are being written."""
        return self._durable_index

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._base_term

    @property
    def first_index(self) -> int:
        return self._base_index + 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def base_index(self) -> int:
        """Entries up to here are gone from the log (committed, covered by the snapshot)."""
        return self._base_index

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when the log does not hold it."""
        if index == self._base_index:
            return self._base_term
        position = index - self._base_index - 1
        if 0 <= position < len(self._entries):
            return self._entries[position].term
        return None

    def entry(self, index: int) -> LogEntry:
        return self._entries[index - self._base_index - 1]

    def slice(self, start: int, stop: int) -> list[LogEntry]:
        """Entries with ``start <= index < stop``."""
        offset = self._base_index + 1
        return self._entries[max(start - offset, 0):max(stop - offset, 0)]

    def batch_from(self, start: int, max_count: int, max_bytes: int) -> list[LogEntry]:
        """Up to ``max_count`` entries from ``start`` whose data totals at most ``max_bytes``
        (always at least one entry, so an entry larger than the limit still moves)."""
        candidates = self.slice(start, start + max_count)
        total = 0
        for position, entry in enumerate(candidates):
            total += len(entry.data)
            if total > max_bytes and position > 0:
                return candidates[:position]
        return candidates

    def first_index_of_term(self, term: int, at_or_before: int) -> int:
        """The first index of the run of ``term`` that contains ``at_or_before``."""
        index = at_or_before
        while index > self.first_index and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, at_or_before: int) -> int | None:
        """The highest index <= ``at_or_before`` whose entry has ``term``, or None."""
        index = min(at_or_before, self.last_index)
        while index >= self.first_index:
            entry_term = self.term_at(index)
            if entry_term == term:
                return index
            if entry_term is not None and entry_term < term:
                return None
            index -= 1
        return None

    def append(self, entries: Sequence[LogEntry], truncate_from: int | None = None) -> None:
        """Durably drop entries from ``truncate_from`` on (if given), then add ``entries``."""
        started = time.perf_counter()
        self._storage.append(entries, truncate_from)
        self._append_latency.observe(time.perf_counter() - started)
        if truncate_from is not None and truncate_from <= self.last_index:
            del self._entries[max(truncate_from - self._base_index - 1, 0):]
        self._entries.extend(entries)
        self._durable_index = self.last_index

    def append_unpersisted(self, entries: Sequence[LogEntry]) -> list[LogEntry]:
        """A leader's new entries: into the view at once; returns what :meth:`persist` must
        write (every entry not yet on disk). The caller, holding the consensus lock, then calls
        :meth:`reserve_storage`, so that any write decided later (a vote, a truncation after
        stepping down) waits for these entries on disk.
        """
        self._entries.extend(entries)
        return self.slice(self._durable_index + 1, self.last_index + 1)

    def reserve_storage(self) -> None:
        """Hold the next place in the order of durable writes for :meth:`persist` (see
        :meth:`append_unpersisted`); the last step before the consensus lock is released."""
        self._storage.reserve()

    def persist(self, entries: Sequence[LogEntry]) -> None:
        """Write what :meth:`append_unpersisted` returned; without the consensus lock."""
        started = time.perf_counter()
        self._storage.append_reserved(entries)
        self._append_latency.observe(time.perf_counter() - started)

    def mark_persisted(self, entries: Sequence[LogEntry]) -> None:
        """:meth:`persist` returned: those entries count as on disk, if the view still holds them."""
        last = entries[-1]
        if self.term_at(last.index) == last.term:
            self._durable_index = max(self._durable_index, last.index)

    def compact(self, snapshot: Snapshot, discard_through: int) -> None:
        """Durably store ``snapshot`` and delete the entries up to ``discard_through``
        (at most the snapshot's last index: entries after it may be needed yet)."""
        assert self._base_index <= discard_through <= snapshot.last_index <= self.last_index
        base_term = snapshot.last_term if discard_through == snapshot.last_index else self.term_at(discard_through)
        self._storage.save_snapshot(snapshot, discard_through)
        del self._entries[:discard_through - self._base_index]
        self._base_index, self._base_term = discard_through, base_term
        self._durable_index = max(self._durable_index, discard_through)

    def install(self, snapshot: Snapshot) -> int | None:
        """Durably adopt a leader's snapshot (§7): keep the entries after it only if the log
        holds the snapshot's last entry (same index and term), else discard the whole log.
        Returns the index from which entries were discarded beyond the snapshot, if any."""
        last = snapshot.last_index
        if self.term_at(last) == snapshot.last_term:
            self.compact(snapshot, last)
            return None
        discarded_from = last + 1 if self.last_index > last else None
        self._storage.save_snapshot(snapshot, max(last, self.last_index))
        self._entries.clear()
        self._base_index, self._base_term = last, snapshot.last_term
        self._durable_index = last
        return discarded_from

    def merge_from_leader(self, prev_index: int, entries: Sequence[LogEntry],
                          commit_index: int = 0) -> tuple[int | None, Sequence[LogEntry]]:
        """Add a leader's entries that follow ``prev_index`` (already checked to match).

        Only a real conflict (same index, different term) truncates: a delayed or duplicated
        AppendEntries carrying entries we already hold must not cut off newer ones (§5.3).
        Returns the index truncation started at (or None) and the entries actually added.
        Raises ValueError, before writing anything, if the entries would replace a committed
        one (``<= commit_index``): only a leader that breaks Raft sends such a thing.
        """
        skip = 0
        for entry in entries:
            existing = self.term_at(entry.index)
            if existing is None or entry.index <= self._base_index:
                if entry.index <= self._base_index:
                    skip += 1
                    continue
                break
            if existing != entry.term:
                break
            skip += 1
        new_entries = entries[skip:]
        if not new_entries:
            return None, new_entries
        first_new = new_entries[0].index
        truncate_from = first_new if first_new <= self.last_index else None
        if truncate_from is not None and truncate_from <= commit_index:
            raise ValueError(f"entries from the leader conflict with committed entry {truncate_from} "
                             f"(commit index {commit_index})")
        self.append(new_entries, truncate_from)
        return truncate_from, new_entries
