"""A member whose storage fails stops acknowledging: full or read-only disk, corrupt database
file, corrupt snapshot. It says why (status "Failed" with the reason, StorageError to its
callers, a one-line error from the CLI), and the rest of the cluster goes on without it."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from ckite import CKiteBuilder
from ckite.consensus.membership import Configuration
from ckite.errors import CKiteError, StorageError
from ckite.log.memory_storage import MemoryStorage
from ckite.log.snapshot import Snapshot
from ckite.log.sqlite_storage import SQLiteStorage
from ckite.rpc.local import LocalNetwork
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, KVStore, Put
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def break_disk(storage: SQLiteStorage, how: str) -> None:
    """Make every later write of ``storage`` fail as the disk named by ``how`` would."""
    conn = storage._db.conn
    if how == "full":
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")   # SQLITE_FULL: "database or disk is full"
    else:
        conn.execute("PRAGMA query_only = ON")            # "attempt to write a readonly database"


@pytest.fixture
def cluster():
    made: list[TestCluster] = []

    def make() -> TestCluster:
        built = TestCluster("local", 3)
        made.append(built)
        return built
    yield make
    for built in made:
        built.stop_all()


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_leader_whose_disk_fails_acknowledges_nothing_more_and_the_others_go_on(cluster, tmp_path, how):
    cluster = cluster()
    for binding in cluster.bindings:
        cluster.storages[binding] = SQLiteStorage(tmp_path / binding / "ckite.db")
    cluster.start_all()
    leader = cluster.leader()
    acknowledged = [leader.write(Put(f"key{i}", "v")) for i in range(5)]
    assert len(acknowledged) == 5
    # Fill the pages the schema has room for, so the very next append needs a new page.
    break_disk(cluster.storages[leader.id], how)
    failures = 0
    for i in range(200):
        try:
            leader.write(Put(f"big{i}", "x" * 4000), timeout=2)
        except CKiteError:
            failures += 1
            break
    assert failures == 1, "a write kept succeeding on a broken disk"
    wait_for(lambda: leader.status()["state"] == "Failed", 10, "the leader to take itself out of service")
    reason = leader.status()["stateInfo"]["failure"]
    assert "full" in reason or "readonly" in reason, reason
    with pytest.raises(StorageError):
        leader.write(Put("after", "failure"), timeout=1)
    others = [m for m in cluster.running() if m.id != leader.id]
    new_leader = cluster.leader(among=others)
    assert new_leader.write(Put("after", "failure")) == "failure"
    assert all(new_leader.read(Get(f"key{i}")) == "v" for i in range(5))


def test_a_snapshot_that_cannot_be_restored_takes_the_member_out_of_service(tmp_path):
    storage = MemoryStorage()
    state = b"\xc1 not msgpack"   # whole (its checksum matches), but not a state the machine can read
    snapshot = Snapshot(5, 1, Configuration.of(["localhost:9391"]).encode(), len(state), zlib.crc32(state))
    storage.snapshots.put(snapshot, state)
    storage.save_snapshot(snapshot, 5)
    member = (CKiteBuilder().with_local_binding("localhost:9391").with_storage(storage)
              .with_transport(LocalNetwork().transport("localhost:9391")).with_state_machine(KVStore())
              .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
              .without_admin().build())
    member.start()
    try:
        wait_for(lambda: member.status()["state"] == "Failed", 10, "the member to refuse its snapshot")
        assert "snapshot at index 5 cannot be restored" in member.status()["stateInfo"]["failure"]
        with pytest.raises(StorageError):
            member.write(Put("k", "v"), timeout=1)
    finally:
        member.stop()


def test_a_corrupt_database_file_stops_the_cli_with_a_one_line_error(tmp_path):
    data_dir = tmp_path / "member"
    data_dir.mkdir()
    (data_dir / "ckite.db").write_bytes(b"this is not a SQLite database" * 100)
    done = subprocess.run([sys.executable, "-m", "kvstore", "--port", "9491", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ckite.db" in lines[0] and ("not a database" in lines[0] or "corrupt" in lines[0]), \
        done.stderr
