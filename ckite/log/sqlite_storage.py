"""The default :class:`~ckite.log.storage.LogStorage`: one SQLite file, ``<data_dir>/ckite.db``.

Schema (created and migrated with sqlite-utils, so an operator can read the log with
``sqlite-utils rows ckite.db log``):

- ``log(idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL)``
- ``meta(key TEXT PRIMARY KEY, value)``: rows ``schema_version``, ``term`` and ``voted_for``.
- ``snapshots(last_index INTEGER PRIMARY KEY, last_term, configuration BLOB, size, checksum)``: the
  metadata of the newest two snapshots (schema version 3); their states are files in
  ``snapshots/`` beside the database (:class:`~ckite.log.snapshot_store.FileSnapshotStore`).

Compaction records the new snapshot's metadata and deletes the log prefix it covers in one
transaction, so a crash at any moment leaves the old snapshots and log or the new ones. The
database uses incremental auto-vacuum: after a compaction, the free pages beyond as many as
the file still uses go back to the file system, a few MiB per transaction, so the file follows
the retained log, not the history. The pages kept free are taken by the entries that come
before the next compaction: giving them back would mean moving the newest entries, which sit
at the end of the file, into the holes (writing the retained log through the WAL again, for
nothing: it grows back to the same size). The WAL is truncated back to ``journal_size_limit``
after checkpoints.

Durability: WAL journal with ``synchronous=FULL``, so each commit fsyncs the WAL and a
method returns only once its transaction survives a crash or a power cut (Figure 2: term,
vote and log are "updated on stable storage before responding to RPCs"). Every failure of
SQLite (disk full, read-only file system, corrupt file) surfaces as
:class:`~ckite.errors.StorageError` naming the file, and the member stops serving.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlite_utils import Database

from ckite.errors import StorageError
from ckite.log.entry import EntryKind, LogEntry, Unloaded
from ckite.log.memory_storage import check_append
from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_store import FileSnapshotStore, SnapshotStore
from ckite.log.storage import DurableWrite, LogStorage, StoredState

logger = logging.getLogger(__name__)


def _create_log_and_meta(db: Database, snapshots: SnapshotStore) -> None:
    """Schema version 1. ``value`` is declared BLOB, which in SQLite means "no affinity": the
    term stays an INTEGER and a vote a TEXT (a member id like "1" must not turn into 1)."""
    db.table("log").create({"idx": int, "term": int, "kind": int, "data": bytes}, pk="idx",
                          not_null={"term", "kind", "data"}, if_not_exists=True)
    db.table("meta").create({"key": str, "value": bytes}, pk="key", if_not_exists=True)


def _create_snapshot(db: Database, snapshots: SnapshotStore) -> None:
    """Schema version 2: one row holding the latest snapshot, its state included."""
    db.execute("CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "last_index INTEGER NOT NULL, last_term INTEGER NOT NULL, configuration BLOB NOT NULL, "
               "data BLOB NOT NULL)")


def _snapshots_in_files(db: Database, snapshots: SnapshotStore) -> None:
    """Schema version 3: the state of a snapshot lives in a file of the snapshot store; the
    database keeps the metadata of the latest two (the newest, and the one to fall back on if
    the newest is found damaged). Version 2's snapshot row is moved into a file."""
    db.execute("CREATE TABLE IF NOT EXISTS snapshots (last_index INTEGER PRIMARY KEY, last_term INTEGER NOT NULL, "
               "configuration BLOB NOT NULL, size INTEGER NOT NULL, checksum INTEGER NOT NULL)")
    if "snapshot" not in db.table_names():
        return
    row = db.execute("SELECT last_index, last_term, configuration, data FROM snapshot").fetchone()
    if row is not None:
        last_index, last_term, configuration, data = row
        writer = snapshots.create(last_index, last_term, bytes(configuration))
        writer.file.write(data)
        snapshot = writer.commit()
        db.execute(_INSERT_SNAPSHOT, (snapshot.last_index, snapshot.last_term, snapshot.configuration,
                                      snapshot.size, snapshot.checksum))
    db.execute("DROP TABLE snapshot")


