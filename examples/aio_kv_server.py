"""A key-value service on asyncio, with the standard library only: ``SET k v`` / ``GET k`` lines over TCP.

Three ckite members run in this process, over the in-process transport (a real deployment
builds one member per process with ``with_members_bindings``, nothing else changes). Each
connection is served by a coroutine that awaits :class:`ckite.aio.AsyncCKite`: a ``SET`` awaits
the write's future (``apply``: the reply names the log index it took effect at), a ``GET``
a linearizable read, so the loop keeps serving other clients meanwhile. Another coroutine
logs every change of leader. ::

    python examples/aio_kv_server.py --port 7000
    printf 'SET colour blue\\nGET colour\\n' | nc localhost 7000
    OK 3
    blue

Replies: ``OK <index>`` to SET, the value (or ``(nil)``) to GET, ``ERR <reason>`` to anything else.
The line ``listening on HOST:PORT`` goes to stdout once the service accepts connections.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass
from typing import Any

from ckite import CKite, CKiteBuilder, Command, ReadCommand, StateMachine, WriteCommand
from ckite.aio import AsyncCKite
from ckite.errors import CKiteError
from ckite.rpc.local import LocalNetwork

logger = logging.getLogger("aio_kv_server")


@dataclass
class Set(WriteCommand, type_name="aio_kv.set"):
    key: str
    value: str


@dataclass
class Get(ReadCommand, type_name="aio_kv.get"):
    key: str


class Store(StateMachine):
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, command: Command) -> Any:
        if isinstance(command, Set):
            self.data[command.key] = command.value
            return command.value
        if isinstance(command, Get):
            return self.data.get(command.key)
        raise TypeError(f"Store does not handle {type(command).__name__}")

    def serialize(self) -> bytes:
        return "\n".join(f"{k}\t{v}" for k, v in self.data.items()).encode()

    def deserialize(self, snapshot: bytes) -> None:
        pairs = (line.partition("\t") for line in snapshot.decode().splitlines())
        self.data = {key: value for key, _, value in pairs}


def start_cluster(size: int) -> list[CKite]:
    network = LocalNetwork()
    bindings = [f"localhost:{9500 + i}" for i in range(size)]
    members = [CKiteBuilder().with_local_binding(binding)
               .with_members_bindings([b for b in bindings if b != binding])
               .with_transport(network.transport(binding)).with_in_memory_storage()
               .with_state_machine(Store()).without_admin()
               .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
               .build() for binding in bindings]
    for member in members:
        member.start()
    return members


async def answer(cluster: AsyncCKite, line: str) -> str:
    words = line.split(" ", 2)
    try:
        if words[0].upper() == "SET" and len(words) == 3:
            written = await cluster.apply(Set(words[1], words[2]))
            return f"OK {written.index}"
        if words[0].upper() == "GET" and len(words) == 2:
            value = await cluster.read(Get(words[1]))
            return "(nil)" if value is None else str(value)
    except CKiteError as error:
        return f"ERR {type(error).__name__}: {error}"
    return "ERR expected SET <key> <value> or GET <key>"


async def serve_client(cluster: AsyncCKite, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := (await reader.readline()).decode().strip():
            writer.write((await answer(cluster, line) + "\n").encode())
            await writer.drain()
    finally:
        writer.close()


async def log_leaders(cluster: AsyncCKite) -> None:
    async with contextlib.aclosing(cluster.leader_changes()) as changes:
        async for leader in changes:
            logger.info("leader: %s", leader)


async def main(host: str, port: int, size: int) -> None:
    members = start_cluster(size)
    try:
        async with AsyncCKite(members[0]) as cluster:   # any member: a follower forwards to the leader
            await cluster.wait_for_leader(timeout=10)
            watcher = asyncio.create_task(log_leaders(cluster))
            server = await asyncio.start_server(lambda r, w: serve_client(cluster, r, w), host, port)
            bound = server.sockets[0].getsockname()
            print(f"listening on {bound[0]}:{bound[1]}", flush=True)
            try:
                async with server:
                    await server.serve_forever()
            finally:
                watcher.cancel()
    finally:
        for member in members:
            member.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000, help="0: any free port")
    parser.add_argument("--members", type=int, default=3)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logger.setLevel(logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(arguments.host, arguments.port, arguments.members))
