"""The key-value state machine and its commands.

Each command class carries an explicit, stable ``type_name``: the name is written into every
log entry, so renaming or moving a class must not make old logs unreadable. Values are str or
bytes (msgpack keeps the two apart), keys are str.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from ckite import Command, ReadCommand, StateMachine, WriteCommand

logger = logging.getLogger(__name__)

#: A value Increment accepts: a decimal integer, as text.
_INTEGER = re.compile(r"-?[0-9]+")

Value = str | bytes


@dataclass
class Put(WriteCommand, type_name="kvstore.put"):
    """Set ``key`` to ``value``; the result is None. The caller holds the value already, and a
    result is kept for retries (in the client table, in every snapshot, for an Idempotency-Key
    up to a day): returning the value kept a second reference to each value written that way."""

    key: str
    value: Value


@dataclass
class Get(ReadCommand, type_name="kvstore.get"):
    """The value of ``key``, or None when absent."""

    key: str


@dataclass
class Delete(WriteCommand, type_name="kvstore.delete"):
    """Remove ``key``; the result is the value it had, or None when it was absent."""

    key: str


@dataclass
class CompareAndSet(WriteCommand, type_name="kvstore.cas"):
    """Set ``key`` to ``new`` only if its value is ``expected`` (None: only if absent).

    The result is ``{"swapped": bool, "value": the value after the command}``, so a loser
    learns the current value in the same round trip.
    """

    key: str
    expected: Value | None
    new: Value


@dataclass
class Increment(WriteCommand, type_name="kvstore.incr"):
    """Add ``by`` to the integer value of ``key`` (a missing key counts as 0). The result is
    ``{"value": the new value}``, or ``{"error": "not-an-integer", "value": the current value}``
    when the value is not an integer, which is then left as it was. Not idempotent: applying
    it twice adds twice, which is what client sessions and idempotency keys are there to prevent."""

    key: str
    by: int


class KVStore(StateMachine):
    """A replicated map from str to str/bytes; ckite applies one command at a time."""

    def __init__(self) -> None:
        self.data: dict[str, Value] = {}

    def apply(self, command: Command) -> Any:
        if isinstance(command, Put):
            self.data[command.key] = _checked(command.value)
            return None
        if isinstance(command, Get):
            return self.data.get(command.key)
        if isinstance(command, Delete):
            return self.data.pop(command.key, None)
        if isinstance(command, CompareAndSet):
            current = self.data.get(command.key)
            if current != command.expected:
                return {"swapped": False, "value": current}
            self.data[command.key] = _checked(command.new)
            return {"swapped": True, "value": command.new}
        if isinstance(command, Increment):
            return self._increment(command)
        raise TypeError(f"KVStore does not handle {type(command).__name__}")

    def _increment(self, command: Increment) -> dict[str, Any]:
        current = self.data.get(command.key, "0")
        text = current.decode("ascii", "replace") if isinstance(current, bytes) else current
        if not (type(command.by) is int and _INTEGER.fullmatch(text)):
            return {"error": "not-an-integer", "value": current}
        value = str(int(text) + command.by)
        self.data[command.key] = value
        return {"value": value}

    def begin_snapshot(self) -> Callable[[BinaryIO], None]:
        """A shallow copy of the map, taken while applying is paused (values are immutable str or
        bytes: the copy holds references, not a second copy of the state); it is written on the
        snapshot thread, pair by pair, while writes keep flowing."""
        copy = dict(self.data)
        return lambda writer: _write_pairs(copy, writer)

    def restore(self, reader: BinaryIO) -> None:
        """Read the pairs one by one (never the whole file at once); a snapshot an older kvstore
        wrote (one msgpack map) is read too."""
        unpacker = msgpack.Unpacker(reader, raw=False, max_buffer_size=_MAX_ITEM_BYTES)
        header = next(unpacker, None)
        if isinstance(header, dict):   # the older form: the whole map in one object
            self.data = header
            return
        if header != _FORMAT:
            raise ValueError(f"not a kvstore snapshot (starts with {header!r})")
        data: dict[str, Value] = {}
        for key, value in unpacker:
            data[key] = value
        self.data = data


#: The first object of a snapshot, naming its form: then one [key, value] array per pair.
_FORMAT = "kvstore-snapshot-1"
#: The largest object read from a snapshot at once (a value may be up to the HTTP limit).
_MAX_ITEM_BYTES = 64 * 1024 * 1024


def _write_pairs(data: dict[str, Value], writer: BinaryIO) -> None:
    packer = msgpack.Packer(use_bin_type=True)
    writer.write(packer.pack(_FORMAT))
    for key, value in data.items():
        writer.write(packer.pack((key, value)))


def _checked(value: Any) -> Value:
    """Refuse a non-str/bytes value in apply, so a bad command fails alone (CommandError)."""
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"values are str or bytes, not {type(value).__name__}")
    return value
