"""The log view keeps a bounded amount of entry data in memory: the data of older entries that
are applied and on disk is dropped past ``log_cache_bytes`` and read back from the storage (never
under the consensus lock) when a lagging follower needs them or the applier does after a restart."""
from __future__ import annotations

from ckite import CKiteBuilder
from ckite.log.entry import EntryKind, LogEntry, Unloaded, data_size, is_loaded
from ckite.log.memory_storage import MemoryStorage
from ckite.log.raft_log import RaftLog
from ckite.log.sqlite_storage import SQLiteStorage
from ckite.rpc.local import LocalNetwork
from tests.kv_example import Get, KVStore, Put
from tests.netutil import CONFIGURATION
from tests.waiting import wait_for


def kib_entries(first: int, last: int) -> list[LogEntry]:
    return [LogEntry(i, 1, bytes([i % 256]) * 1024) for i in range(first, last + 1)]


def test_applied_entries_lose_their_data_past_the_bound_and_get_it_back_from_the_storage():
    storage = MemoryStorage()
    log = RaftLog(lambda write: 0, read=storage.read_entries, cache_bytes=4 * 1024)
    entries = kib_entries(1, 10)
    storage.append(entries)
    log.append(entries)
    log.evict(through=6)                   # applied and durable up to 6: at most 4 KiB may stay
    assert [is_loaded(e) for e in log.slice(1, 11)] == [False] * 6 + [True] * 4
    assert all(data_size(e) == 1024 for e in log.slice(1, 11))
    assert len(log.batch_from(1, 100, 3 * 1024)) == 3   # sizes still count in batches
    assert log.load(log.slice(1, 11)) == entries          # read back, the view itself unchanged
    log.append(kib_entries(11, 12), truncate_from=11)   # the accounts survive a truncation
    log.evict(through=12)
    assert sum(len(e.data) for e in log.slice(1, 13)) <= 4 * 1024


def test_a_configuration_entry_keeps_its_data():
    storage = MemoryStorage()
    log = RaftLog(lambda write: 0, read=storage.read_entries, cache_bytes=0)
    entries = [LogEntry(1, 1, CONFIGURATION, EntryKind.CONFIGURATION), *kib_entries(2, 3)]
    log.append(entries)
    log.evict(through=3)
    assert [is_loaded(e) for e in log.slice(1, 4)] == [True, False, False]


def test_a_large_log_is_not_read_into_memory_whole_when_the_storage_opens(tmp_path):
    storage = SQLiteStorage(tmp_path / "ckite.db")
    storage.append([LogEntry(1, 1, CONFIGURATION, EntryKind.CONFIGURATION), *kib_entries(2, 100)])
    storage.close()
    storage = SQLiteStorage(tmp_path / "ckite.db")
    entries = storage.load(data_bytes=10 * 1024).entries
    loaded = [e.index for e in entries if is_loaded(e)]
    assert loaded == [1, *range(91, 101)]              # the configuration, and the newest 10 KiB
    assert all(type(e.data) is Unloaded and e.data.size == 1024 for e in entries if not is_loaded(e))
    assert storage.read_entries(2, 3) == kib_entries(2, 3)
    storage.close()


def test_a_follower_far_behind_catches_up_from_a_leader_that_reads_its_old_entries_back(tmp_path):
    network = LocalNetwork()
    bindings = [f"localhost:{9291 + i}" for i in range(3)]

    def member(binding: str):
        return (CKiteBuilder().with_local_binding(binding).with_members_bindings([b for b in bindings if b != binding])
                .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
                .with_data_dir(tmp_path / binding).with_transport(network.transport(binding))
                .with_compaction_threshold(0).with_log_cache_bytes(8 * 1024)
                .with_state_machine(KVStore()).without_admin().build())
    members = {binding: member(binding) for binding in bindings}
    for started in members.values():
        started.start()
    try:
        leader = wait_for(lambda: next((m for m in members.values() if m.status()["state"] == "Leader"), None), 10,
                          "a leader")
        lagging = next(b for b in bindings if b != leader.id)
        members.pop(lagging).stop()
        for i in range(200):
            leader.write(Put(f"key{i}", "v" * 1024))
        assert leader.status()["log"]["length"] > 200   # nothing compacted: the catch-up is from the log
        members[lagging] = member(lagging)
        members[lagging].start()
        wait_for(lambda: members[lagging].read_local(Get("key199")) == "v" * 1024, 20, "the catch-up")
        assert all(members[lagging].read_local(Get(f"key{i}")) == "v" * 1024 for i in range(200))
    finally:
        for running in members.values():
            running.stop()
