"""The member's state as Prometheus gauges, read from ``CKite.status()`` at each scrape.

A custom collector costs nothing on the write path: nothing is set per command, and nothing
under the consensus lock; each scrape takes one status snapshot (one short hold of the lock)
and turns its term, role, leader, configuration, log indexes (and the apply lag, commit index
minus applied index), snapshot and replication progress into gauge families. What only the
runtime can count or time (elections, latencies, RPC errors) is in ``ckite.metrics.member``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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


class StatusGauges(Collector):
    """Yields the member's metric families from one status snapshot per scrape."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def describe(self) -> Iterator[Metric]:
        """Nothing: registering never calls ``status()`` (the member may not be running yet)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from _core_metrics(status)
        yield from _log_metrics(status.get("log") or {})
        yield from _role_info_metrics(status)


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
    commit, applied = log.get("commitIndex"), log.get("lastApplied")
    yield _gauge("ckite_apply_lag_entries", "Committed entries not applied yet (commit index - applied index).",
                 None if commit is None or applied is None else max(commit - applied, 0))
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
