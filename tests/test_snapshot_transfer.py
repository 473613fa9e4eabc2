"""InstallSnapshot streamed through files (§7): the follower gathers the chunks in a temporary
file, in order, checks the whole against the leader's size and CRC-32, and only then installs;
an interrupted transfer resumes from what the follower holds, or starts over cleanly."""
from __future__ import annotations

import zlib

import pytest

from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_receiver import SnapshotReceiver
from ckite.log.snapshot_store import FileSnapshotStore, MemorySnapshotStore
from ckite.messages import InstallSnapshot
from tests.netutil import CONFIGURATION

STATE = bytes(range(256)) * 40   # 10 KiB
CHUNK = 4096


def chunk(offset: int, state: bytes = STATE, index: int = 100, checksum: int | None = None) -> InstallSnapshot:
    data = state[offset:offset + CHUNK]
    return InstallSnapshot(3, "leader:1", index, 2, CONFIGURATION, offset, data, offset + len(data) >= len(state),
                           len(state), zlib.crc32(state) if checksum is None else checksum)


@pytest.fixture(params=["memory", "files"])
def store(request, tmp_path):
    return MemorySnapshotStore() if request.param == "memory" else FileSnapshotStore(tmp_path / "snapshots")


def test_chunks_in_order_make_a_whole_verified_snapshot(store):
    receiver = SnapshotReceiver(store, lambda: None)
    assert receiver.deliver(chunk(0)) == (True, CHUNK, None)
    assert receiver.deliver(chunk(CHUNK)) == (True, 2 * CHUNK, None)
    accepted, offset, snapshot = receiver.deliver(chunk(2 * CHUNK))
    assert accepted and offset == len(STATE) and snapshot is not None
    assert store.verify(snapshot) and store.open(snapshot).read() == STATE


def test_a_lost_or_repeated_chunk_is_refused_with_the_offset_to_resume_from(store):
    receiver = SnapshotReceiver(store, lambda: None)
    receiver.deliver(chunk(0))
    assert receiver.deliver(chunk(2 * CHUNK)) == (False, CHUNK, None)     # chunk 1 was lost: resend it
    assert receiver.deliver(chunk(0)) == (False, CHUNK, None)             # a late first chunk wipes nothing
    assert receiver.deliver(chunk(CHUNK)) == (True, 2 * CHUNK, None)
    assert receiver.deliver(chunk(2 * CHUNK))[2] is not None


def test_chunks_of_another_snapshot_start_over_and_a_damaged_state_is_never_installed(store):
    receiver = SnapshotReceiver(store, lambda: None)
    receiver.deliver(chunk(0))
    assert receiver.deliver(chunk(CHUNK, index=200)) == (False, 0, None)   # a newer leader's snapshot: from 0
    damaged = chunk(0, checksum=0xBAD)
    assert receiver.deliver(damaged) == (True, CHUNK, None)
    receiver.deliver(chunk(CHUNK, checksum=0xBAD))
    assert receiver.deliver(chunk(2 * CHUNK, checksum=0xBAD)) == (False, 0, None)   # the leader must send it again
    bad = Snapshot(100, 2, CONFIGURATION, len(STATE), 0xBAD)
    assert not store.verify(bad)


def test_a_restart_drops_a_transfer_cut_short_and_the_leader_starts_over(tmp_path):
    store = FileSnapshotStore(tmp_path / "snapshots")
    receiver = SnapshotReceiver(store, lambda: None)
    receiver.deliver(chunk(0))
    assert list((tmp_path / "snapshots").glob("*.partial"))
    restarted = FileSnapshotStore(tmp_path / "snapshots")
    assert not list((tmp_path / "snapshots").glob("*.partial"))
    receiver = SnapshotReceiver(restarted, lambda: None)
    assert receiver.deliver(chunk(CHUNK)) == (False, 0, None)   # nothing of it here: from the start


def test_receiving_keeps_only_the_current_snapshot_beside_the_new_one(store):
    """Disk stays within two states: older snapshots go when a new one starts arriving."""
    states = {}
    for index in (10, 20):
        writer = store.create(index, 1, CONFIGURATION)
        writer.file.write(b"old" * index)
        states[index] = writer.commit()
    receiver = SnapshotReceiver(store, lambda: states[20])
    receiver.deliver(chunk(0))
    assert store.verify(states[20]) and not store.verify(states[10])
