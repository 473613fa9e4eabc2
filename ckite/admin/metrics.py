"""Prometheus metrics of one member, read from ``CKite.status()`` when scraped.

A custom collector costs nothing on the write path: nothing is counted per command here;
each scrape takes one status snapshot (one short hold of the consensus lock) and turns it
into metric families. Each member gets its own :class:`CollectorRegistry`, so several
members in one process (the tests) never collide in prometheus_client's global registry.

Counters and latency histograms only the runtime can measure are exported when the status
carries a ``metrics`` section, in this shape (every key optional)::

    "metrics": {
        "elections": 3,                                # elections this member started
        "rpcErrors": {"host:9092": 7},                 # failed calls, per peer
        "appendLatency": {"buckets": [[0.001, 10], [0.01, 12], ["+Inf", 12]],
                          "sum": 0.034, "count": 12},  # cumulative counts, seconds
        "commitLatency": {...same shape...},
    }
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

#: Every role a member can be in; each gets a 0/1 sample so dashboards can graph role changes.
ROLES = ("Starter", "Follower", "Joiner", "Candidate", "Leader", "Stopped")

_LOG_GAUGES = (("commitIndex", "ckite_commit_index", "Highest log index known to be committed."),
               ("lastApplied", "ckite_applied_index", "Highest log index applied to the state machine."),
               ("lastIndex", "ckite_log_last_index", "Index of the last entry in the log."),
               ("firstIndex", "ckite_log_first_index", "Index of the first entry still in the log."),
               ("length", "ckite_log_entries", "Entries currently held in the log."))

_FOLLOWER_GAUGES = (("matchIndex", "ckite_follower_match_index", "Highest index known replicated on the follower."),
                    ("nextIndex", "ckite_follower_next_index", "Next index the leader sends the follower."),
                    ("lag", "ckite_follower_lag_entries", "Entries the follower is behind the leader's log."),
                    ("inflight", "ckite_follower_inflight", "AppendEntries requests awaiting an answer."))

_HISTOGRAMS = (("appendLatency", "ckite_append_latency_seconds", "Time to append a batch durably."),
               ("commitLatency", "ckite_commit_latency_seconds", "Time from append to commit of a write."))


class StatusCollector(Collector):
    """Yields the member's metric families from one status snapshot per scrape."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from _core_metrics(status)
        yield from _log_metrics(status.get("log") or {})
        yield from _role_info_metrics(status)
        yield from _runtime_metrics(status.get("metrics") or {})


def new_registry(status: Callable[[], Mapping[str, Any]]) -> CollectorRegistry:
    """A registry of its own for one member, holding a :class:`StatusCollector` over ``status``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return registry


def _gauge(name: str, documentation: str, value: float | None, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    if value is not None:
        family.add_metric(list(labels.values()), value)
    return family


def _core_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    member = str(status.get("id"))
    info = GaugeMetricFamily("ckite_member_info", "Constant 1, labelled with the member and the leader it knows.",
                             labels=["member", "leader"])
    info.add_metric([member, status.get("leader") or ""], 1)
    yield info
    yield _gauge("ckite_term", "Current Raft term.", status.get("term"))
    role = GaugeMetricFamily("ckite_role", "1 for the member's current role, 0 for the others.", labels=["role"])
    state = status.get("state")
    for name in (*ROLES, *(() if state in ROLES or state is None else (state,))):
        role.add_metric([name], 1 if name == state else 0)
    yield role
    yield _gauge("ckite_is_leader", "1 when this member is the leader.", 1 if state == "Leader" else 0)
    yield _gauge("ckite_leader_known", "1 when this member knows a leader.", 1 if status.get("leader") else 0)
    configuration = status.get("configuration") or {}
    members = set(configuration.get("voters") or ()) | set(configuration.get("oldVoters") or ()) \
        | set(configuration.get("learners") or ())
    yield _gauge("ckite_members", "Members of the current configuration.", len(members))


def _log_metrics(log: Mapping[str, Any]) -> Iterator[Metric]:
    for key, name, documentation in _LOG_GAUGES:
        yield _gauge(name, documentation, log.get(key))
    snapshot = log.get("snapshot") or {}
    yield _gauge("ckite_snapshot_index", "Last log index covered by the latest snapshot.", snapshot.get("index"))
    yield _gauge("ckite_snapshot_bytes", "Size of the latest snapshot's state.", snapshot.get("bytes"))


def _role_info_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    info = status.get("stateInfo") or {}
    uptime = info.get("leaderUptimeMs")
    yield _gauge("ckite_leader_uptime_seconds", "How long this member has led (leader only).",
                 None if uptime is None else uptime / 1000)
    lease = info.get("leaseRemainingMs")
    yield _gauge("ckite_lease_remaining_seconds", "What is left of the leader lease; 0: reads take a ReadIndex "
                 "round (leader with lease reads on only).", None if lease is None else lease / 1000)
    contact = info.get("lastLeaderContactMs")
    yield _gauge("ckite_last_leader_contact_seconds", "Time since the leader was last heard (followers only).",
                 None if contact is None else contact / 1000)
    followers: Mapping[str, Mapping[str, Any]] = info.get("followers") or {}
    last_index = (status.get("log") or {}).get("lastIndex", 0)
    for key, name, documentation in _FOLLOWER_GAUGES:
        family = GaugeMetricFamily(name, documentation + " (leader only)", labels=["follower"])
        for peer, progress in sorted(followers.items()):
            value = last_index - progress.get("matchIndex", 0) if key == "lag" else progress.get(key)
            if value is not None:
                family.add_metric([peer], value)
        yield family
    ack = GaugeMetricFamily("ckite_follower_last_ack_seconds", "Time since the follower last answered (leader only).",
                            labels=["follower"])
    for peer, progress in sorted(followers.items()):
        if progress.get("lastAckMs") is not None:
            ack.add_metric([peer], progress["lastAckMs"] / 1000)
    yield ack


_COUNTERS = (("elections", "ckite_elections", "Elections this member started."),
             ("snapshotsTaken", "ckite_snapshots_taken", "Snapshots this member took to compact its log."),
             ("snapshotsInstalled", "ckite_snapshots_installed", "Snapshots this member received from a leader."))


def _runtime_metrics(metrics: Mapping[str, Any]) -> Iterator[Metric]:
    for key, name, documentation in _COUNTERS:
        if key in metrics:
            yield CounterMetricFamily(name, documentation, value=metrics[key])
    if "rpcErrors" in metrics:
        errors = CounterMetricFamily("ckite_rpc_errors", "Failed calls to other members.", labels=["peer"])
        for peer, count in sorted(metrics["rpcErrors"].items()):
            errors.add_metric([peer], count)
        yield errors
    for key, name, documentation in _HISTOGRAMS:
        histogram = metrics.get(key)
        if histogram:
            buckets = [(_bucket_bound(bound), count) for bound, count in histogram.get("buckets", ())]
            if not buckets or buckets[-1][0] != "+Inf":   # Prometheus requires the +Inf bucket
                buckets.append(("+Inf", histogram.get("count", buckets[-1][1] if buckets else 0)))
            yield HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.get("sum", 0))


def _bucket_bound(bound: Any) -> str:
    return "+Inf" if bound in ("+Inf", float("inf")) else repr(float(bound))
