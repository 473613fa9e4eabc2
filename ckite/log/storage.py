"""The durable store behind the log: what a member must find again after a crash.

Implementations: :class:`~ckite.log.memory_storage.MemoryStorage` (tests, simulation)
and :class:`~ckite.log.sqlite_storage.SQLiteStorage` (the default). The consensus core
keeps its own in-memory view of the log (:class:`~ckite.log.raft_log.RaftLog`) and
calls a storage only to make things durable, so reads never touch the disk.

Every method returns only once its effect is durable (fsynced): Raft's safety rests on
term, vote and acknowledged entries surviving a crash.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ckite.log.entry import LogEntry
from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_store import SnapshotStore


@dataclass(frozen=True, slots=True)
class DurableWrite:
    """One decision of the core that must reach the disk: at most one of each part, applied in
    the order hard state, truncation and entries, snapshot."""

    hard_state: tuple[int, str | None] | None = None   #: (term, voted for)
    truncate_from: int | None = None                    #: drop entries from this index on, then...
    entries: Sequence[LogEntry] = ()                    #: ...append these
    snapshot: Snapshot | None = None                    #: store this snapshot and...
    discard_through: int = 0                            #: ...delete the entries up to here

    @property
    def changes_hard_state(self) -> bool:
        """What a message must not leave before: the term and vote, or entries dropped."""
        return self.hard_state is not None or self.truncate_from is not None


@dataclass(slots=True)
class StoredState:
    """Everything :meth:`LogStorage.load` recovers: term, vote, the snapshots kept and the entries
    still in the log, oldest first (they begin no later than just after the older snapshot)."""

    term: int = 0
    voted_for: str | None = None
    entries: list[LogEntry] = field(default_factory=list)
    #: The snapshots kept, newest first: the newest whose state is whole is the member's.
    snapshots: list[Snapshot] = field(default_factory=list)


class LogStorage(ABC):
    """Durable term, vote and log entries of one member, and its snapshots' store."""

    #: Where the states of the snapshots live (files beside a database, or memory).
    snapshots: SnapshotStore

    @abstractmethod
    def load(self, data_bytes: int | None = None) -> StoredState:
        """Read back what was stored (an empty :class:`StoredState` for a new member). With
        ``data_bytes`` a storage may leave the data of older entries on disk
        (:class:`~ckite.log.entry.Unloaded`) past that many bytes, but never a configuration's."""

    @abstractmethod
    def read_entries(self, first: int, last: int) -> list[LogEntry]:
        """Entries ``first..last`` with their data (those the log view did not keep in memory)."""

    @abstractmethod
    def save_term_and_vote(self, term: int, voted_for: str | None) -> None:
        """Durably record the current term and the candidate voted for in it (None: no vote)."""

    @abstractmethod
    def append(self, entries: Sequence[LogEntry], truncate_from: int | None = None) -> None:
        """In one durable transaction: delete every entry with index >= ``truncate_from``
        (when given), then add ``entries`` (consecutive indexes, continuing the log)."""

    @abstractmethod
    def save_snapshot(self, snapshot: Snapshot, discard_through: int) -> None:
        """In one durable transaction: record ``snapshot`` (its state already durable in
        :attr:`snapshots`), keep the metadata of the newest two, and delete every entry with
        index <= ``discard_through``. A crash leaves the old snapshots and log or the new ones,
        never a mix. Afterwards the log ends at the later of its last remaining entry and the
        snapshot's last index."""

    def write(self, writes: Sequence[DurableWrite]) -> None:
        """Apply ``writes`` in order, durably (the log writer's batch). A crash leaves a prefix of
        them done. This default makes each part a transaction of its own; a storage that can do
        the whole batch in one transaction (one fsync) overrides it."""
        for write in writes:
            if write.hard_state is not None:
                self.save_term_and_vote(*write.hard_state)
            if write.entries or write.truncate_from is not None:
                self.append(write.entries, write.truncate_from)
            if write.snapshot is not None:
                self.save_snapshot(write.snapshot, write.discard_through)

    @abstractmethod
    def close(self) -> None:
        """Release files; further calls are errors."""
