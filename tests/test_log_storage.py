"""The durable stores behind the log: MemoryStorage and SQLiteStorage.

Figure 2 of the Raft paper: currentTerm, votedFor and log[] are persistent state, "updated on
stable storage before responding to RPCs". The contract tests run on both storages; the crash,
corruption and full-disk tests are SQLite's own (crashes are real: a child process that ends
with ``os._exit`` in the middle of, or right after, a write).
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlite_utils

from ckite.errors import StorageError
from ckite.log.entry import EntryKind, LogEntry
from ckite.log.memory_storage import MemoryStorage
from ckite.log.snapshot import Snapshot
from ckite.log.sqlite_storage import SCHEMA_VERSION, VACUUM_STEP_BYTES, WAL_SIZE_LIMIT, SQLiteStorage
from ckite.log.storage import LogStorage, StoredState

REPO_ROOT = Path(__file__).resolve().parents[1]


def entries(first: int, last: int, term: int = 1, size: int = 8) -> list[LogEntry]:
    """Entries ``first..last`` of ``term``; the data names the entry, the kinds cycle through all."""
    return [LogEntry(index, term, f"{term}:{index}".encode().ljust(size, b"."), EntryKind(index % len(EntryKind)))
            for index in range(first, last + 1)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ckite.db"   # "data" does not exist yet: opening creates it


@pytest.fixture
def open_sqlite(db_path: Path) -> Iterator[Callable[[], SQLiteStorage]]:
    """Opens a SQLiteStorage on ``db_path``; each call after a close() is a restart."""
    opened: list[SQLiteStorage] = []

    def open_storage() -> SQLiteStorage:
        opened.append(SQLiteStorage(db_path))
        return opened[-1]

    yield open_storage
    for storage in opened:
        storage.close()


@pytest.fixture(params=["memory", "sqlite"])
def open_storage(request: pytest.FixtureRequest,
                 open_sqlite: Callable[[], SQLiteStorage]) -> Callable[[], LogStorage]:
    """Opens the storage under test; calling it again after close() reopens the same data
    (for MemoryStorage: the same object, as the simulation does when it restarts a member)."""
    if request.param == "sqlite":
        return open_sqlite
    memory = MemoryStorage()
    return lambda: memory


# --- the contract, on both storages --------------------------------------------------------------

def test_a_new_storage_is_empty(open_storage):
    assert open_storage().load() == StoredState(0, None, [])


def test_appended_entries_are_loaded_in_index_order_with_their_kinds(open_storage):
    storage = open_storage()
    storage.append(entries(1, 3))
    storage.append(entries(4, 7, term=2))
    assert storage.load().entries == entries(1, 3) + entries(4, 7, term=2)
    assert {entry.kind for entry in storage.load().entries} == set(EntryKind)


def test_append_with_truncate_from_replaces_the_conflicting_suffix(open_storage):
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it" — and in the same durable write."""
    storage = open_storage()
    storage.append(entries(1, 6))
    storage.append(entries(4, 5, term=2), truncate_from=4)
    assert storage.load().entries == entries(1, 3) + entries(4, 5, term=2)
    storage.append([], truncate_from=2)   # a truncation alone
    assert storage.load().entries == entries(1, 1)


def test_truncate_from_beyond_the_end_is_harmless(open_storage):
    storage = open_storage()
    storage.append(entries(1, 3))
    storage.append(entries(4, 5), truncate_from=9)
    storage.append([], truncate_from=6)
    assert storage.load().entries == entries(1, 5)


@pytest.mark.parametrize("batch, truncate_from", [
    pytest.param(entries(5, 6), None, id="gap-after-the-log"),
    pytest.param(entries(3, 4), None, id="overlap-without-truncation"),
    pytest.param(entries(4, 4) + entries(6, 6), None, id="gap-inside-the-batch"),
    pytest.param(entries(4, 4) + entries(4, 4), None, id="repeat-inside-the-batch"),
    pytest.param(entries(3, 4), 2, id="gap-after-the-truncation"),
    pytest.param(entries(1, 1), 0, id="truncating-the-sentinel"),
])
def test_an_append_that_does_not_continue_the_log_raises_and_changes_nothing(open_storage, batch,
                                                                             truncate_from):
    storage = open_storage()
    storage.append(entries(1, 3))
    with pytest.raises(ValueError):
        storage.append(batch, truncate_from)
    assert storage.load().entries == entries(1, 3)
    storage.append(entries(4, 4))   # the storage still knows where its log ends
    assert storage.load().entries == entries(1, 4)


