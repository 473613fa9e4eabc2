"""Followers whose disks stall keep their leader: heartbeats reach them on a lane of their own.

Without the lane, a heartbeat queued behind entries a follower is still writing reaches it
only after them, and the leader hears nothing back meanwhile. When a majority's disks stall for
longer than an election timeout (members sharing one disk while one of them fsyncs a large
snapshot), check-quorum then deposes a leader with nothing wrong but slow disks.
"""
from __future__ import annotations

import threading

import pytest

from ckite.log.memory_storage import MemoryStorage
from tests.cluster_fixture import MAX_ELECTION_MS, TestCluster
from tests.kv_example import Get, Put
from tests.waiting import wait_for

STALL_SECONDS = 4 * MAX_ELECTION_MS / 1000


class StallingStorage(MemoryStorage):
    """A log storage whose writes of entries can be held up, as by a disk busy with something else."""

    def __init__(self) -> None:
        super().__init__()
        self.stalling = threading.Event()
        self.released = threading.Event()
        self.held = threading.Event()

    def write(self, writes) -> None:
        if self.stalling.is_set() and any(write.entries for write in writes):
            self.held.set()
            self.released.wait(STALL_SECONDS * 2)
        super().write(writes)


@pytest.mark.parametrize("transport", ["local", "thrift"])
def test_followers_whose_disks_stall_keep_their_leader(transport):
    cluster = TestCluster(transport, 3)
    storages = {binding: StallingStorage() for binding in cluster.bindings}
    cluster.storages.update(storages)
    try:
        cluster.start_all()
        leader = cluster.leader()
        leader.write(Put("before", "1"))
        term = leader.status()["term"]
        followers = [storages[member.id] for member in cluster.running() if member is not leader]
        for storage in followers:
            storage.stalling.set()
        pending = leader.write_async(Put("during", "2"))   # commits only once a follower's disk wakes
        wait_for(lambda: all(storage.held.is_set() for storage in followers), 5,
                 "both followers' disks to hold up the write")
        stall_ends = threading.Event()
        threading.Timer(STALL_SECONDS, stall_ends.set).start()
        while not stall_ends.is_set():   # the whole stall: the leader must stay, nobody campaigns
            statuses = [member.status() for member in cluster.running()]
            assert [s["term"] for s in statuses] == [term] * 3, "an election ran during the stall"
            assert leader.is_leader()
            stall_ends.wait(0.05)
        for storage in followers:
            storage.stalling.clear()
            storage.released.set()
        assert pending.result(10) == "2"
        for member in cluster.running():
            wait_for(lambda member=member: member.read_local(Get("during")) == "2", 10,
                     f"{member.id} to apply the write")
            assert member.status()["term"] == term
            assert member.status()["metrics"]["elections"] == 0 or member is leader
    finally:
        for storage in storages.values():
            storage.released.set()
        cluster.stop_all()
