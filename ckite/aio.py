"""ckite from asyncio: :class:`AsyncCKite` awaits a :class:`~ckite.CKite` without blocking the loop.

The threaded core already hands out futures for its writes, so those are awaited directly
(``asyncio.wrap_future`` on ``write_async`` / ``apply_async``: no thread is held while a write
is in flight). Leadership is awaited through ``on_leader_change``: its callback, on the
member's leader-watch thread, hands each change to the loop with ``call_soon_threadsafe``, so
``wait_for_leader`` and ``leader_changes`` use no thread and do not poll.

The calls the core has no future for, ``read``, ``barrier`` and ``verify_leader`` (they wait on
a ReadIndex round and then on the applier's condition), run in a small thread pool of this
object's own (``ckite-aio-N``), never the loop's default executor, so that they cannot starve
the application's own ``run_in_executor`` work. ``status`` is answered at once (one short hold
of the consensus lock), on the loop.

Example::

    async def main() -> None:
        async with AsyncCKite(member) as cluster:
            leader = await cluster.wait_for_leader(timeout=10)
            written = await cluster.apply(Put("k", "v"))
            await cluster.barrier()
            value = await cluster.read(Get("k"))
            async with contextlib.aclosing(cluster.leader_changes()) as changes:
                async for leader in changes:
                    ...
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from ckite.api import CKite
from ckite.commands import ReadCommand, WriteCommand
from ckite.errors import LeaderTimeoutError
from ckite.member_status import MemberStatus
from ckite.write_result import WriteResult

T = TypeVar("T")

#: Threads for the calls without a future (reads, barriers, leadership checks) in flight at once.
DEFAULT_BLOCKING_THREADS = 8


class AsyncCKite:
    """An asyncio face for one member. It does not start or stop the member (the application
    owns its lifecycle); :meth:`close` (or ``async with``) shuts down its thread pool."""

    def __init__(self, member: CKite, blocking_threads: int = DEFAULT_BLOCKING_THREADS) -> None:
        self._member = member
        self._pool = ThreadPoolExecutor(max_workers=blocking_threads, thread_name_prefix="ckite-aio")

    @property
    def member(self) -> CKite:
        """The threaded member underneath, for the calls not mirrored here (membership changes)."""
        return self._member

    async def __aenter__(self) -> AsyncCKite:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Shut the thread pool down (the calls in progress finish); the member keeps running."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- writes: the core's own futures -----------------------------------------------------

    async def write(self, command: WriteCommand, timeout: float | None = None) -> Any:
        """``CKite.write_async``'s future, awaited: the command's result (its failures are
        :meth:`CKite.write`'s)."""
        return await asyncio.wrap_future(self._member.write_async(command, timeout))

    async def apply(self, command: WriteCommand, timeout: float | None = None) -> WriteResult:
        """``CKite.apply_async``'s future, awaited: the result with the index and term it took effect at."""
        return await asyncio.wrap_future(self._member.apply_async(command, timeout))

    # --- calls without a future: on this object's pool ------------------------------------------

    async def read(self, command: ReadCommand, timeout: float | None = None) -> Any:
        """:meth:`CKite.read` (linearizable) on the pool: the core has no future for it."""
        return await self._blocking(self._member.read, command, timeout)

    async def barrier(self, timeout: float | None = None) -> int:
        """:meth:`CKite.barrier` on the pool: every write committed before it is applied here."""
        return await self._blocking(self._member.barrier, timeout)

    async def verify_leader(self, timeout: float | None = None) -> None:
        """:meth:`CKite.verify_leader` on the pool (NotLeaderError, LeaderTimeoutError)."""
        await self._blocking(self._member.verify_leader, timeout)

    def status(self) -> MemberStatus:
        """:meth:`CKite.status`, at once: it never waits."""
        return self._member.status()

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args))

    # --- leadership: on_leader_change, handed to the loop ---------------------------------------

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        """The leader's binding once one is known; LeaderTimeoutError after ``timeout`` (default:
        the member's leader timeout). Holds no thread while it waits."""
        wait = self._member.leader_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._first_leader(), wait)
        except asyncio.TimeoutError:
            raise LeaderTimeoutError(f"no leader known to {self._member.id} within {wait:.3f}s") from None

    async def _first_leader(self) -> str:
        async with contextlib.aclosing(self.leader_changes()) as changes:
            async for leader in changes:
                if leader is not None:
                    return leader
        raise AssertionError("leader_changes() never ends")

    async def leader_changes(self) -> AsyncGenerator[str | None, None]:
        """Every leader this member sees, as it changes (None: none for now), starting with the
        current one; coalesced as :meth:`CKite.on_leader_change`'s are. Stops listening when the
        generator is closed (``contextlib.aclosing``, or the task is cancelled). ::

            async with contextlib.aclosing(cluster.leader_changes()) as changes:
                async for leader in changes:
                    print("now led by", leader)
        """
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue[str | None] = asyncio.Queue()

        def deliver(leader: str | None) -> None:   # on the member's leader-watch thread
            try:
                loop.call_soon_threadsafe(changes.put_nowait, leader)
            except RuntimeError:
                pass   # the loop is closed: nobody listens any more
        unsubscribe = self._member.on_leader_change(deliver)
        try:
            while True:
                yield await changes.get()
        finally:
            unsubscribe()
