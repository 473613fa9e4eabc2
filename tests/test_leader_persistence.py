"""The leader writes its new entries to its disk while they are being replicated (thesis
§10.2.1): followers get them before the leader's own write finishes, nothing commits on the
leader's behalf until that write is done, and every later durable write waits for it."""
from __future__ import annotations

import threading

import pytest

from ckite.errors import StorageError
from ckite.log.entry import EntryKind
from ckite.log.guarded_storage import GuardedStorage
from ckite.log.memory_storage import MemoryStorage

from tests.test_raft_paper import leader_of_three


def stored_last_index(storage: MemoryStorage) -> int:
    entries = storage.load().entries
    return entries[-1].index if entries else 0


def test_followers_get_entries_before_the_leader_has_written_them_and_commit_waits_for_it():
    h = leader_of_three()
    n1 = h["n1"]
    first, _, unpersisted = n1.propose_unpersisted([(EntryKind.COMMAND, b"a"), (EntryKind.COMMAND, b"b")])
    assert [entry.index for entry in unpersisted] == [first, first + 1]
    assert stored_last_index(h.storages["n1"]) < first          # not on the leader's disk yet
    h.pump()                                               # both followers store and acknowledge them
    assert h["n2"].log.last_index == h["n3"].log.last_index == first + 1
    # A quorum of the *followers* holds them, yet the leader commits nothing it has not written.
    assert n1.commit_index < first
    n1.persist_proposed(unpersisted)
    assert stored_last_index(h.storages["n1"]) == first + 1
    assert n1.commit_index == first + 1


def test_a_write_decided_later_waits_for_the_reserved_write():
    """A vote decided after the leader reserved the storage reaches the disk after the entries."""
    order: list[str] = []
    release = threading.Event()

    class SlowAppends(MemoryStorage):
        def append(self, entries, truncate_from=None):
            release.wait(10)
            order.append("entries")
            super().append(entries, truncate_from)

        def save_term_and_vote(self, term, voted_for):
            order.append("vote")
            super().save_term_and_vote(term, voted_for)

    storage = GuardedStorage(SlowAppends(), on_failure=lambda error: None)
    storage.reserve()
    writer = threading.Thread(target=storage.append_reserved, args=([],))
    writer.start()
    voter = threading.Thread(target=storage.save_term_and_vote, args=(2, "n2"))
    voter.start()
    voter.join(0.2)
    assert voter.is_alive() and order == []    # the vote waits for the reserved write
    release.set()
    writer.join(5)
    voter.join(5)
    assert order == ["entries", "vote"]


def test_a_failed_reserved_write_frees_the_order_and_stops_every_later_write():
    reported: list[StorageError] = []

    class FullDisk(MemoryStorage):
        def append(self, entries, truncate_from=None):
            raise StorageError("disk full")

    storage = GuardedStorage(FullDisk(), on_failure=reported.append)
    storage.reserve()
    try:
        storage.append_reserved([])
    except StorageError:
        pass
    else:
        raise AssertionError("append_reserved swallowed the StorageError")
    # The order lock was released (this does not hang), and nothing more reaches the disk.
    with pytest.raises(StorageError, match="an earlier durable write failed: disk full"):
        storage.save_term_and_vote(1, None)
    assert storage.load().term == 0
    assert str(reported[0]) == "disk full"