def test_term_and_vote_survive_a_restart_including_no_vote(open_storage):
    """Figure 2: currentTerm and votedFor are persistent; a new term starts without a vote."""
    storage = open_storage()
    storage.save_term_and_vote(4, "n2")
    assert (storage.load().term, storage.load().voted_for) == (4, "n2")
    storage.save_term_and_vote(5, None)
    storage.append(entries(1, 2, term=5))
    storage.close()
    reopened = open_storage()
    assert reopened.load() == StoredState(5, None, entries(1, 2, term=5))
    reopened.save_term_and_vote(5, "1")   # a member id that looks like a number stays a string
    reopened.append(entries(3, 3, term=5))
    assert reopened.load() == StoredState(5, "1", entries(1, 3, term=5))


def test_a_snapshot_replaces_the_log_prefix_it_covers(open_storage):
    storage = open_storage()
    storage.append(entries(1, 10))
    snapshot = Snapshot(6, 1, b"cfg", 5, 0x1234)
    storage.save_snapshot(snapshot, discard_through=4)   # a trailing part of the prefix is kept
    assert open_storage().load() == StoredState(0, None, entries(5, 10), [snapshot])
    storage.append(entries(11, 12))
    assert [e.index for e in open_storage().load().entries] == list(range(5, 13))


def test_an_installed_snapshot_may_discard_the_whole_log_and_the_log_continues_after_it(open_storage):
    """A follower installing a leader's snapshot past its own log keeps no entry at all."""
    storage = open_storage()
    storage.append(entries(1, 3))
    snapshot = Snapshot(20, 4, b"cfg", 5, 0x1234)
    storage.save_snapshot(snapshot, discard_through=20)
    storage.append(entries(21, 22, term=4))
    with pytest.raises(ValueError, match="continue"):
        storage.append(entries(4, 4))
    assert open_storage().load() == StoredState(0, None, entries(21, 22, term=4), [snapshot])


def test_the_newest_two_snapshots_are_kept_newest_first(open_storage):
    """The previous snapshot is what a damaged newest one falls back on; older ones go."""
    storage = open_storage()
    storage.append(entries(1, 10))
    oldest, older, newest = Snapshot(3, 1, b"a", 3, 1), Snapshot(5, 1, b"b", 5, 2), Snapshot(8, 1, b"c", 8, 3)
    for snapshot in (oldest, older, newest):
        storage.save_snapshot(snapshot, discard_through=snapshot.last_index)
    assert open_storage().load() == StoredState(0, None, entries(9, 10), [newest, older])


def test_load_returns_a_copy_that_callers_may_mutate(open_storage):
    storage = open_storage()
    storage.append(entries(1, 2))
    storage.load().entries.clear()
    assert storage.load().entries == entries(1, 2)


# --- SQLite: durability across real crashes ------------------------------------------------------

#: Runs in a child process; ends with os._exit, so nothing is closed or flushed on the way out.
CRASHING_CHILD = """
import os, sys
from ckite.log.sqlite_storage import SQLiteStorage
from tests.test_log_storage import CRASH_POINT_WRITES, entries

mode, path, write = sys.argv[1], sys.argv[2], sys.argv[3]
storage = SQLiteStorage(path)
if mode == "acknowledged":
    storage.append(entries(1, 50))
    storage.save_term_and_vote(3, "n2")
    os._exit(0)
conn = storage._db.conn
conn.execute("PRAGMA cache_size = 1")   # spill uncommitted pages into the WAL before the crash
if mode == "before-commit":
    conn.set_trace_callback(lambda sql: os._exit(0) if sql == "COMMIT" else None)
elif mode != "after-return":
    calls = iter(range(int(mode)))   # crash at the N-th progress callback (every 10 VM steps)
    conn.set_progress_handler(lambda: 0 if next(calls, None) is not None else os._exit(0), 10)
CRASH_POINT_WRITES[write](storage)
os._exit(0 if mode == "after-return" else 1)   # 1: the append completed before the crash point
"""

