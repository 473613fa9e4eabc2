"""Log compaction and snapshots on real members (threads, SQLite, both transports).

CKite's scenarios (compact, restart, read every key back; restore the configuration from a
snapshot) plus catch-up of a lagging or wiped follower through InstallSnapshot, and a
bounded data dir under a long write load. Crashes in the middle of writing a snapshot are
tested on the storage itself (tests/test_log_storage.py); lost chunks in the simulation
(tests/test_simulation.py).
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ckite import CKiteBuilder
from ckite.consensus.settings import RaftSettings
from ckite.errors import StorageError
from ckite.log.memory_storage import MemoryStorage
from ckite.rpc.local import LocalNetwork
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, KVStore, Put
from tests.waiting import wait_for

THRESHOLD = 20


def single_member(data_dir: Path, binding: str = "localhost:9191", others: tuple[str, ...] = (),
                  threshold: int = THRESHOLD):
    return (CKiteBuilder().with_local_binding(binding).with_members_bindings(list(others))
            .with_data_dir(data_dir).with_compaction_threshold(threshold)
            .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
            .with_transport(LocalNetwork().transport(binding)).with_state_machine(KVStore())
            .without_admin().build())


def snapshot_index(member) -> int:
    snapshot = member.status()["log"]["snapshot"]
    return snapshot["index"] if snapshot else 0


def test_a_compacted_member_restarts_from_its_snapshot_and_reads_every_key_back(tmp_path):
    member = single_member(tmp_path)
    member.start()
    for i in range(3 * THRESHOLD + 5):
        member.write(Put(f"key{i}", f"value{i}"))
    wait_for(lambda: snapshot_index(member) >= 2 * THRESHOLD, 10, "two compactions")
    assert member.status()["log"]["firstIndex"] > THRESHOLD   # the covered prefix is gone
    member.stop()
    restarted = single_member(tmp_path)
    restarted.start()
    try:
        wait_for(restarted.is_leader, 10, "the restarted member to lead")
        assert [restarted.read(Get(f"key{i}")) for i in range(3 * THRESHOLD + 5)] == \
            [f"value{i}" for i in range(3 * THRESHOLD + 5)]
    finally:
        restarted.stop()


def test_the_configuration_is_restored_from_the_snapshot_not_from_the_builder(tmp_path):
    """CKite scenario: the cluster's configuration lives in the log and its snapshots; members
    given to the builder only seed a brand-new cluster."""
    member = single_member(tmp_path, threshold=5)
    member.start()
    for i in range(12):
        member.write(Put(f"key{i}", "v"))
    wait_for(lambda: snapshot_index(member) >= 5, 10, "a compaction")
    member.stop()
    restarted = single_member(tmp_path, others=("localhost:9192", "localhost:9193"), threshold=5)
    restarted.start()
    try:
        assert restarted.members == {"localhost:9191"}
        assert restarted.is_leader(timeout=10)   # alone in its configuration: no votes to wait for
        assert restarted.read(Get("key11")) == "v"
    finally:
        restarted.stop()


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_newest_snapshot_file_is_found_at_start_and_the_previous_one_is_used(tmp_path, damage):
    """A snapshot file torn (cut short) or with a flipped byte is caught by its size and CRC-32
    when the member opens its data dir; it falls back on the previous snapshot and the log kept
    since, and still reads every key back; never a partial state."""
    member = single_member(tmp_path)
    member.start()
    keys = 3 * THRESHOLD + 5
    for i in range(keys):
        member.write(Put(f"key{i}", f"value{i}"))
    wait_for(lambda: len(list((tmp_path / "snapshots").glob("*.snap"))) == 2, 10, "two snapshot files")
    member.stop()
    previous, newest = sorted((tmp_path / "snapshots").glob("*.snap"))   # named by index, zero-padded
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2] if damage == "torn" else data[:-1] + bytes([data[-1] ^ 1]))
    restarted = single_member(tmp_path)
    assert snapshot_index(restarted) == int(previous.name.split("-")[0])   # before it starts and compacts again
    restarted.start()
    try:
        wait_for(restarted.is_leader, 10, "the restarted member to lead")
        assert [restarted.read(Get(f"key{i}")) for i in range(keys)] == [f"value{i}" for i in range(keys)]
    finally:
        restarted.stop()


def test_a_member_whose_every_snapshot_is_damaged_refuses_to_start(tmp_path):
    member = single_member(tmp_path)
    member.start()
    for i in range(THRESHOLD + 5):
        member.write(Put(f"key{i}", "v"))
    wait_for(lambda: snapshot_index(member) > 0, 10, "a snapshot")
    member.stop()
    for path in (tmp_path / "snapshots").glob("*.snap"):
        path.write_bytes(b"")
    with pytest.raises(StorageError, match="no whole snapshot left"):
        single_member(tmp_path)


@pytest.fixture
def cluster():
    made: list[TestCluster] = []

    def make(transport: str) -> TestCluster:
        built = TestCluster(transport, 3, compaction_threshold=THRESHOLD)
        made.append(built)
        return built.start_all()
    yield make
    for built in made:
        built.stop_all()


@pytest.mark.parametrize("transport", ["local", "thrift"])
@pytest.mark.parametrize("wiped", [False, True], ids=["with-its-data", "with-an-empty-data-dir"])
def test_a_follower_that_missed_compacted_entries_catches_up_through_install_snapshot(cluster, transport, wiped):
    cluster = cluster(transport)
    leader = cluster.leader()
    lagging = cluster.followers()[0].id
    cluster.stop(lagging)
    futures = [leader.write_async(Put(f"key{i}", f"value{i}")) for i in range(10 * THRESHOLD)]
    for future in futures:
        future.result(timeout=10)
    wait_for(lambda: leader.status()["log"]["firstIndex"] > THRESHOLD, 10, "the leader to compact")
    # The writes need not be in the log in the order issued (the first ones wait for the leader's
    # session to open), so "caught up" is: applied what the leader had applied once they all returned.
    applied = leader.status()["log"]["lastApplied"]
    restarted = cluster.start(lagging, storage=MemoryStorage() if wiped else None)
    wait_for(lambda: restarted.status()["log"]["lastApplied"] >= applied, 15, "the lagging follower to catch up")
    assert restarted.status()["metrics"]["snapshotsInstalled"] >= 1
    assert cluster.state_machines[lagging].data == cluster.state_machines[leader.id].data
    leader.write(Put("after", "snapshot"))   # and it goes on with AppendEntries from there
    wait_for(lambda: restarted.read_local(Get("after")) == "snapshot", 10, "replication after the snapshot")


def test_a_snapshot_larger_than_a_chunk_is_sent_in_chunks(cluster):
    cluster = cluster("thrift")
    leader = cluster.leader()
    lagging = cluster.followers()[0].id
    cluster.stop(lagging)
    big = "x" * 100_000
    for future in [leader.write_async(Put(f"key{i}", big)) for i in range(3 * THRESHOLD)]:
        future.result(timeout=10)
    wait_for(lambda: snapshot_index(leader) >= THRESHOLD, 10, "the leader to compact")
    restarted = cluster.start(lagging, storage=MemoryStorage())
    wait_for(lambda: restarted.read_local(Get(f"key{3 * THRESHOLD - 1}")) == big, 20, "the catch-up")
    assert leader.status()["log"]["snapshot"]["bytes"] > 2 * RaftSettings().snapshot_chunk_bytes


def test_the_data_dir_stays_bounded_under_an_endless_write_load(tmp_path):
    """50k writes over 100 keys with threshold 1000. The log is kept from the previous snapshot
    on (what a damaged newest snapshot falls back on), so it holds up to two thresholds (plus
    jitter) of entries. Measured here: the database file stays under ~360 KiB throughout
    (without compaction it grows by ~52 KiB per 1000 writes, to 2.6 MB), at most two snapshot
    files exist, and the WAL beside it stays at SQLite's ~4 MiB checkpoint size."""
    member = single_member(tmp_path, threshold=1000)
    member.start()
    database_sizes, total_sizes, snapshot_files = [], [], []
    try:
        wait_for(member.is_leader, 10, "the member to lead")
        for start in range(0, 50_000, 1000):
            for future in [member.write_async(Put(f"key{i % 100}", f"value{i:08d}"))
                           for i in range(start, start + 1000)]:
                future.result(timeout=20)
            database_sizes.append((tmp_path / "ckite.db").stat().st_size)
            total_sizes.append(sum(map(_size, tmp_path.rglob("*"))))
            snapshot_files.append(len(list((tmp_path / "snapshots").glob("*.snap"))))
        wait_for(lambda: snapshot_index(member) >= 50_000 - (1000 + 250), 10, "the last compaction")   # with its jitter
        # From the previous snapshot on: two thresholds with their jitter, more when writes came faster than
        # the snapshot was written (the next one waits for it), but a bound all the same.
        assert member.status()["log"]["length"] <= 4 * (1000 + 250)
    finally:
        member.stop()
    assert max(database_sizes) < 512 * 1024, database_sizes
    assert max(total_sizes) < 5 * 1024 * 1024, total_sizes
    assert max(snapshot_files) <= 2, snapshot_files