#: Migration ``n`` (1-based) brings a database from schema version ``n - 1`` to ``n``. Each
#: must be idempotent (``if_not_exists``): the version row is written after all of them, so an
#: interrupted upgrade simply runs again.
_MIGRATIONS: tuple[Callable[[Database, SnapshotStore], None], ...] = (
    _create_log_and_meta, _create_snapshot, _snapshots_in_files)

#: Snapshots whose metadata the database keeps: the newest, and the previous one to fall back on.
SNAPSHOTS_KEPT = 2
#: The snapshot store's directory, beside the database file.
SNAPSHOT_DIRECTORY = "snapshots"

#: Bytes the WAL file is cut back to after a checkpoint (a big snapshot grows it for a moment).
#: SQLite checkpoints every 1000 pages (~4 MiB), so in steady state the WAL stays near this.
WAL_SIZE_LIMIT = 4 * 1024 * 1024
#: At most this many bytes of pages are given back per transaction after a compaction, so
#: moving pages grows the WAL by about as much as a checkpoint interval, and a write waiting
#: for the storage lock waits for one such step, not for the whole file to shrink.
VACUUM_STEP_BYTES = WAL_SIZE_LIMIT
SCHEMA_VERSION = len(_MIGRATIONS)


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on the raw connection: committed (and, with synchronous=FULL,
    fsynced) when the block ends, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:   # SQLite may have rolled back already (e.g. on a full disk)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


_INSERT_ENTRY = "INSERT INTO log (idx, term, kind, data) VALUES (?, ?, ?, ?)"
_INSERT_SNAPSHOT = ("INSERT OR REPLACE INTO snapshots (last_index, last_term, configuration, size, checksum) "
                    "VALUES (?, ?, ?, ?, ?)")
_SET_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


def _append(conn: sqlite3.Connection, last_index: int, entries: Sequence[LogEntry], truncate_from: int | None) -> int:
    """Truncate and insert inside the caller's transaction; returns the new last index."""
    kept = check_append(last_index, entries, truncate_from)
    if kept < last_index:
        conn.execute("DELETE FROM log WHERE idx > ?", (kept,))
    # Raw executemany, not sqlite-utils' insert_all: on 100-entry batches (100-byte entries, one
    # transaction each) it stored ~255k rows/s against ~160k with synchronous=FULL, and ~570k
    # against ~260k without the fsync.
    conn.executemany(_INSERT_ENTRY, [(e.index, e.term, int(e.kind), e.data) for e in entries])
    return kept + len(entries)


def _first_within(rows: Sequence[tuple[int, int, int, int]], data_bytes: int | None) -> int:
    """The first index of the newest entries whose data (rows of idx, term, kind, length) fits
    in ``data_bytes`` (all of them: None)."""
    if data_bytes is None or not rows:
        return 0
    total = 0
    for idx, _, _, size in reversed(rows):
        total += size
        if total > data_bytes:
            return idx + 1
    return rows[0][0]


def _vacuum(conn: sqlite3.Connection, pages: int | None = None) -> None:
    """Give ``pages`` free pages (all of them: None) back to the file system (incremental
    auto-vacuum: pages in use beyond the new end of the file are moved into free ones, through
    the WAL). Through ``executescript``: a plain ``execute`` of the pragma frees one page per
    step, and stops."""
    if pages is not None and pages <= 0:
        return   # incremental_vacuum(0) would give back every free page
    conn.executescript("PRAGMA incremental_vacuum;" if pages is None else f"PRAGMA incremental_vacuum({int(pages)});")


def _surplus_pages(conn: sqlite3.Connection) -> int:
    """Free pages beyond as many as the file uses: what a compaction gives back."""
    pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
    free: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return max(0, free - (pages - free))


def _store_snapshot(conn: sqlite3.Connection, snapshot: Snapshot, discard_through: int) -> int:
    """Record the snapshot's metadata (keeping the newest SNAPSHOTS_KEPT) and delete the log
    prefix up to ``discard_through``; returns the new last index."""
    conn.execute(_INSERT_SNAPSHOT, (snapshot.last_index, snapshot.last_term, snapshot.configuration, snapshot.size,
                                    snapshot.checksum))
    conn.execute("DELETE FROM snapshots WHERE last_index NOT IN "
                 "(SELECT last_index FROM snapshots ORDER BY last_index DESC LIMIT ?)", (SNAPSHOTS_KEPT,))
    conn.execute("DELETE FROM log WHERE idx <= ?", (discard_through,))
    row = conn.execute("SELECT max(idx) FROM log").fetchone()
    return max(row[0] or 0, snapshot.last_index)


