"""The replicated log as the consensus core sees it: entries in memory, durability delegated.

Every change is made to the in-memory view at once and handed, as a
:class:`~ckite.log.storage.DurableWrite`, to ``persist`` (the log writer's queue): the view
runs ahead of the disk by the writes not yet flushed. Whatever depends on a write (a reply
to the leader, a vote) waits for the log writer to flush it, so nothing is acknowledged that
a crash could lose. ``durable_index`` says how far the view is on disk; a leader counts only
that much as its own acknowledgement, which lets it replicate its new entries while it
writes them (thesis §10.2.1). Reads (term lookups, slices to send) never touch the disk.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ckite.log.entry import EntryBatch, EntryKind, LogEntry, Unloaded, data_size, is_loaded
from ckite.log.snapshot import Snapshot
from ckite.log.storage import DurableWrite


class RaftLog:
    """Entries ``first_index .. last_index`` after a *base*: index 0 (term 0) for a log that was
    never compacted, else the last entry deleted by compaction or the snapshot's last index.
    Everything up to the base is committed and covered by the snapshot."""

    def __init__(self, persist: Callable[[DurableWrite], int], entries: Sequence[LogEntry] = (),
                 snapshot: Snapshot | None = None, read: Callable[[int, int], list[LogEntry]] | None = None,
                 cache_bytes: int | None = None) -> None:
        self._persist = persist
        self._read = read
        #: The most entry data kept in memory (None: all of it); older applied entries' data is
        #: dropped past it and read back from the storage when needed (``load``).
        self._cache_bytes = cache_bytes
        self._entries: list[LogEntry] = list(entries)
        self._cached = sum(len(entry.data) for entry in self._entries)   # bytes of data held in memory
        self._oldest_cached = next((i for i, e in enumerate(self._entries) if is_loaded(e)), len(self._entries))
        self._base_index = snapshot.last_index if snapshot else 0   # index just before _entries[0]
        self._base_term: int | None = snapshot.last_term if snapshot else 0   # None: not known
        if self._entries and self._entries[0].index - 1 != self._base_index:
            # Compaction kept some entries before the snapshot's index; the term of the one
            # before them was not stored, so a peer that needs it gets the snapshot instead.
            self._base_index, self._base_term = self._entries[0].index - 1, None
        self._durable_index = self.last_index   # all of it was read from the disk
        #: The latest batch_from answer (its range and the batch), while no entry in it changed.
        self._last_batch: tuple[tuple[int, int, int], EntryBatch] | None = None

    @property
    def last_index(self) -> int:
        return self._base_index + len(self._entries)

    @property
    def durable_index(self) -> int:
        """The last index of the view that is on disk: ``last_index`` once the log writer has
        flushed every write of the view (a leader's newest entries, a follower's between its
        decision and its reply)."""
        return self._durable_index

    @property
    def last_term(self) -> int:
        if self._entries:
            return self._entries[-1].term
        # The base term is unknown only while entries kept before a snapshot's index follow it.
        assert self._base_term is not None
        return self._base_term

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

    def batch_from(self, start: int, max_count: int, max_bytes: int) -> EntryBatch:
        """Up to ``max_count`` entries from ``start`` whose data totals at most ``max_bytes``
        (always at least one entry, so an entry larger than the limit still moves). Asked again
        for the same range (the next follower), it returns the same batch object."""
        stop = min(start + max_count, self.last_index + 1)
        key = (start, stop, max_bytes)
        if self._last_batch is not None and self._last_batch[0] == key:
            return self._last_batch[1]
        batch = EntryBatch(self.slice_within(start, stop, max_bytes))
        self._last_batch = (key, batch)
        return batch

    def slice_within(self, start: int, stop: int, max_bytes: int) -> list[LogEntry]:
        """Entries with ``start <= index < stop`` whose data totals at most ``max_bytes``, from the
        first on (always at least one, so an entry larger than the limit still moves)."""
        candidates = self.slice(start, stop)
        total = 0
        for position, entry in enumerate(candidates):
            total += data_size(entry)
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
        """Drop entries from ``truncate_from`` on (if given), then add ``entries``: in the view now,
        on disk once the log writer flushed the write this queues."""
        if truncate_from is not None and truncate_from <= self.last_index:
            self._last_batch = None
            kept = max(truncate_from - 1, self._base_index)
            self._drop(kept - self._base_index, len(self._entries))
            self._durable_index = min(self._durable_index, kept)
        self._entries.extend(entries)
        self._cached += sum(len(entry.data) for entry in entries)
        self._persist(DurableWrite(truncate_from=truncate_from, entries=entries))

    def _drop(self, start: int, stop: int) -> None:
        """Remove the entries at positions ``start:stop``, keeping the cache accounts right."""
        self._cached -= sum(len(entry.data) for entry in self._entries[start:stop])
        del self._entries[start:stop]
        if self._oldest_cached > start:
            self._oldest_cached = max(start, self._oldest_cached - (stop - start))
        self._oldest_cached = min(self._oldest_cached, len(self._entries))

    def evict(self, through: int) -> None:
        """Drop the data of entries up to ``through`` (applied and durable: nobody needs it in
        memory any more), oldest first, until the cache is within its bound."""
        if self._cache_bytes is None or self._cached <= self._cache_bytes:
            return
        entries, position = self._entries, self._oldest_cached
        limit = min(through - self._base_index, len(entries))
        while self._cached > self._cache_bytes and position < limit:
            entry = entries[position]
            if is_loaded(entry) and entry.kind != EntryKind.CONFIGURATION:
                entries[position] = LogEntry(entry.index, entry.term, Unloaded(len(entry.data)), entry.kind)
                self._cached -= len(entry.data)
            position += 1
        self._oldest_cached = position
        self._last_batch = None

    def load(self, entries: Sequence[LogEntry]) -> list[LogEntry]:
        """``entries`` with the data the view dropped read back from the storage: called without
        the consensus lock (it waits on the disk), by the sender or the applier."""
        missing = [entry for entry in entries if not is_loaded(entry)]
        if not missing:
            return list(entries)
        assert self._read is not None, "entries were unloaded without a storage to read them from"
        read = {entry.index: entry for entry in self._read(missing[0].index, missing[-1].index)}
        loaded = [entry if is_loaded(entry) else read[entry.index] for entry in entries]
        return EntryBatch(loaded) if isinstance(entries, EntryBatch) else loaded

    def mark_durable(self, entries: Sequence[LogEntry]) -> None:
        """A write holding ``entries`` is on disk: they count as durable, if the view still holds
        them (a later truncation may have replaced them; it lowered ``durable_index`` itself)."""
        last = entries[-1]
        if self.term_at(last.index) == last.term:
            self._durable_index = max(self._durable_index, last.index)

    def compact(self, snapshot: Snapshot, discard_through: int) -> None:
        """Store ``snapshot`` and delete the entries up to ``discard_through`` (at most the
        snapshot's last index: entries after it may be needed yet)."""
        assert self._base_index <= discard_through <= snapshot.last_index <= self.last_index
        base_term = snapshot.last_term if discard_through == snapshot.last_index else self.term_at(discard_through)
        self._persist(DurableWrite(snapshot=snapshot, discard_through=discard_through))
        self._last_batch = None
        self._drop(0, discard_through - self._base_index)
        self._base_index, self._base_term = discard_through, base_term
        self._durable_index = max(self._durable_index, discard_through)

    def install(self, snapshot: Snapshot) -> int | None:
        """Adopt a leader's snapshot (§7): keep the entries after it only if the log holds the
        snapshot's last entry (same index and term), else discard the whole log.
        Returns the index from which entries were discarded beyond the snapshot, if any."""
        last = snapshot.last_index
        if self.term_at(last) == snapshot.last_term:
            self.compact(snapshot, last)
            return None
        discarded_from = last + 1 if self.last_index > last else None
        self._persist(DurableWrite(snapshot=snapshot, discard_through=max(last, self.last_index)))
        self._drop(0, len(self._entries))
        self._last_batch = None
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
