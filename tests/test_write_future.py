"""A write's future builds its condition only when a thread waits on it, and is a real Future
for everything that takes one (waiting with a timeout, callbacks, asyncio, concurrent.futures.wait)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from ckite.runtime.write_future import WriteFuture


def test_a_future_completed_before_anyone_waits_needs_no_condition_and_runs_its_callbacks_once():
    future = WriteFuture()
    seen: list[int] = []
    future.add_done_callback(lambda done: seen.append(done.result()))
    future.set_result(3)
    assert seen == [3] and future.done() and future.result() == 3
    assert "_condition" not in vars(future)
    future.add_done_callback(lambda done: seen.append(done.result() + 1))   # after completion: at once
    assert seen == [3, 4]
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(5)


def test_a_thread_waiting_on_it_is_woken_by_its_completion():
    future = WriteFuture()
    threading.Timer(0.05, future.set_result, args=("done",)).start()
    assert future.result(timeout=5) == "done"
    failed = WriteFuture()
    threading.Timer(0.05, failed.set_exception, args=(ValueError("no"),)).start()
    assert isinstance(failed.exception(timeout=5), ValueError)
    with pytest.raises(concurrent.futures.TimeoutError):
        WriteFuture().result(timeout=0.01)


def test_it_works_with_asyncio_and_concurrent_futures_wait_and_cancel():
    future = WriteFuture()

    async def awaited() -> int:
        asyncio.get_running_loop().call_later(0.01, future.set_result, 7)
        return await asyncio.wrap_future(future)
    assert asyncio.run(awaited()) == 7
    waited = WriteFuture()
    threading.Timer(0.05, waited.set_result, args=(1,)).start()
    done, _ = concurrent.futures.wait([waited], timeout=5)
    assert waited in done
    cancelled = WriteFuture()
    assert cancelled.cancel() and cancelled.cancelled()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result(1)