OLD_LOG = entries(1, 200, size=512)


def new_suffix_after_crash_point(storage: LogStorage) -> None:
    """A write the child crashes in: replace entries 101..200 by 101..300 of term 2."""
    storage.append(entries(101, 300, term=2, size=512), truncate_from=101)


SNAPSHOT = Snapshot(150, 1, b"configuration", 512 * 1024, 0xCAFE)   # the deleted prefix spans many pages


def compaction_after_crash_point(storage: LogStorage) -> None:
    """A write the child crashes in: store a snapshot at 150 and delete the log up to 150."""
    storage.save_snapshot(SNAPSHOT, discard_through=150)


CRASH_POINT_WRITES = {"append": new_suffix_after_crash_point, "snapshot": compaction_after_crash_point}


def run_crashing_child(mode: str, path: Path, write: str = "append") -> int:
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, mode, str(path), write], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert "Traceback" not in child.stderr, child.stderr
    return child.returncode


def test_acknowledged_entries_and_vote_survive_a_crash(db_path, open_sqlite):
    """Figure 2: state is on stable storage "before responding": a crash right after the calls
    returned (no close, no WAL checkpoint) loses nothing."""
    assert run_crashing_child("acknowledged", db_path) == 0
    assert Path(f"{db_path}-wal").exists()   # the data is only in the WAL: recovery is tested
    assert open_sqlite().load() == StoredState(3, "n2", entries(1, 50))


@pytest.mark.parametrize("mode", ["1", "100", "250", "before-commit", "after-return"])
def test_a_crash_during_a_truncating_append_leaves_the_old_log_or_the_new_one(db_path, open_sqlite,
                                                                               mode):
    """The truncation and the new entries are one transaction: a crash leaves either log, never
    a truncated log without the new entries nor a mix. Crash points: after N progress callbacks
    (with uncommitted pages already spilled into the WAL), at COMMIT, after the call returned."""
    storage = open_sqlite()
    storage.append(OLD_LOG)
    storage.close()
    assert run_crashing_child(mode, db_path) == 0, "the child finished its append before the crash"
    reopened = open_sqlite()
    loaded = reopened.load().entries
    new_log = OLD_LOG[:100] + entries(101, 300, term=2, size=512)
    assert loaded in (OLD_LOG, new_log)
    assert loaded == {"before-commit": OLD_LOG, "after-return": new_log}.get(mode, loaded)
    reopened.append(entries(len(loaded) + 1, len(loaded) + 1, term=3))   # it knows where the log ends
    assert reopened.load().entries[-1].index == len(loaded) + 1


@pytest.mark.parametrize("mode", ["1", "75", *map(str, random.Random(7).sample(range(2, 75), 6)),
                                  "before-commit", "after-return"])
def test_a_crash_during_compaction_leaves_the_old_snapshot_and_log_or_the_new_ones(db_path, open_sqlite,
                                                                                  mode):
    """The snapshot row and the deletion of the prefix it covers are one transaction. The write
    takes ~79 progress callbacks here: crash points cover it, at a seeded random sample."""
    storage = open_sqlite()
    storage.append(OLD_LOG)
    storage.close()
    assert run_crashing_child(mode, db_path, "snapshot") == 0, "the child finished before the crash"
    reopened = open_sqlite()
    loaded = reopened.load()
    old, new = (OLD_LOG, []), (OLD_LOG[150:], [SNAPSHOT])
    assert (loaded.entries, loaded.snapshots) in (old, new)
    assert (loaded.entries, loaded.snapshots) == {"before-commit": old, "after-return": new}.get(
        mode, (loaded.entries, loaded.snapshots))
    reopened.append(entries(201, 201, term=3))   # the log still ends at 200 either way
    assert reopened.load().entries[-1].index == 201


# --- SQLite: failures become StorageError --------------------------------------------------------

