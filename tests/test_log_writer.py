"""Durable writes leave the consensus lock: the core queues them in the log writer, and the
threads that need them flush them in the order decided (group commit, no thread of its own).
The leader writes its new entries to its disk while they are being replicated (thesis §10.2.1):
followers get them before the leader's own write finishes, and nothing commits on the leader's
behalf until that write is done."""
from __future__ import annotations

import threading

import pytest

from ckite.errors import StorageError
from ckite.log.entry import EntryKind, LogEntry
from ckite.log.log_writer import LogWriter
from ckite.log.memory_storage import MemoryStorage
from ckite.log.storage import DurableWrite
from tests.test_raft_paper import leader_of_three
from tests.waiting import wait_for


def stored_last_index(storage: MemoryStorage) -> int:
    entries = storage.load().entries
    return entries[-1].index if entries else 0


class Gate:
    """Makes a storage's writes wait until :meth:`open` (when closed), recording each batch."""

    def __init__(self, storage: MemoryStorage, closed: bool = True) -> None:
        self.storage = storage
        self._open = threading.Event()
        if not closed:
            self._open.set()
        self.writing = threading.Event()
        self.written: list[list[DurableWrite]] = []
        write = storage.write

        def gated_write(writes):
            self.writing.set()
            assert self._open.wait(10), "the test never opened the gate"
            write(writes)
            self.written.append(list(writes))
        storage.write = gated_write   # the instance's write: what the log writer calls

    def open(self) -> None:
        self._open.set()


def test_followers_get_entries_before_the_leader_has_written_them_and_commit_waits_for_it():
    h = leader_of_three()
    n1 = h["n1"]
    gate = Gate(h.storages["n1"])   # the leader's next write waits at the gate
    proposing = threading.Thread(target=n1.propose, args=([(EntryKind.COMMAND, b"a"), (EntryKind.COMMAND, b"b")],))
    proposing.start()
    try:
        assert gate.writing.wait(10)                          # the proposer holds no lock while it writes
        first = n1.log.last_index - 1
        h.pump()                                               # both followers store and acknowledge them
        assert h["n2"].log.last_index == h["n3"].log.last_index == first + 1
        # A quorum of the *followers* holds them, yet the leader commits nothing it has not written.
        assert n1.commit_index < first and n1.status()["log"]["durableIndex"] < first
    finally:
        gate.open()
        proposing.join(10)
    assert stored_last_index(gate.storage) == first + 1
    assert n1.commit_index == first + 1


def test_writes_reach_the_disk_in_the_order_they_were_queued_whichever_thread_flushes():
    gate = Gate(MemoryStorage())
    writer = LogWriter(gate.storage, on_durable=lambda writes, seconds: None, on_failure=lambda error: None)
    entries = writer.enqueue(DurableWrite(entries=[LogEntry(1, 1, b"x")]))
    first = threading.Thread(target=writer.flush, args=(entries,))
    first.start()
    assert gate.writing.wait(10)
    vote = writer.enqueue(DurableWrite(hard_state=(2, "n2")))   # decided while the entries are being written
    second = threading.Thread(target=writer.flush, args=(vote,))
    second.start()
    second.join(0.2)
    assert second.is_alive() and writer.durable_seq == 0   # it waits for the write in progress
    gate.open()
    first.join(10)
    second.join(10)
    assert [[w.entries and "entries" or "vote" for w in batch] for batch in gate.written] == [["entries"], ["vote"]]
    assert writer.durable_seq == 2 and gate.storage.load().term == 2


def test_one_flush_writes_everything_queued_in_one_call():
    gate = Gate(MemoryStorage(), closed=False)
    writer = LogWriter(gate.storage, on_durable=lambda writes, seconds: None, on_failure=lambda error: None)
    for term in range(1, 6):
        writer.enqueue(DurableWrite(hard_state=(term, None)))
    writer.flush(3)
    assert len(gate.written) == 1 and len(gate.written[0]) == 5 and writer.durable_seq == 5
    writer.flush(5)   # already durable: nothing more is written
    assert len(gate.written) == 1


def test_a_failed_write_fails_every_waiter_and_stops_every_later_write():
    reported: list[StorageError] = []

    class FullDisk(MemoryStorage):
        def write(self, writes):
            raise StorageError("disk full")

    storage = FullDisk()
    writer = LogWriter(storage, on_durable=lambda writes, seconds: None, on_failure=reported.append)
    with pytest.raises(StorageError, match="disk full"):
        writer.flush(writer.enqueue(DurableWrite(hard_state=(1, None))))
    # Nothing more reaches the disk, and every later flush says why.
    with pytest.raises(StorageError, match="an earlier durable write failed: disk full"):
        writer.flush(writer.enqueue(DurableWrite(hard_state=(2, None))))
    assert storage.load().term == 0 and [str(error) for error in reported] == ["disk full"]
    writer.flush(0)   # what was durable before the failure stays durable: no error


def test_the_leader_answers_status_while_its_own_write_waits_on_the_disk():
    """Nothing waits on the disk under the consensus lock: a status (or any step) goes on."""
    h = leader_of_three()
    n1 = h["n1"]
    gate = Gate(h.storages["n1"])
    proposing = threading.Thread(target=n1.propose, args=([(EntryKind.COMMAND, b"a")],))
    proposing.start()
    try:
        assert gate.writing.wait(10)
        assert n1.status()["state"] == "Leader"              # the lock is free
        wait_for(lambda: n1.next_request("n2") is not None, 5, "the leader to send the entry it is writing")
    finally:
        gate.open()
        proposing.join(10)
