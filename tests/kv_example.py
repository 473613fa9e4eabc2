"""A minimal key-value state machine for the library's own tests (the kvstore package is the real one)."""
from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ckite import ReadCommand, StateMachine, WriteCommand


@dataclass
class Put(WriteCommand, type_name="tests.put"):
    key: str
    value: str


@dataclass
class Get(ReadCommand, type_name="tests.get"):
    key: str


@dataclass
class Fail(WriteCommand, type_name="tests.fail"):
    """A write whose apply raises, to show that one bad command does not stop the applier."""

    reason: str


class KVStore(StateMachine):
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, command):
        if isinstance(command, Put):
            self.data[command.key] = command.value
            return command.value
        if isinstance(command, Get):
            return self.data.get(command.key)
        if isinstance(command, Fail):
            raise ValueError(command.reason)
        raise TypeError(f"unknown command {command!r}")

    def serialize(self) -> bytes:
        return msgpack.packb(self.data)

    def deserialize(self, snapshot: bytes) -> None:
        self.data = msgpack.unpackb(snapshot)
