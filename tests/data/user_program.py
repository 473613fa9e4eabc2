"""A small application of ckite as a user writes one, outside this repository.

tests/test_wheel_install.py copies it next to a virtualenv that has only the built wheel
installed, type-checks it there with ``mypy --strict`` (which reads ckite's own annotations,
shipped with ``py.typed``), and runs it: a one-member cluster that writes and reads a counter.
Usage: ``python user_program.py PORT``.
"""
from __future__ import annotations

import sys
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ckite
from ckite import CKite, CKiteBuilder, Command, ReadCommand, StateMachine, WriteCommand
from ckite.errors import CKiteError


@dataclass
class Add(WriteCommand, type_name="user_program.add"):
    """Add ``amount`` to the counter; the result is the new total."""

    amount: int


@dataclass
class Total(ReadCommand, type_name="user_program.total"):
    """The counter's value."""


class Counter(StateMachine):
    def __init__(self) -> None:
        self.total = 0

    def apply(self, command: Command) -> Any:
        if isinstance(command, Add):
            self.total += command.amount
            return self.total
        if isinstance(command, Total):
            return self.total
        raise TypeError(f"Counter does not handle {type(command).__name__}")

    def serialize(self) -> bytes:
        return str(self.total).encode()

    def deserialize(self, snapshot: bytes) -> None:
        self.total = int(snapshot)


def build(port: int) -> CKite:
    """A cluster of one: it elects itself at once, with no disk and no console."""
    return (CKiteBuilder()
            .with_local_binding(f"localhost:{port}")
            .with_in_memory_storage()
            .with_state_machine(Counter())
            .without_admin()
            .with_min_election_timeout(150).with_max_election_timeout(300).with_heartbeats_interval(50)
            .build())


def main(argv: list[str]) -> int:
    member = build(int(argv[1]))
    member.start()
    try:
        first: int = member.write(Add(2), timeout=10)
        pending: Future[Any] = member.write_async(Add(3), timeout=10)
        second: int = pending.result(timeout=10)
        total: int = member.read(Total(), timeout=10)
        leads = member.is_leader(timeout=10)
    except CKiteError as error:
        print(f"failed: {error!r}", file=sys.stderr)
        return 1
    finally:
        member.stop()
    print(f"ckite {ckite.__version__}: wrote {first} then {second}, read {total}, leader {leads}")
    return 0 if (first, second, total, leads) == (2, 5, 5, True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
