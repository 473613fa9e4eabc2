"""The unit of the replicated log."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EntryKind(IntEnum):
    """What an entry's ``data`` holds; the kind decides who consumes it when it is applied."""

    COMMAND = 0        #: an encoded user WriteCommand, applied to the state machine
    NOOP = 1           #: appended by each new leader so that it can commit entries of its term (§5.4.2)
    CONFIGURATION = 2  #: an encoded cluster configuration; takes effect as soon as it is appended (§6)
    CLIENT_REQUEST = 3  #: a write through a client session (ckite.sessions): the leader's time stamp, then the request


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry: position, the term of the leader that created it, and opaque bytes."""

    index: int
    term: int
    data: bytes
    kind: EntryKind = EntryKind.COMMAND


class EntryBatch(list[LogEntry]):
    """Entries a leader sends together. The same batch goes to every follower, so a transport
    may keep its encoded form in :attr:`wire` and encode the entries once, not once per follower."""

    wire: object = None


class Unloaded(bytes):
    """The data of an entry that the log view does not keep in memory (it is on disk): empty
    bytes that remember their length. ``RaftLog.load`` puts the real data back, without the
    consensus lock, before the entry is sent or applied."""

    size: int

    def __new__(cls, size: int) -> Unloaded:
        unloaded = super().__new__(cls, b"")
        unloaded.size = size
        return unloaded


def data_size(entry: LogEntry) -> int:
    """The length of the entry's data, held in memory or not."""
    data = entry.data
    return data.size if type(data) is Unloaded else len(data)


def is_loaded(entry: LogEntry) -> bool:
    return type(entry.data) is not Unloaded
