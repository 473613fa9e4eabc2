"""A small application of ckite as a user writes one, outside this repository.

tests/test_wheel_install.py copies it next to a virtualenv that has only the built wheel
installed, type-checks it there with ``mypy --strict`` (which reads ckite's own annotations,
shipped with ``py.typed``), and runs it: a one-member cluster that writes and reads a counter,
waits on a barrier, and does the same again from asyncio through ``ckite.aio``.
Usage: ``python user_program.py PORT``.
"""
from __future__ import annotations

import asyncio
import sys
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ckite
from ckite import CKite, CKiteBuilder, Command, MemberStatus, ReadCommand, StateMachine, WriteCommand, WriteResult
from ckite.aio import AsyncCKite
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


async def from_asyncio(member: CKite) -> tuple[str, WriteResult, int]:
    """The same member, awaited: a leader, an indexed write, and a read after a barrier."""
    async with AsyncCKite(member) as cluster:
        leader: str = await cluster.wait_for_leader(timeout=10)
        written: WriteResult = await cluster.apply(Add(10), timeout=10)
        await cluster.barrier(timeout=10)
        total: int = await cluster.read(Total(), timeout=10)
    return leader, written, total


def main(argv: list[str]) -> int:
    member = build(int(argv[1]))
    member.start()
    try:
        first: int = member.write(Add(2), timeout=10)
        pending: Future[Any] = member.write_async(Add(3), timeout=10)
        second: int = pending.result(timeout=10)
        total: int = member.read(Total(), timeout=10)
        leads = member.is_leader(timeout=10)
        reached: int = member.barrier(timeout=10)
        status: MemberStatus = member.status()
        leader, written, after = asyncio.run(from_asyncio(member))
    except CKiteError as error:
        print(f"failed: {error!r}", file=sys.stderr)
        return 1
    finally:
        member.stop()
    print(f"ckite {ckite.__version__}: wrote {first} then {second}, read {total}, leader {leads}; barrier at "
          f"{reached} (applied {status.applied_index}); asyncio: leader {leader}, {written.result} at index "
          f"{written.index}, read {after}")
    return 0 if ((first, second, total, leads) == (2, 5, 5, True) and reached <= status.applied_index
                 and leader == member.id and (written.result, after) == (15, 15) and written.index > reached) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