def _size(path: Path) -> int:
    """The size of a file still there (the compactor deletes old snapshots as it goes)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0


class GatedKVStore(KVStore):
    """Its snapshots wait for ``gate``: the compactor stays busy while writes go on."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def prepare_snapshot(self):
        data = self.serialize()

        def produce() -> bytes:
            self.gate.wait(10)
            return data
        return produce


def test_a_snapshot_skipped_while_the_compactor_was_busy_is_taken_once_writes_stop(tmp_path):
    """The applier prepares a snapshot only when the compactor is free; one that came due while
    the previous was still being written must not wait for a write that may never come."""
    store = GatedKVStore()
    member = (CKiteBuilder().with_local_binding("localhost:9191").with_data_dir(tmp_path)
              .with_compaction_threshold(THRESHOLD).with_transport(LocalNetwork().transport("localhost:9191"))
              .with_state_machine(store).without_admin().build())
    member.start()
    try:
        wait_for(member.is_leader, 10, "the member to lead")
        for i in range(4 * THRESHOLD):   # the first snapshot blocks; the others come due meanwhile
            member.write(Put(f"key{i}", "v"))
        store.gate.set()
        applied = member.status()["log"]["lastApplied"]
        wait_for(lambda: applied - snapshot_index(member) < THRESHOLD + THRESHOLD // 4 + 1, 10,
                 "a snapshot within one threshold (and its jitter) of the last write")
    finally:
        member.stop()
