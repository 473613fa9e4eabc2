"""The client load, identical for every system: it runs inside the leader's process.

Both libraries are embedded libraries: an application calls ``write``/``read`` in its own
process, and a write submitted on a follower is forwarded to the leader. Running the load
generator in the leader measures the replication path itself, the same way for both, with no
client RPC layer of our own in front of either library (which would cap the numbers at what
that layer can do; see docs/benchmarks.md in benchmarks/README.md).

Workloads (each returns a dict of plain numbers, ready for JSON):

- :func:`sequential`: one client, blocking writes one after the other.
- :func:`window`: ``inflight`` asynchronous writes always outstanding (a closed loop: a new
  write is submitted when one completes) for a duration.
- :func:`writers`: ``clients`` threads, each doing blocking writes (the other way to have many
  writes in flight: what an application with a thread per request does).
- :func:`readers`: ``clients`` threads, each doing blocking linearizable reads; run on every
  member at once, :func:`combine` makes one result of the members' results.
- :func:`fill`: write N distinct keys (failed writes retried), then overwrite them if asked: the
  memory row, and the large-state benchmark (``benchmarks.large_state``).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: Keys cycle through this many names in the timed rows, so the state machine stays small and
#: the rows measure the replication path, not the growth of a dict.
KEYSPACE = 1000


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in milliseconds of latencies in seconds (None when there are none)."""
    if not latencies:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(latencies)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "max_ms": round(ordered[-1] * 1000, 3), "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3)}


