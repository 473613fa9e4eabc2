"""CKite's integration scenarios (CKiteIntegrationTest), on real threads, over both transports.

Each scenario runs over the in-process transport, over real Thrift on loopback, and over
Thrift with mutual TLS (the pipelined replication connection included).
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from ckite import CKiteBuilder
from ckite.errors import (
    CommandError,
    LeaderTimeoutError,
    LostLeadershipError,
    NotLeaderError,
    ReadTimeoutError,
    WriteTimeoutError,
)
from ckite.log.sqlite_storage import SQLiteStorage
from ckite.rpc.local import LocalNetwork
from ckite.rpc.tls import TlsConfig
from tests.cluster_fixture import TestCluster
from tests.kv_example import Fail, Get, KVStore, Put
from tests.netutil import free_port
from tests.tls_certs import make_certs
from tests.waiting import wait_for

TRANSPORTS = ["local", "thrift", "tls"]


@pytest.fixture(scope="module")
def member_tls(tmp_path_factory) -> TlsConfig:
    return TlsConfig.of(*make_certs(tmp_path_factory.mktemp("certs"), "member").files("member"))


@pytest.fixture
def make_cluster(request, member_tls):
    clusters: list[TestCluster] = []

    def make(size: int, transport: str, **options) -> TestCluster:
        if transport == "tls":
            cluster = TestCluster("thrift", size, tls=member_tls, **options)
        else:
            cluster = TestCluster(transport, size, **options)
        clusters.append(cluster)
        return cluster
    yield make
    for cluster in clusters:
        cluster.stop_all()


# --- a single member cluster -------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_single_member_elects_itself_and_reads_committed_writes(make_cluster, transport):
    cluster = make_cluster(1, transport).start_all()
    member = cluster.running()[0]
    assert member.is_leader(timeout=5)
    assert member.write(Put("key1", "value1")) == "value1"
    assert member.read(Get("key1")) == "value1"
    assert member.read_local(Get("key1")) == "value1"


def test_single_member_restart_reads_back_from_sqlite(tmp_path):
    """CKite scenario: writes survive a stop and a rebuild on the same data dir."""
    def build():
        return (CKiteBuilder().with_local_binding("localhost:9191").with_data_dir(tmp_path)
                .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
                .with_transport(LocalNetwork().transport("localhost:9191"))
                .with_state_machine(KVStore()).without_admin().build())
    member = build()
    member.start()
    for i in range(5):
        member.write(Put(f"key{i}", f"value{i}"))
    member.stop()
    assert SQLiteStorage(tmp_path / "ckite.db").load().term >= 1
    restarted = build()
    restarted.start()
    try:
        assert [restarted.read(Get(f"key{i}")) for i in range(5)] == [f"value{i}" for i in range(5)]
    finally:
        restarted.stop()


def test_the_builder_serves_the_admin_console_with_the_member(tmp_path):
    """On by default (Raft port + 1000, as in CKite); here on a free port. It stops with the member."""
    binding = f"127.0.0.1:{free_port()}"
    member = (CKiteBuilder().with_local_binding(binding).with_in_memory_storage()
              .with_state_machine(KVStore()).with_admin_port(0).build())
    assert CKiteBuilder().with_local_binding("localhost:9191").with_in_memory_storage() \
        .with_state_machine(KVStore()).build().admin.port == 10191
    member.start()
    try:
        wait_for(member.is_leader, 10, "the single member to lead")
        with urllib.request.urlopen(member.admin.url + "/status", timeout=5) as response:
            assert json.load(response)["cluster"]["state"] == "Leader"
        member.write(Put("key1", "value1"))
        with urllib.request.urlopen(member.admin.url + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "ckite_elections_total 1.0" in metrics
        assert "ckite_commit_latency_seconds_count 2.0" in metrics   # the write, and its session's opening
    finally:
        member.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(member.admin.url + "/status", timeout=5)


def test_a_taken_admin_port_fails_start_and_leaves_nothing_running():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = free_port()
        member = (CKiteBuilder().with_local_binding(f"127.0.0.1:{port}").with_in_memory_storage()
                  .with_state_machine(KVStore()).with_admin_port(taken.getsockname()[1]).build())
        with pytest.raises(OSError):
            member.start()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(f"ckite-{port}-")]


def test_state_machine_error_fails_only_that_command(make_cluster):
    """CKite bug 11: an exception in apply() killed the log worker; now it fails one command."""
    cluster = make_cluster(1, "local").start_all()
    member = cluster.running()[0]
    with pytest.raises(CommandError) as raised:
        member.write(Fail("boom"))
    assert raised.value.error_type == "ValueError"
    assert member.write(Put("after", "ok")) == "ok"
    assert member.read(Get("after")) == "ok"


def test_many_concurrent_async_writes_all_apply(make_cluster):
    cluster = make_cluster(3, "local").start_all()
    leader = cluster.leader()
    futures = [leader.write_async(Put(f"k{i}", str(i))) for i in range(500)]
    assert [f.result(timeout=10) for f in futures] == [str(i) for i in range(500)]
    for member in cluster.running():
        wait_for(lambda member=member: member.read_local(Get("k499")) == "499", 5, f"{member.id} to apply every write")


# --- a three member cluster --------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_elects_a_single_leader(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    leader = cluster.leader()
    assert leader.is_leader()
    assert [m.is_leader() for m in cluster.followers()] == [False, False]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fails_over_to_a_new_leader(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    old = cluster.leader()
    old.write(Put("k", "before"))
    cluster.stop(old.id)
    new = cluster.leader()
    assert new.id != old.id
    assert new.write(Put("k", "after")) == "after"
    assert new.read(Get("k")) == "after"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reads_committed_writes_on_every_member(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    cluster.leader().write(Put("key1", "value1"))
    assert [m.read(Get("key1")) for m in cluster.running()] == ["value1"] * 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forwards_writes_to_the_leader(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    follower = cluster.followers()[0]
    assert follower.write(Put("key1", "value1")) == "value1"
    assert [m.read(Get("key1")) for m in cluster.running()] == ["value1"] * 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_keeps_quorum_with_one_member_down(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    leader = cluster.leader()
    cluster.stop(cluster.followers()[0].id)
    assert leader.write(Put("key1", "value1")) == "value1"
    assert [m.read(Get("key1")) for m in cluster.running()] == ["value1"] * 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_loses_quorum_with_two_members_down_and_times_out(make_cluster, transport):
    """CKite bug 3: a write without quorum never returned. Here it raises within its timeout."""
    cluster = make_cluster(3, transport).start_all()
    leader = cluster.leader()
    for follower in cluster.followers():
        cluster.stop(follower.id)
    started = time.monotonic()
    with pytest.raises((WriteTimeoutError, LostLeadershipError, NotLeaderError, LeaderTimeoutError)):
        leader.write(Put("key1", "value1"), timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_a_write_async_future_without_quorum_fails_at_its_timeout(make_cluster):
    """The future handed out by write_async never waits forever either."""
    cluster = make_cluster(3, "local").start_all()
    leader = cluster.leader()
    for follower in cluster.followers():
        cluster.network.isolate(follower.id)
    started = time.monotonic()
    future = leader.write_async(Put("key1", "value1"), timeout=0.5)
    with pytest.raises((WriteTimeoutError, LostLeadershipError, NotLeaderError)):
        future.result(timeout=5)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_replicates_missing_entries_to_a_restarted_member(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    leader = cluster.leader()
    lagging = cluster.followers()[0].id
    cluster.stop(lagging)
    for i in range(50):
        leader.write(Put(f"key{i}", f"value{i}"))
    restarted = cluster.start(lagging)
    wait_for(lambda: restarted.read_local(Get("key49")) == "value49", 10, "the restarted member to catch up")
    assert restarted.read_local(Get("key0")) == "value0"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_member_restarted_with_an_empty_log_catches_up(make_cluster, transport):
    from ckite.log.memory_storage import MemoryStorage
    cluster = make_cluster(3, transport).start_all()
    leader = cluster.leader()
    leader.write(Put("key1", "value1"))
    lagging = cluster.followers()[0].id
    cluster.stop(lagging)
    restarted = cluster.start(lagging, storage=MemoryStorage())
    wait_for(lambda: restarted.read_local(Get("key1")) == "value1", 10, "the wiped member to catch up")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_overwrites_uncommitted_entries_of_an_old_leader(make_cluster, transport):
    cluster = make_cluster(3, transport).start_all()
    old = cluster.leader()
    followers = [m.id for m in cluster.followers()]
    for follower in followers:
        cluster.stop(follower)
    for value in ("lost1", "lost2"):
        with pytest.raises((WriteTimeoutError, LostLeadershipError, NotLeaderError, LeaderTimeoutError)):
            old.write(Put("key1", value), timeout=0.5)
    cluster.stop(old.id)
    for follower in followers:
        cluster.start(follower)
    new = cluster.leader()
    assert new.id != old.id
    new.write(Put("other", "x"))
    rejoined = cluster.start(old.id)
    cluster.leader()
    assert new.read(Get("key1")) is None
    wait_for(lambda: rejoined.read_local(Get("other")) == "x", 10, "the old leader to follow the new log")
    assert rejoined.read_local(Get("key1")) is None


def test_partitioned_old_leader_serves_no_stale_read(make_cluster):
    """CKite scenario: the old leader, cut off, must not answer a read with the old value."""
    cluster = make_cluster(3, "local").start_all()
    old = cluster.leader()
    old.write(Put("key1", "value1"))
    cluster.network.isolate(old.id)
    others = [m for m in cluster.running() if m is not old]
    new = cluster.leader(among=others)
    assert new.write(Put("key1", "value2")) == "value2"
    assert new.read(Get("key1")) == "value2"
    with pytest.raises((ReadTimeoutError, LostLeadershipError, NotLeaderError, LeaderTimeoutError)):
        old.read(Get("key1"), timeout=1.0)
    cluster.network.heal(old.id)
    assert old.read(Get("key1")) == "value2"


# --- leader lease reads (thesis §6.4.1) --------------------------------------------------------------


def count_read_index_rounds(member) -> list[int]:
    """Count the reads that take the ReadIndex path on ``member`` (a spy on its core)."""
    consensus = member._node.consensus
    calls = [0]
    request_read = consensus.request_read

    def counting():
        calls[0] += 1
        return request_read()
    consensus.request_read = counting
    return calls


def test_lease_reads_see_every_acknowledged_write_without_a_quorum_round(make_cluster):
    """With lease reads on, the leader answers reads from its lease on the caller's thread; every
    read, on the leader or forwarded by a follower, still sees every write acknowledged before it
    began. (Almost) none takes a ReadIndex round: only if the lease lapsed on a starved machine."""
    cluster = make_cluster(3, "local", lease_reads=True).start_all()
    leader = cluster.leader()
    leader.write(Put("k", "0"))
    wait_for(lambda: leader._node.consensus.lease_read_index() is not None, 5, "the leader to hold a lease")
    rounds = count_read_index_rounds(leader)
    acknowledged, stale, reads = [0], [], [0]
    done = threading.Event()

    def writer():
        try:
            for i in range(1, 81):
                leader.write(Put("k", str(i)))
                acknowledged[0] = i
        finally:
            done.set()

    def reader(member):
        while not done.is_set():
            before = acknowledged[0]
            seen = int(member.read(Get("k")))
            reads[0] += 1
            if seen < before:
                stale.append((member.id, before, seen))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(member,))
                                                     for member in cluster.running() for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not stale
    assert reads[0] > 100 and rounds[0] < reads[0] / 10, (reads[0], rounds[0])


def test_is_leader_answers_from_the_lease_without_a_round(make_cluster):
    cluster = make_cluster(3, "local", lease_reads=True).start_all()
    leader = cluster.leader()
    leader.write(Put("k", "v"))
    wait_for(lambda: leader._node.consensus.lease_read_index() is not None, 5, "the leader to hold a lease")
    rounds = count_read_index_rounds(leader)
    assert all(leader.is_leader(timeout=1.0) for _ in range(50))
    assert rounds[0] < 5, rounds   # a round only if the lease lapsed on a starved machine
    follower = cluster.followers()[0]
    assert not follower.is_leader(timeout=1.0)


def test_lease_reads_fall_back_to_read_index_once_a_transfer_revoked_the_lease(make_cluster):
    """A leader that sent TimeoutNow has no lease for the rest of its leadership, even when the
    transfer fails (the target may still win with transfer votes): reads then take ReadIndex."""
    cluster = make_cluster(3, "local", lease_reads=True).start_all()
    leader = cluster.leader()
    leader.write(Put("k", "v"))
    target = cluster.followers()[0]
    wait_for(lambda: target.read_local(Get("k")) == "v", 5, "the target to hold the whole log")
    assert leader._node.consensus.lease_read_index() is not None
    cluster.network.isolate(target.id)                     # TimeoutNow goes out, and is lost
    with pytest.raises(LeaderTimeoutError):
        leader.transfer_leadership(target.id, timeout=2.0)
    cluster.network.heal(target.id)
    assert cluster.leader() is leader
    rounds = count_read_index_rounds(leader)
    assert [leader.read(Get("k")) for _ in range(3)] == ["v"] * 3
    assert leader._node.consensus.lease_read_index() is None and rounds[0] == 3


def test_a_partitioned_leader_with_lease_reads_serves_no_stale_read(make_cluster):
    """The followers refuse votes for a minimum election timeout after they last heard from the
    leader; its lease ends before (90% of it), so the old leader stops reading from the lease
    before a new leader can exist, and its ReadIndex rounds cannot be confirmed."""
    cluster = make_cluster(3, "local", lease_reads=True).start_all()
    old = cluster.leader()
    old.write(Put("key1", "value1"))
    cluster.network.isolate(old.id)
    new = cluster.leader(among=[m for m in cluster.running() if m is not old])
    assert new.write(Put("key1", "value2")) == "value2"
    with pytest.raises((ReadTimeoutError, LostLeadershipError, NotLeaderError, LeaderTimeoutError)):
        old.read(Get("key1"), timeout=1.0)
    cluster.network.heal(old.id)
    assert old.read(Get("key1")) == "value2"


def test_rejoining_partitioned_member_does_not_disrupt_the_leader(make_cluster):
    """Pre-vote: a member that was cut off long enough to time out many times comes back
    without raising the term or deposing the healthy leader."""
    cluster = make_cluster(3, "local").start_all()
    leader = cluster.leader()
    loner = cluster.followers()[0]
    term = leader.status()["term"]
    cluster.network.isolate(loner.id)
    wait_for(lambda: loner.status()["state"] == "Candidate", 5, "the cut-off member to campaign")
    cluster.network.heal(loner.id)
    wait_for(lambda: loner.leader == leader.id, 5, "the member to follow the same leader again")
    assert leader.status()["term"] == term
    assert leader.is_leader()


def test_stop_leaves_no_threads_behind(make_cluster):
    cluster = make_cluster(3, "thrift").start_all()
    cluster.leader().write(Put("k", "v"))
    cluster.stop_all()
    wait_for(lambda: not [t.name for t in threading.enumerate() if t.name.startswith("ckite-")], 5,
             "every ckite thread to end")
