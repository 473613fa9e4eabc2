"""What the runtime counts and times about one member: prometheus_client Counters and Histograms
in a registry of the member's own (or one the application gives, ``with_metrics_registry``).
Built only for a member whose metrics are on (``ckite.metrics.counts`` says when).

Observed where the event happens, never waiting on anything: a Histogram observation is a
bisect and two additions under prometheus_client's own lock (about 1.4 µs here), a Counter
increment less. The hot ones (commit and append latency, RPC errors) are observed with the
consensus lock released; the rare ones (an election, a new leader, a snapshot) inside the
step that decides them, which adds one increment to a hold of microseconds.

No metric carries a ``member`` label. A registry holds one member (its own, or the
application's, which then must not hold another member's: registering a second raises
ValueError), and it is served by that member's process on its own ``/metrics``: which member
it is comes from the scrape's target labels (``instance``), as Prometheus recommends, and
``ckite_member_info{member=...}`` (``ckite.metrics.gauges``) names it for joins. Several members
in one process (the tests) each have their own registry, never prometheus_client's global one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

from ckite.metrics.counts import MemberCounts
from ckite.metrics.gauges import StatusGauges

C = TypeVar("C", bound=Collector)

#: Upper bounds (seconds) of the latency buckets: 100 µs to 10 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

#: Upper bounds (bytes) of the snapshot size buckets: 1 KiB to 4 GiB, by fours.
SIZE_BUCKETS = tuple(float(1024 * 4 ** n) for n in range(12))

#: Upper bounds (seconds) of the snapshot duration buckets: 1 ms to 5 minutes.
SNAPSHOT_DURATION_BUCKETS = (0.001, 0.01, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Where a snapshot came from: ``taken`` by this member's compaction, ``received`` from a leader.
SNAPSHOT_ORIGINS = ("taken", "received")


class MemberMetrics(MemberCounts):
    """One member's instruments, registered in ``registry`` (default: a new one of its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self._own_registry = registry is None
        self.registry: CollectorRegistry = CollectorRegistry() if registry is None else registry
        self._registered: list[Collector] = []
        self._commit = self.commit_latency = self._add(Histogram(
            "ckite_commit_latency_seconds", "Time from a write's append to its result on the leader (the longest "
            "wait of each applied batch).", buckets=LATENCY_BUCKETS, registry=None))
        self._append = self.append_latency = self._add(Histogram(
            "ckite_append_latency_seconds", "Time to make one batch of log writes durable.",
            buckets=LATENCY_BUCKETS, registry=None))
        self._elections = self.elections = self._add(Counter(
            "ckite_elections", "Elections this member started (not pre-votes).", registry=None))
        self._leader_changes = self.leader_changes = self._add(Counter(
            "ckite_leader_changes", "Leaderships this member learned of: a new leader, or the same one in a new "
            "term (its own included).", registry=None))
        self._taken = self.snapshots_taken = self._add(Counter(
            "ckite_snapshots_taken", "Snapshots this member took to compact its log.", registry=None))
        self._installed = self.snapshots_installed = self._add(Counter(
            "ckite_snapshots_installed", "Snapshots this member received from a leader and installed.",
            registry=None))
        size = self.snapshot_size = self._add(Histogram(
            "ckite_snapshot_size_bytes", "Size of the snapshots' state, by origin (taken here, or received).",
            ["origin"], buckets=SIZE_BUCKETS, registry=None))
        duration = self.snapshot_duration = self._add(Histogram(
            "ckite_snapshot_duration_seconds", "Time to write a snapshot's state durably (taken), or from its "
            "first chunk to the whole of it durable (received).", ["origin"], buckets=SNAPSHOT_DURATION_BUCKETS,
            registry=None))
        for origin in SNAPSHOT_ORIGINS:   # exported at 0 before the first snapshot
            size.labels(origin)
            duration.labels(origin)
        self.rpc_errors = self._add(Counter(
            "ckite_rpc_errors", "Calls to other members that failed (no answer, or a transport error), by peer "
            "and request.", ["peer", "kind"], registry=None))

    def _add(self, collector: C) -> C:
        try:
            self.registry.register(collector)
        except ValueError as error:
            self.close()
            raise ValueError(f"this registry already holds ckite's metrics ({error}): one member per registry") \
                from error
        self._registered.append(collector)
        return collector

    def watch(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Also export the member's state (term, role, indexes...), read from ``status()`` at each scrape."""
        self._add(StatusGauges(status))

    def close(self) -> None:
        """Take this member's metrics out of a registry the application gave (a member built again
        in the same process registers anew); a registry of the member's own is left as it is."""
        if self._own_registry:
            return
        for collector in reversed(self._registered):
            self.registry.unregister(collector)
        self._registered.clear()

    def rpc_failed(self, peer: str, kind: str) -> None:
        self.rpc_errors.labels(peer, kind).inc()

    def summary(self) -> dict[str, Any]:
        """``status()["metrics"]``, read from the instruments: counts, ``rpcErrors`` by peer (every
        kind), and the latencies as ``{"buckets": [[bound, cumulative count]..., ["+Inf", n]],
        "sum", "count"}``."""
        errors: dict[str, int] = {}
        for sample in _samples(self.rpc_errors, "_total"):
            errors[sample.labels["peer"]] = errors.get(sample.labels["peer"], 0) + int(sample.value)
        return {"elections": _count(self._elections), "leaderChanges": _count(self._leader_changes),
                "snapshotsTaken": _count(self._taken), "snapshotsInstalled": _count(self._installed),
                "rpcErrors": errors, "appendLatency": _histogram(self._append),
                "commitLatency": _histogram(self._commit)}


def _samples(collector: Collector, suffix: str) -> Iterable[Any]:
    return (sample for family in collector.collect() for sample in family.samples if sample.name.endswith(suffix))


def _count(counter: Counter) -> int:
    return int(sum(sample.value for sample in _samples(counter, "_total")))


def _histogram(histogram: Histogram) -> dict[str, Any]:
    buckets: list[list[Any]] = []
    total, count = 0.0, 0
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = sample.labels["le"]
                buckets.append([bound if bound == "+Inf" else float(bound), int(sample.value)])
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = int(sample.value)
    return {"buckets": buckets, "sum": total, "count": count}