def test_a_file_that_is_not_a_database_is_refused_with_its_path(db_path, open_sqlite):
    storage = open_sqlite()
    storage.append(entries(1, 10))
    storage.close()
    db_path.write_bytes(b"not a database, " * (db_path.stat().st_size // 16))
    with pytest.raises(StorageError, match=re.escape(str(db_path))):
        open_sqlite()


def test_a_database_with_a_damaged_page_is_refused_with_its_path(db_path, open_sqlite):
    storage = open_sqlite()
    storage.append(entries(1, 400, size=200))
    storage.close()
    page_size = 4096   # SQLite's default
    pages = db_path.stat().st_size // page_size
    assert pages > 10
    with db_path.open("r+b") as file:
        file.seek(pages // 2 * page_size)
        file.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    with pytest.raises(StorageError, match=re.escape(str(db_path))):
        open_sqlite()


def test_a_database_from_a_newer_schema_version_is_refused(db_path, open_sqlite):
    open_sqlite().close()
    with sqlite_utils.Database(db_path) as db:
        db["meta"].upsert({"key": "schema_version", "value": SCHEMA_VERSION + 1}, pk="key")
    with pytest.raises(StorageError, match="newer"):
        open_sqlite()


def test_a_version_2_database_is_upgraded_its_snapshot_moved_into_a_file_and_the_file_shrinks(db_path, open_sqlite):
    """Schema 2 kept the latest snapshot's state in the database; schema 3 moves it into the
    snapshot store, keeps the metadata, and switches the file to incremental auto-vacuum."""
    state = bytes(range(256)) * 4096   # 1 MiB
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite_utils.Database(db_path) as db:
        db["log"].create({"idx": int, "term": int, "kind": int, "data": bytes}, pk="idx")
        db["meta"].create({"key": str, "value": bytes}, pk="key")
        db.execute("CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), last_index INTEGER NOT NULL, "
                   "last_term INTEGER NOT NULL, configuration BLOB NOT NULL, data BLOB NOT NULL)")
        db.execute("INSERT INTO snapshot VALUES (1, 7, 2, ?, ?)", (b"cfg", state))
        db["log"].insert_all({"idx": i, "term": 2, "kind": 0, "data": b"x"} for i in range(8, 11))
        db["meta"].upsert_all([{"key": "schema_version", "value": 2}, {"key": "term", "value": 2}], pk="key")
    storage = open_sqlite()
    loaded = storage.load()
    [snapshot] = loaded.snapshots
    assert ((snapshot.last_index, snapshot.last_term, snapshot.configuration, snapshot.size)
            == (7, 2, b"cfg", len(state)))
    assert storage.snapshots.verify(snapshot) and storage.snapshots.open(snapshot).read() == state
    assert [e.index for e in loaded.entries] == [8, 9, 10] and loaded.term == 2
    with sqlite_utils.Database(db_path) as db:
        assert "snapshot" not in db.table_names() and db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    storage.close()
    assert db_path.stat().st_size < len(state) / 4   # the state left the database file


def test_compaction_gives_the_deleted_pages_back_to_the_file_system(open_sqlite, db_path):
    storage = open_sqlite()
    storage.append(entries(1, 2000, size=1024))
    storage.close()
    grown = db_path.stat().st_size
    storage = open_sqlite()
    storage.save_snapshot(Snapshot(1990, 1, b"cfg", 1, 1), discard_through=1990)
    storage.close()   # checkpoints the WAL into the file
    assert db_path.stat().st_size < grown / 4


def _wal_bytes(db_path: Path) -> int:
    wal = Path(f"{db_path}-wal")
    return wal.stat().st_size if wal.exists() else 0


BIG = 64 * 1024   # an entry of 16 overflow pages: what a compaction frees and moves is visible in the WAL


def test_compactions_that_keep_the_previous_snapshots_log_write_no_freed_or_moved_page_to_the_wal(open_sqlite,
                                                                                                   db_path):
    """Threshold 100, the log kept from the previous snapshot on: each compaction frees about as
    many pages as the file keeps in use, and the next 100 entries take them again. Giving them
    back would move the retained log (at the end of the file) into the holes, and a
    secure_delete build of SQLite (Debian's) would zero each freed page: either writes the
    whole retained log through the WAL (measured before: 6.4 MiB of WAL for 6.25 MiB of log)."""
    storage = open_sqlite()
    wal_sizes, file_sizes, previous = [], [], 0
    for index in range(1, 701):
        storage.append([LogEntry(index, 1, bytes(BIG))])
        if index % 100 == 0:
            discard_through = min(index - 50, previous) if previous else index - 50
            storage.save_snapshot(Snapshot(index, 1, b"cfg", 1, 1), discard_through)
            previous = index
        wal_sizes.append(_wal_bytes(db_path))
        file_sizes.append(db_path.stat().st_size)
    assert max(wal_sizes) <= WAL_SIZE_LIMIT + BIG, max(wal_sizes)
    longest_log = 200 * BIG   # from the previous snapshot to the next one
    assert max(file_sizes) <= 1.05 * longest_log, max(file_sizes)   # freed pages were taken again


def test_a_compaction_that_leaves_more_pages_free_than_used_gives_the_surplus_back_in_bounded_steps(open_sqlite,
                                                                                                     db_path):
    """300 entries compacted down to 100: the 200 entries' pages freed, 100 kept free for the
    entries to come, 100 given back, which moves the retained entries into the holes: a step of
    VACUUM_STEP_BYTES at a time, each checkpointed, so the WAL stays at its limit (it grew to
    11 MiB in one transaction before)."""
    storage = open_sqlite()
    for first in range(1, 301, 10):
        storage.append([LogEntry(index, 1, bytes(BIG)) for index in range(first, first + 10)])
    storage.save_snapshot(Snapshot(300, 1, b"cfg", 1, 1), discard_through=200)
    assert _wal_bytes(db_path) <= WAL_SIZE_LIMIT + VACUUM_STEP_BYTES, _wal_bytes(db_path)
    storage.close()
    assert db_path.stat().st_size <= 2.1 * 100 * BIG   # as many pages free as used, no more


def test_a_compaction_leaves_the_wal_empty(open_sqlite, db_path):
    """The data dir peaks right after a compaction (two snapshots and the log between them): the
    WAL is checkpointed and truncated then, not left at up to a checkpoint interval beside them."""
    storage = open_sqlite()
    storage.append([LogEntry(index, 1, bytes(BIG)) for index in range(1, 41)])
    assert _wal_bytes(db_path) > 0
    storage.save_snapshot(Snapshot(40, 1, b"cfg", 1, 1), discard_through=20)
    assert _wal_bytes(db_path) == 0
    storage.append([LogEntry(41, 1, b"after")])   # and it goes on
    assert storage.load().entries[-1].index == 41


def test_a_full_disk_fails_the_append_and_leaves_log_and_storage_usable(open_sqlite):
    storage = open_sqlite()
    storage.append(entries(1, 10))
    # The test's way to fill the disk: cap the database at the pages it has now.
    conn = storage._db.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(StorageError, match=re.escape(str(storage.path)) + ".*full"):
        storage.append(entries(5, 60, term=2, size=4096), truncate_from=5)
    assert storage.load().entries == entries(1, 10)   # the truncation was rolled back too
    with pytest.raises(ValueError):
        storage.append(entries(61, 61))              # the cached last index did not move
    conn.execute("PRAGMA max_page_count = 1073741823")   # space freed
    storage.append(entries(11, 11))
    assert storage.load().entries == entries(1, 11)


def test_a_closed_storage_refuses_calls_and_closes_idempotently(open_sqlite):
    storage = open_sqlite()
    storage.close()
    storage.close()
    for call in (storage.load, lambda: storage.append(entries(1, 1)),
                 lambda: storage.save_term_and_vote(1, None)):
        with pytest.raises(StorageError, match="closed"):
            call()


# --- SQLite: what an operator sees ---------------------------------------------------------------

def test_an_operator_reads_the_log_and_meta_of_a_running_member_with_sqlite_utils(db_path, open_sqlite):
    storage = open_sqlite()
    storage.append(entries(1, 3))
    storage.save_term_and_vote(2, "n1")
    db = sqlite_utils.Database(db_path)
    assert list(db["log"].rows) == [{"idx": e.index, "term": e.term, "kind": int(e.kind), "data": e.data}
                                    for e in entries(1, 3)]
    assert {row["key"]: row["value"] for row in db["meta"].rows} == {
        "schema_version": SCHEMA_VERSION, "term": 2, "voted_for": "n1"}
    db.close()
