"""A member's Prometheus metrics (ckite.metrics): what its registry holds after real work, the
application's own registry, the /metrics route, and several members in one process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from ckite import CKiteBuilder
from ckite.admin import build_admin
from ckite.errors import CKiteError
from ckite.log.memory_storage import MemoryStorage
from ckite.metrics import MemberMetrics
from ckite.rpc.local import LocalNetwork
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, KVStore, Put
from tests.waiting import wait_for

THRESHOLD = 20
REPO = Path(__file__).resolve().parent.parent

#: Every metric a member's registry holds (families, as the text format names them).
MEMBER_FAMILIES = {
    "ckite_commit_latency_seconds", "ckite_append_latency_seconds", "ckite_elections", "ckite_leader_changes",
    "ckite_snapshots_taken", "ckite_snapshots_installed", "ckite_snapshot_size_bytes",
    "ckite_snapshot_duration_seconds", "ckite_rpc_errors", "ckite_term", "ckite_role", "ckite_commit_index",
    "ckite_applied_index", "ckite_apply_lag_entries", "ckite_member_info"}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples}


def families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in text_string_to_metric_families(generate_latest(registry).decode())}


def single(binding: str = "localhost:9191", network: LocalNetwork | None = None, **options) -> CKiteBuilder:
    builder = (CKiteBuilder().with_local_binding(binding).with_in_memory_storage().with_state_machine(KVStore())
               .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
               .with_transport((network or LocalNetwork()).transport(binding)))
    registry = options.get("registry")
    if registry is not None:
        builder.with_metrics_registry(registry)
    return builder if options.get("admin") else builder.without_admin().with_metrics()


@pytest.fixture()
def cluster():
    built = TestCluster("local", 3, compaction_threshold=THRESHOLD, metrics=True).start_all()
    yield built
    built.stop_all()


def test_a_members_registry_holds_its_metrics_with_plausible_values_after_writes(cluster):
    leader = cluster.leader()
    lagging = cluster.followers()[0].id
    cluster.stop(lagging)   # the leader's calls to it fail; it misses entries the leader compacts away
    for future in [leader.write_async(Put(f"key{i}", f"value{i}")) for i in range(5 * THRESHOLD)]:
        future.result(timeout=10)
    wait_for(lambda: leader.status()["log"]["firstIndex"] > THRESHOLD, 10, "the leader to compact")
    # The first call to fail is an AppendEntries, or an InstallSnapshot when the leader compacted
    # before it next called the stopped member (under load: the writes take less than a heartbeat).
    failed = [("ckite_rpc_errors_total", (("kind", kind), ("peer", lagging)))
              for kind in ("AppendEntries", "InstallSnapshot")]
    wait_for(lambda: any(samples(leader.metrics_registry).get(key) for key in failed), 10,
             "a failed call to the stopped member")
    restarted = cluster.start(lagging, storage=MemoryStorage())
    wait_for(lambda: restarted.read_local(Get(f"key{5 * THRESHOLD - 1}")) is not None, 15, "the catch-up")

    led = samples(leader.metrics_registry)
    status = leader.status()
    assert MEMBER_FAMILIES <= families(leader.metrics_registry)
    assert led[("ckite_commit_latency_seconds_count", ())] >= 1
    assert 0 < led[("ckite_commit_latency_seconds_sum", ())] < 10 * led[("ckite_commit_latency_seconds_count", ())]
    assert led[("ckite_append_latency_seconds_count", ())] >= 1
    assert led[("ckite_elections_total", ())] >= 1
    assert led[("ckite_leader_changes_total", ())] >= 1
    assert led[("ckite_snapshots_taken_total", ())] >= 1
    assert led[("ckite_snapshot_size_bytes_count", (("origin", "taken"),))] == led[("ckite_snapshots_taken_total", ())]
    assert led[("ckite_snapshot_size_bytes_sum", (("origin", "taken"),))] > 0
    assert led[("ckite_snapshot_duration_seconds_count", (("origin", "taken"),))] >= 1
    assert led[("ckite_term", ())] == status["term"]
    assert led[("ckite_role", (("role", "Leader"),))] == 1
    assert led[("ckite_commit_index", ())] >= 5 * THRESHOLD
    assert 0 <= led[("ckite_apply_lag_entries", ())] <= led[("ckite_commit_index", ())]
    # status()["metrics"] says the same, from the same instruments
    metrics = status["metrics"]
    assert metrics["elections"] == led[("ckite_elections_total", ())]
    assert metrics["snapshotsTaken"] == led[("ckite_snapshots_taken_total", ())]
    assert metrics["rpcErrors"][lagging] >= 1
    assert metrics["commitLatency"]["count"] >= led[("ckite_commit_latency_seconds_count", ())]
    assert metrics["commitLatency"]["buckets"][-1] == ["+Inf", metrics["commitLatency"]["count"]]

    caught_up = samples(restarted.metrics_registry)
    assert caught_up[("ckite_snapshots_installed_total", ())] >= 1
    assert restarted.status()["metrics"]["snapshotsInstalled"] == caught_up[("ckite_snapshots_installed_total", ())]
    assert caught_up[("ckite_snapshot_size_bytes_count", (("origin", "received"),))] >= 1
    assert caught_up[("ckite_snapshot_duration_seconds_count", (("origin", "received"),))] >= 1
    assert caught_up[("ckite_leader_changes_total", ())] >= 1
    assert caught_up[("ckite_role", (("role", "Follower"),))] == 1
    assert caught_up[("ckite_elections_total", ())] == 0


def test_an_application_registry_gets_the_members_metrics_beside_its_own():
    registry = CollectorRegistry()
    served = Counter("app_requests", "The application's own.", registry=registry)
    served.inc()
    member = single(registry=registry, admin=True).with_admin_port(0).build()
    assert member.metrics_registry is registry
    with pytest.raises(ValueError, match="one member per registry"):
        single("localhost:9192", registry=registry).build()
    member.start()
    try:
        wait_for(member.is_leader, 10, "the single member to lead")
        member.write(Put("k", "v"))
        assert MEMBER_FAMILIES | {"app_requests"} <= families(registry)
        assert samples(registry)[("ckite_commit_latency_seconds_count", ())] >= 1
        assert member.admin is not None
        text = member.admin.app.test_client().get("/metrics").data.decode()   # the console serves all of it
        assert "app_requests_total 1.0" in text and "ckite_term " in text
    finally:
        member.stop()
    assert not any(name.startswith("ckite_") for name in families(registry))   # gone with the member: another
    assert "app_requests" in families(registry)                               # may register now
    again = single(registry=registry).build()
    again.stop()


def test_metrics_route_parses_in_either_format_prometheus_asks_for():
    member = single(admin=True).with_admin_port(0).build()
    member.start()
    try:
        wait_for(member.is_leader, 10, "the single member to lead")
        member.write(Put("k", "v"))
        assert member.admin is not None
        client = member.admin.app.test_client()
        text = client.get("/metrics")
        assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        parsed = {family.name: family for family in text_string_to_metric_families(text.data.decode())}
        assert MEMBER_FAMILIES <= set(parsed)
        assert parsed["ckite_commit_latency_seconds"].type == "histogram"
        assert parsed["ckite_rpc_errors"].type == "counter"
        assert parsed["ckite_term"].type == "gauge"
        open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert MEMBER_FAMILIES <= {family.name for family in openmetrics_families(open_metrics.data.decode())}
    finally:
        member.stop()


def test_two_members_in_one_process_each_have_their_own_registry():
    network = LocalNetwork()
    first, second = (single(binding, network).with_members_bindings([other]).build()
                     for binding, other in (("localhost:9191", "localhost:9192"), ("localhost:9192", "localhost:9191")))
    assert first.metrics_registry is not second.metrics_registry
    first.start()
    second.start()
    try:
        wait_for(lambda: first.is_leader() or second.is_leader(), 10, "a leader")
        leader = first if first.is_leader() else second
        leader.write(Put("k", "v"))
        for member in (first, second):
            scraped = samples(member.metrics_registry)
            assert scraped[("ckite_member_info", (("leader", leader.id), ("member", member.id)))] == 1
            assert not any(name == "ckite_member_info" and dict(labels)["member"] != member.id
                           for name, labels in scraped)
        assert samples(leader.metrics_registry)[("ckite_commit_latency_seconds_count", ())] >= 1
        assert not any(name.startswith("ckite_") for name in families(REGISTRY))   # never the global one
    finally:
        first.stop()
        second.stop()


def test_the_status_summary_reads_the_instruments():
    metrics = MemberMetrics()
    metrics.commit_latency.observe(0.003)
    metrics.append_latency.observe(0.0002)
    metrics.rpc_failed("b:9092", "AppendEntries")
    metrics.rpc_failed("b:9092", "RequestVote")
    metrics.leader_seen("a:9091", 2)
    metrics.leader_seen("a:9091", 2)   # the same leadership again: not a change
    metrics.leader_seen(None, 3)
    metrics.leader_seen("a:9091", 3)   # the same leader in a new term: one
    summary = metrics.summary()
    assert summary["rpcErrors"] == {"b:9092": 2}
    assert summary["leaderChanges"] == 2
    assert (summary["elections"], summary["snapshotsTaken"], summary["snapshotsInstalled"]) == (0, 0, 0)
    commit = summary["commitLatency"]
    assert (commit["count"], commit["sum"]) == (1, pytest.approx(0.003))
    assert [0.0025, 0] in commit["buckets"] and [0.005, 1] in commit["buckets"] and commit["buckets"][-1] == ["+Inf", 1]
    assert summary["appendLatency"]["buckets"][0] == [0.0001, 0]


# --- metrics off: a member without its console and without a registry ---------------------------

OFF_PROGRAM = """
import sys
from ckite import CKiteBuilder
from ckite.rpc.local import LocalNetwork
from tests.kv_example import KVStore, Put
member = (CKiteBuilder().with_local_binding("localhost:9191").with_in_memory_storage()
          .with_state_machine(KVStore()).with_transport(LocalNetwork().transport("localhost:9191"))
          .with_min_election_timeout(150).with_max_election_timeout(300).with_heartbeats_interval(50)
          .without_admin().build())
