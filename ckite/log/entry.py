"""The unit of the replicated log."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EntryKind(IntEnum):
    """What an entry's ``data`` holds; the kind decides who consumes it when it is applied."""

    COMMAND = 0        #: an encoded user WriteCommand, applied to the state machine
    NOOP = 1           #: appended by each new leader so that it can commit entries of its term (§5.4.2)
    CONFIGURATION = 2  #: an encoded cluster configuration; takes effect as soon as it is appended (§6)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry: position, the term of the leader that created it, and opaque bytes."""

    index: int
    term: int
    data: bytes
    kind: EntryKind = EntryKind.COMMAND


class EntryBatch(list):
    """Entries a leader sends together. The same batch goes to every follower, so a transport
    may keep its encoded form in :attr:`wire` and encode the entries once, not once per follower."""

    wire: object = None