class _Errors:
    """Counts failures and keeps the first message of each kind (thread-safe enough under the GIL)."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: dict[str, str] = {}

    def add(self, exc: BaseException | str) -> None:
        self.count += 1
        kind = exc if isinstance(exc, str) else type(exc).__name__
        if kind not in self.samples and len(self.samples) < 5:
            self.samples[kind] = kind if isinstance(exc, str) else str(exc)[:200]


def sequential(system: Any, duration: float, size: int, timeout: float = 10.0) -> dict[str, Any]:
    """One client: blocking writes of ``size``-byte values back to back for ``duration`` seconds."""
    latencies: list[float] = []
    errors = _Errors()
    clock = time.perf_counter
    start = clock()
    end = start + duration
    i = 0
    while clock() < end:
        value = os.urandom(size)
        t0 = clock()
        try:
            system.write(f"k{i % KEYSPACE}", value, timeout)
            latencies.append(clock() - t0)
        except Exception as exc:   # a failed write is counted, never fatal to the run
            errors.add(exc)
        i += 1
    elapsed = clock() - start
    return {"ops": len(latencies), "elapsed_s": round(elapsed, 3), "ops_per_s": round(len(latencies) / elapsed, 1),
            "errors": errors.count, "error_samples": errors.samples, **latency_summary(latencies)}


def window(system: Any, size: int, inflight: int, duration: float, drain_timeout: float = 30.0,
           timeout: float = 30.0) -> dict[str, Any]:
    """Keep ``inflight`` writes outstanding for ``duration`` seconds (a closed loop).

    ``ops_per_s`` counts the writes that completed successfully inside the timed window; the ones
    still in flight when it closes are then drained (up to ``drain_timeout``) and counted in
    ``completed_total``, which is what CPU per committed write is divided by.
    """
    slots = threading.Semaphore(inflight)
    clock = time.perf_counter
    latencies: list[float] = []          # successful writes completed inside the window
    late: list[float] = []               # successful writes completed while draining
    errors = _Errors()
    start = clock()
    end = [start + duration]

    def completion(t0: float) -> Callable[..., None]:
        def done(ok: bool, failure: str | None = None) -> None:
            now = clock()
            if ok:
                (latencies if now <= end[0] else late).append(now - t0)
            else:
                errors.add(failure or "write failed")
            slots.release()
        return done

    submitted = 0
    submit_time = 0.0   # spent inside write_async: how asynchronous the library's submit really is
    while clock() < end[0]:
        if not slots.acquire(timeout=0.1):
            continue
        value = os.urandom(size)
        t0 = clock()
        try:
            system.write_async(f"k{submitted % KEYSPACE}", value, completion(t0), timeout)
        except Exception as exc:
            errors.add(exc)
            slots.release()
        submit_time += clock() - t0
        submitted += 1
    submit_end = clock()
    end[0] = submit_end   # writes completing from now on are drained, not timed
    drained = _drain(slots, inflight, drain_timeout)
    elapsed = submit_end - start
    in_window = len(latencies)
    return {"ops": in_window, "elapsed_s": round(elapsed, 3), "ops_per_s": round(in_window / elapsed, 1),
            "submitted": submitted, "completed_total": in_window + len(late),
            "submit_us_mean": round(submit_time / max(submitted, 1) * 1e6, 1),
            "drain_s": round(clock() - submit_end, 3), "undrained": inflight - drained,
            "errors": errors.count, "error_samples": errors.samples, **latency_summary(latencies)}


def fill(system: Any, keys: int, size: int, inflight: int, prefix: str = "fill-", timeout: float = 30.0,
         give_up_after: float = 300.0, overwrites: int = 0) -> dict[str, Any]:
    """Write ``keys`` distinct keys with ``inflight`` writes outstanding, then ``overwrites`` more
    writes to the same keys from the first one on (write ``i`` goes to key ``i % keys``); a failed
    write is submitted again, so that the state machine ends up holding every key (the memory row,
    and the large-state benchmark's fill)."""
    slots = threading.Semaphore(inflight)
    retry: deque[int] = deque()
    succeeded: list[int] = []
    errors = _Errors()
    clock = time.perf_counter
    start = clock()

    def completion(i: int) -> Callable[..., None]:
        def done(ok: bool, failure: str | None = None) -> None:
            if ok:
                succeeded.append(i)
            else:
                errors.add(failure or "write failed")
                retry.append(i)
            slots.release()
        return done

    writes = keys + overwrites
    next_key = 0
    while len(succeeded) < writes and clock() - start < give_up_after:
        if not slots.acquire(timeout=0.1):
            continue
        if retry:
            i = retry.popleft()
        elif next_key < writes:
            i, next_key = next_key, next_key + 1
        else:   # every key is submitted: wait for the last completions (or failures to retry)
            slots.release()
            time.sleep(0.005)
            continue
        try:
            system.write_async(f"{prefix}{i % keys}", os.urandom(size), completion(i), timeout)
        except Exception as exc:
            errors.add(exc)
            retry.append(i)
            slots.release()
    elapsed = clock() - start
    return {"ops": len(succeeded), "keys": keys, "overwrites": overwrites, "elapsed_s": round(elapsed, 3),
            "ops_per_s": round(len(succeeded) / elapsed, 1), "completed_total": len(succeeded),
            "errors": errors.count, "error_samples": errors.samples}


def _drain(slots: threading.Semaphore, inflight: int, timeout: float) -> int:
    """Take back every slot (all writes completed) or give up after ``timeout``; returns slots taken."""
    deadline = time.monotonic() + timeout
    taken = 0
    while taken < inflight and slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
        taken += 1
    for _ in range(taken):
        slots.release()
    return taken


def readers(system: Any, duration: float, clients: int, timeout: float = 10.0,
            latencies: bool = False) -> dict[str, Any]:
    """``clients`` threads doing blocking reads of existing keys for ``duration`` seconds.

    ``latencies``: also return every read's latency (``latencies_us``), so that the results of
    readers on several members can be combined into percentiles over all of them."""
    return _closed_loop(lambda i: system.read(f"k{i % KEYSPACE}", timeout), duration, clients, latencies)


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result of a workload run on every member at once (each with ``latencies``): ops and
    rates summed over the members, percentiles over every member's operations."""
    latencies = [us / 1e6 for result in results for us in result["latencies_us"]]
    samples: dict[str, str] = {}
    for result in results:
        for kind, message in result["error_samples"].items():
            samples.setdefault(kind, message)
    return {"ops": sum(r["ops"] for r in results), "elapsed_s": max(r["elapsed_s"] for r in results),
            "ops_per_s": round(sum(r["ops_per_s"] for r in results), 1),
            "ops_per_s_by_member": [r["ops_per_s"] for r in results], "clients": sum(r["clients"] for r in results),
            "errors": sum(r["errors"] for r in results), "error_samples": samples, **latency_summary(latencies)}


def writers(system: Any, duration: float, clients: int, size: int, timeout: float = 10.0) -> dict[str, Any]:
    """``clients`` threads doing blocking writes of ``size``-byte values for ``duration`` seconds."""
    return _closed_loop(lambda i: system.write(f"k{i % KEYSPACE}", os.urandom(size), timeout), duration, clients)


def _closed_loop(operation: Callable[[int], Any], duration: float, clients: int,
                 keep_latencies: bool = False) -> dict[str, Any]:
    """``clients`` threads each calling ``operation(i)`` back to back until ``duration`` passes;
    ``keep_latencies`` adds every latency, in whole microseconds, as ``latencies_us``."""
    clock = time.perf_counter
    per_thread: list[list[float]] = [[] for _ in range(clients)]
    errors = _Errors()
    barrier = threading.Barrier(clients + 1)
    end = [0.0]

    def client(n: int) -> None:
        mine = per_thread[n]
        i = n
        barrier.wait()
        while clock() < end[0]:
            t0 = clock()
            try:
                operation(i)
                mine.append(clock() - t0)
            except Exception as exc:
                errors.add(exc)
            i += clients

    threads = [threading.Thread(target=client, args=(n,), name=f"bench-client-{n}", daemon=True)
               for n in range(clients)]
    for thread in threads:
        thread.start()
    start = clock()
    end[0] = start + duration
    barrier.wait()
    for thread in threads:
        thread.join(duration + 60)
    elapsed = clock() - start
    latencies = [x for mine in per_thread for x in mine]
    result = {"ops": len(latencies), "elapsed_s": round(elapsed, 3), "ops_per_s": round(len(latencies) / elapsed, 1),
              "clients": clients, "errors": errors.count, "error_samples": errors.samples,
              **latency_summary(latencies)}
    if keep_latencies:
        result["latencies_us"] = [round(x * 1e6) for x in latencies]
    return result
