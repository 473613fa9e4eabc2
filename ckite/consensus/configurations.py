"""Which cluster configuration is in effect at each point of the log (Raft §6).

A configuration takes effect as soon as its entry is in the log, committed or not, and is
rolled back when that entry is truncated. So a member keeps the configuration entries of its
log in order, above a *base*: the configuration of its latest snapshot, or the one it was
built with when it has none.
"""
from __future__ import annotations

from collections.abc import Iterable

from ckite.consensus.membership import Configuration
from ckite.log.entry import EntryKind, LogEntry


class ConfigurationHistory:
    """The configurations in a member's log, oldest first, after the base one."""

    def __init__(self, base: Configuration, base_index: int, entries: Iterable[LogEntry] = ()) -> None:
        self.base = base
        self.base_index = base_index   #: the index the base configuration holds at (the snapshot's, or 0)
        self._entries: list[tuple[int, Configuration]] = []
        self.add(entries)

    @property
    def current(self) -> Configuration:
        """The latest configuration in the log: the one in effect."""
        return self._entries[-1][1] if self._entries else self.base

    @property
    def current_index(self) -> int:
        """Index of the entry holding the current configuration (the base's when the log holds none)."""
        return self._entries[-1][0] if self._entries else self.base_index

    @property
    def only_base(self) -> bool:
        """No configuration entry in the log (a new cluster's first leader then writes one)."""
        return not self._entries

    def add(self, entries: Iterable[LogEntry]) -> bool:
        """Track the configuration entries among ``entries`` (just appended); True if any."""
        added = [(entry.index, Configuration.decode(entry.data)) for entry in entries
                 if entry.kind == EntryKind.CONFIGURATION and entry.index > self.base_index]
        self._entries.extend(added)
        return bool(added)

    def truncate(self, from_index: int) -> bool:
        """Forget the configurations at ``from_index`` and later; True if one was forgotten."""
        kept = [(index, configuration) for index, configuration in self._entries if index < from_index]
        changed = len(kept) != len(self._entries)
        self._entries = kept
        return changed

    def rebase(self, configuration: Configuration, index: int) -> None:
        """A snapshot at ``index`` holds ``configuration``: it becomes the base, and the entries
        it covers are forgotten."""
        self.base, self.base_index = configuration, index
        self._entries = [(i, c) for i, c in self._entries if i > index]

    def at(self, index: int) -> Configuration:
        """The configuration in effect once the log up to ``index`` is applied."""
        for config_index, configuration in reversed(self._entries):
            if config_index <= index:
                return configuration
        return self.base
