"""ckite.aio: AsyncCKite awaits the threaded member without blocking the event loop, and the
asyncio example service (examples/aio_kv_server.py) serves SET/GET over TCP."""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckite import WriteResult
from ckite.aio import AsyncCKite
from ckite.errors import LeaderTimeoutError, NotLeaderError
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, Put

EXAMPLE = Path(__file__).parent.parent / "examples" / "aio_kv_server.py"


async def ticking(ticks: list[float], interval: float = 0.01) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(interval)


def longest_gap(ticks: list[float]) -> float:
    return max((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=0.0)


def test_a_write_that_waits_for_an_election_does_not_block_the_loop():
    """The member starts alone (no quorum); a write awaits while a ticker keeps ticking, and the
    write completes once the other members start and elect a leader."""
    cluster = TestCluster("local", 3)
    first = cluster.start(cluster.bindings[0])

    async def scenario() -> tuple[object, object, list[float]]:
        ticks: list[float] = []
        ticker = asyncio.create_task(ticking(ticks))
        async with AsyncCKite(first) as member:
            write = asyncio.create_task(member.write(Put("aio", "1"), timeout=10))
            leader = asyncio.create_task(member.wait_for_leader(timeout=10))
            await asyncio.sleep(0.5)   # no quorum yet: both wait, the ticker ticks
            assert not write.done() and not leader.done()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: [cluster.start(b) for b in cluster.bindings[1:]])
            result, elected = await write, await leader
            await member.barrier(timeout=5)
            read = await member.read(Get("aio"), timeout=5)
        ticker.cancel()
        assert read == "1"
        return result, elected, ticks
    try:
        result, elected, ticks = asyncio.run(scenario())
    finally:
        cluster.stop_all()
    assert result == "1" and elected in cluster.bindings
    assert len(ticks) > 30 and longest_gap(ticks) < 0.25   # the loop was never held up


def test_apply_verify_and_leader_changes_through_asyncio():
    cluster = TestCluster("local", 3).start_all()
    try:
        leader = cluster.leader()
        follower, other = cluster.followers()

        async def scenario() -> None:
            async with AsyncCKite(follower) as member, AsyncCKite(leader) as on_leader:
                written = await member.apply(Put("aio-apply", "x"))
                assert isinstance(written, WriteResult) and written.result == "x" and written.index > 0
                await on_leader.verify_leader(timeout=5)
                with pytest.raises(NotLeaderError):
                    await member.verify_leader(timeout=5)
                assert member.status().applied_index >= 0
                async with contextlib.aclosing(member.leader_changes()) as changes:
                    assert await asyncio.wait_for(changes.__anext__(), 5) == leader.id
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, lambda: leader.transfer_leadership(other.id, timeout=5))
                    while (await asyncio.wait_for(changes.__anext__(), 5)) != other.id:
                        pass
        asyncio.run(scenario())
    finally:
        cluster.stop_all()


def test_wait_for_leader_raises_leader_timeout():
    cluster = TestCluster("local", 3)
    alone = cluster.start(cluster.bindings[0])

    async def scenario() -> None:
        async with AsyncCKite(alone) as member:
            with pytest.raises(LeaderTimeoutError):
                await member.wait_for_leader(timeout=0.2)
    try:
        asyncio.run(scenario())
    finally:
        cluster.stop_all()


def test_the_asyncio_example_serves_set_and_get_over_tcp():
    service = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = service.stdout.readline() if service.stdout else ""
        assert line.startswith("listening on "), (line, service.stderr.read() if service.poll() else "")
        host, port = line.split()[-1].rsplit(":", 1)

        async def talk() -> list[str]:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"SET colour blue\nGET colour\nGET nothing\nDEL colour\n\n")
            await writer.drain()
            replies = [(await reader.readline()).decode().strip() for _ in range(4)]
            writer.close()
            return replies
        replies = asyncio.run(asyncio.wait_for(talk(), 20))
    finally:
        service.terminate()
        service.wait(10)
    assert replies[0].startswith("OK ") and int(replies[0].split()[1]) > 0
    assert replies[1:3] == ["blue", "(nil)"] and replies[3].startswith("ERR ")