class SQLiteStorage(LogStorage):
    """Term, vote and log of one member in a SQLite database at ``path``.

    Opening creates the parent directories and the schema, upgrades an older schema, and
    refuses (StorageError) a file that fails ``PRAGMA quick_check`` or that a newer ckite
    wrote. The quick check reads the whole file: opening a large log takes a moment, which
    is better than serving from a corrupt one.

    Thread-safety: one connection (``check_same_thread=False``) guarded by a lock of this
    object. Callers also hold the consensus lock, so that lock is uncontended; it exists so
    that the storage is safe on its own (e.g. a test reading while a member runs).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None   # read_entries' own connection, opened when first needed
        with self._errors("open"):
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{self._path}: cannot create its directory: {exc}") from exc
            self.snapshots = FileSnapshotStore(self._path.parent / SNAPSHOT_DIRECTORY)
            conn = sqlite3.connect(self._path, check_same_thread=False)
            try:
                db = Database(conn)
                self._check_integrity(db)
                self._give_space_back(db)
                db.enable_wal()
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA fullfsync=ON")   # macOS: fsync alone does not reach the platter
                db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
                # Debian's and Ubuntu's SQLite are built with secure_delete on: every page a
                # compaction frees would be zeroed through the WAL (the whole deleted prefix
                # written again). FAST zeroes only within pages it writes anyway.
                db.execute("PRAGMA secure_delete=FAST")
                self._migrate(db)
                row = conn.execute("SELECT max(coalesce(max(idx), 0), "
                                   "coalesce((SELECT max(last_index) FROM snapshots), 0)) FROM log").fetchone()
            except BaseException:
                conn.close()
                raise
        self._db = db
        #: Index of the last stored entry (0: empty log); changed only after a commit succeeded,
        #: so a failed write leaves it matching the file.
        self._last_index: int = row[0] or 0
        logger.debug("opened %s (last index %d)", self._path, self._last_index)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # --- LogStorage -----------------------------------------------------------------------------

    def load(self, data_bytes: int | None = None) -> StoredState:
        """Term, vote, snapshots and log. With ``data_bytes``, only the newest entries' data up to
        that many bytes (and every configuration's) is read; the others come back
        :class:`~ckite.log.entry.Unloaded`, for :meth:`read_entries` to fetch when needed: a
        large log is not read into memory whole when a member starts."""
        with self._lock, self._errors("load"):
            conn = self._connection()
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('term', 'voted_for')"))
            rows = conn.execute("SELECT idx, term, kind, length(data) FROM log ORDER BY idx").fetchall()
            first_loaded = _first_within(rows, data_bytes)
            data = dict(conn.execute("SELECT idx, data FROM log WHERE idx >= ? OR kind = ?",
                                     (first_loaded, int(EntryKind.CONFIGURATION))))
            snapshot_rows = conn.execute("SELECT last_index, last_term, configuration, size, checksum FROM snapshots "
                                         "ORDER BY last_index DESC").fetchall()
        try:
            entries = [LogEntry(idx, term, bytes(data[idx]) if idx in data else Unloaded(size), EntryKind(kind))
                       for idx, term, kind, size in rows]
        except ValueError as exc:   # an unknown kind: written by a newer ckite, or tampered with
            raise StorageError(f"{self._path}: unreadable log entry: {exc}") from exc
        snapshots = [Snapshot(index, term, bytes(configuration), size, checksum)
                     for index, term, configuration, size, checksum in snapshot_rows]
        return StoredState(meta.get("term", 0), meta.get("voted_for"), entries, snapshots)

    def read_entries(self, first: int, last: int) -> list[LogEntry]:
        """Entries ``first..last`` with their data, on a connection of their own: a reader never
        waits for the writer (WAL), nor the writer for it."""
        with self._read_lock, self._errors("read entries"):
            if self._reader is None:
                self._reader = sqlite3.connect(self._path, check_same_thread=False)
            rows = self._reader.execute("SELECT idx, term, kind, data FROM log WHERE idx BETWEEN ? AND ? ORDER BY idx",
                                        (first, last)).fetchall()
        return [LogEntry(idx, term, bytes(data), EntryKind(kind)) for idx, term, kind, data in rows]

    def save_term_and_vote(self, term: int, voted_for: str | None) -> None:
        self.write([DurableWrite(hard_state=(term, voted_for))])

    def append(self, entries: Sequence[LogEntry], truncate_from: int | None = None) -> None:
        self.write([DurableWrite(truncate_from=truncate_from, entries=entries)])

    def save_snapshot(self, snapshot: Snapshot, discard_through: int) -> None:
        self.write([DurableWrite(snapshot=snapshot, discard_through=discard_through)])

    def write(self, writes: Sequence[DurableWrite]) -> None:
        """The whole batch in one transaction: a single fsync however many decisions it holds
        (group commit), and a crash leaves the log as it was before the batch or after it."""
        with self._lock:
            last = self._last_index
            compacted = False
            with self._transaction("write") as conn:
                for write in writes:
                    if write.hard_state is not None:
                        conn.executemany(_SET_META, (("term", write.hard_state[0]), ("voted_for", write.hard_state[1])))
                    if write.entries or write.truncate_from is not None:
                        last = _append(conn, last, write.entries, write.truncate_from)
                    if write.snapshot is not None:
                        last = _store_snapshot(conn, write.snapshot, write.discard_through)
                        compacted = True
            self._last_index = last
        if compacted:
            self._give_surplus_back()

    def close(self) -> None:
        """Close the connection (checkpointing the WAL into the file); idempotent."""
        with self._read_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                with self._errors("close"):
                    db.close()

    # --- internals ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"{self._path}: storage is closed")
        return self._db.conn

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn any sqlite3 error into a StorageError that says which file and what failed."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: {action} failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction for ``action``; the caller holds ``self._lock``."""
        with self._errors(action), _write_transaction(self._connection()) as conn:
            yield conn

    def _give_surplus_back(self) -> None:
        """After a compaction: the free pages beyond as many as the file uses go back to the file
        system, one transaction of VACUUM_STEP_BYTES at a time, the lock released in between
        (appends go on); then the WAL is checkpointed and emptied, so that the moment the data
        dir holds two snapshots and the log between them it does not also hold a WAL of up to
        a checkpoint interval (WAL_SIZE_LIMIT)."""
        before = None
        while True:
            with self._lock, self._errors("give space back"):
                if self._db is None:
                    return   # closed meanwhile
                conn = self._connection()
                surplus = _surplus_pages(conn)
                if surplus == 0 or (before is not None and surplus >= before):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    return   # done (or a step that gave nothing back: never loop on it)
                step = max(1, VACUUM_STEP_BYTES // conn.execute("PRAGMA page_size").fetchone()[0])
                _vacuum(conn, min(surplus, step))
                before = surplus

    def _give_space_back(self, db: Database) -> None:
        """Incremental auto-vacuum, so that compaction shrinks the file. A new database gets it at
        once; an older one is rebuilt once (VACUUM) to switch."""
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            logger.info("%s: switching to incremental auto-vacuum (a one-time rebuild of the file)", self._path)
            db.execute("VACUUM")

    def _check_integrity(self, db: Database) -> None:
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StorageError(f"{self._path}: corrupt database (quick_check: {'; '.join(problems[:5])})")

    def _migrate(self, db: Database) -> None:
        version = 0
        if db["meta"].exists():
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise StorageError(f"{self._path}: schema version {version} is newer than this ckite "
                               f"supports ({SCHEMA_VERSION}); upgrade ckite")
        if version == SCHEMA_VERSION:
            return
        with _write_transaction(db.conn) as conn:
            for migration in _MIGRATIONS[version:]:
                migration(db, self.snapshots)
            conn.execute(_SET_META, ("schema_version", SCHEMA_VERSION))
        _vacuum(db.conn)   # what an upgrade moved out of the database (a snapshot's state) leaves the file
        logger.info("%s: schema upgraded from version %d to %d", self._path, version, SCHEMA_VERSION)