member.start()
member.wait_for_leader(timeout=10)
member.write(Put("k", "v"), timeout=10)
counts = member.status()["metrics"]
member.stop()
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"prometheus_client", "flask", "waitress"})
print(counts["elections"], counts["leaderChanges"], loaded)
"""


def test_a_member_without_its_console_imports_no_prometheus_flask_or_waitress_and_still_counts():
    """Issue 13's memory item: nobody can read the Prometheus registry of a member without its
    console and without a registry of the application's, so prometheus_client is never
    imported; status()["metrics"] still has the counts."""
    done = subprocess.run([sys.executable, "-c", OFF_PROGRAM], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "1", "[]"]


def test_with_metrics_off_the_registry_is_refused_with_the_builder_call_that_turns_them_on():
    member = single().build()   # with_metrics(): on
    quiet = (CKiteBuilder().with_local_binding("localhost:9192").with_in_memory_storage().with_state_machine(KVStore())
             .with_transport(LocalNetwork().transport("localhost:9192")).without_admin().build())
    try:
        assert isinstance(member.metrics_registry, CollectorRegistry)
        with pytest.raises(CKiteError, match="with_metrics"):
            _ = quiet.metrics_registry
        answer = build_admin(quiet, "127.0.0.1", 0).app.test_client().get("/metrics")   # a console added afterwards
        assert answer.status_code == 404 and "with_metrics" in answer.get_json()["error"]
    finally:
        member.stop()
        quiet.stop()
