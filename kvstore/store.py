"""The key-value state machine and its commands.

Each command class carries an explicit, stable ``type_name``: the name is written into every
log entry, so renaming or moving a class must not make old logs unreadable. Values are str or
bytes (msgpack keeps the two apart), keys are str.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Union

import msgpack

from ckite import Command, ReadCommand, StateMachine, WriteCommand

logger = logging.getLogger(__name__)

Value = Union[str, bytes]


@dataclass
class Put(WriteCommand, type_name="kvstore.put"):
    """Set ``key`` to ``value``; the result is the value."""

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


class KVStore(StateMachine):
    """A replicated map from str to str/bytes; ckite applies one command at a time."""

    def __init__(self) -> None:
        self.data: dict[str, Value] = {}

    def apply(self, command: Command) -> Any:
        if isinstance(command, Put):
            self.data[command.key] = _checked(command.value)
            return command.value
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
        raise TypeError(f"KVStore does not handle {type(command).__name__}")

    def serialize(self) -> bytes:
        return msgpack.packb(self.data, use_bin_type=True)

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """A shallow copy of the map (values are immutable) is taken while applying is paused;
        encoding it happens on the compactor thread, so writes keep flowing meanwhile."""
        copy = dict(self.data)
        return lambda: msgpack.packb(copy, use_bin_type=True)

    def deserialize(self, snapshot: bytes) -> None:
        self.data = msgpack.unpackb(snapshot, raw=False)


def _checked(value: Any) -> Value:
    """Refuse a non-str/bytes value in apply, so a bad command fails alone (CommandError)."""
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"values are str or bytes, not {type(value).__name__}")
    return value
