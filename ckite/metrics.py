"""Counters and latency histograms a member keeps about itself, exported by ``status()["metrics"]``.

Cheap enough for the write path: an observation is a bisect and two additions under a lock
held for microseconds. The admin console turns the snapshot into Prometheus metrics.
"""
from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from typing import Any

#: Upper bounds (seconds) of the latency buckets: 100 µs to 10 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class LatencyHistogram:
    """A fixed-bucket histogram of durations, in seconds."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)   # the last bucket is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect_left(self._bounds, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """``{"buckets": [[bound, cumulative count]...,["+Inf", n]], "sum", "count"}``."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, count in zip((*self._bounds, "+Inf"), counts, strict=True):
            running += count
            buckets.append([bound, running])
        return {"buckets": buckets, "sum": total, "count": running}


class MemberMetrics:
    """What the runtime counts about one member (the consensus lock guards the counters)."""

    def __init__(self) -> None:
        self.elections = 0
        self.snapshots_taken = 0       # by this member's own compaction
        self.snapshots_installed = 0   # received from a leader
        self.rpc_errors: Counter[str] = Counter()
        self.append_latency = LatencyHistogram()   # one durable log append (a batch)
        self.commit_latency = LatencyHistogram()   # a write, from its append to its result on the leader

    def snapshot(self) -> dict[str, Any]:
        return {"elections": self.elections, "snapshotsTaken": self.snapshots_taken,
                "snapshotsInstalled": self.snapshots_installed, "rpcErrors": dict(self.rpc_errors),
                "appendLatency": self.append_latency.snapshot(), "commitLatency": self.commit_latency.snapshot()}
