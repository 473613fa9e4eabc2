"""The systems under test: one adapter per library and configuration, run inside a member process.

Every adapter offers the same operations on a replicated key-value map, so that the load
generator (``benchmarks.load``) and the runner are one piece of code for all of them:

- ``write(key, value, timeout)``: a replicated write; returns once it is committed and applied.
- ``write_async(key, value, done, timeout)``: submit a write; ``done(ok, failure)`` is called once, from
  whichever thread the library completes it on.
- ``read(key, timeout)``: the library's linearizable read, or its closest equivalent.
- ``is_leader()``, ``stop()``.
- ``term()``: this member's current Raft term; the runner compares it before and after each row,
  so that a row during which the cluster held elections (a failover under load) says so.

The table of systems (``SYSTEMS``) is read by the parent, which never builds a member itself.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: ``done(ok, failure)``: ``failure`` names the error when ``ok`` is False.
Done = Callable[[bool, "str | None"], None]


@dataclass(frozen=True)
class SystemSpec:
    """What the report says about a system: its library, configuration and durability."""

    name: str
    family: str          # "ckite" or "pysyncobj": the side of the comparison
    config: str          # one line: the configuration, as the table labels it
    fsync: bool          # does an acknowledged write survive a power cut on this machine?
    durability: str      # what is on disk when a write is acknowledged
    read_path: str       # what the "linearizable reads" row measures for this system
    default: bool = True  # part of a run without --systems
    rows: tuple[str, ...] | None = None   # the rows it runs (None: all); a variant runs only what it changes
    lease_reads: bool = False             # ckite: CKiteBuilder.with_lease_reads()
    tls: bool = False                     # ckite: mutual TLS between members (certificates in CERTS_DIR)
    client_sessions: bool = True          # ckite: False is CKiteBuilder.without_client_sessions()
    session_writes: bool = False          # ckite: asynchronous writes through one CKite.session()


#: Issue 14's large-state scenario compacts the log every this many entries: kvstore's
#: ``--compaction-threshold`` and PySyncObj's ``logCompactionMinEntries`` (``pysyncobj-compaction``).
COMPACTION_ENTRIES = 100

#: Where a TLS system's members find their certificates, next to their data dirs (the runner
#: makes them with scripts/make-certs before it starts the members).
CERTS_DIR = "certs"
#: The one certificate every member of a TLS system presents.
CERT_NAME = "member"


SYSTEMS: dict[str, SystemSpec] = {spec.name: spec for spec in (
    SystemSpec("ckite", "ckite", "default (SQLite WAL, synchronous=FULL)", True,
               "entries fsynced (SQLite WAL, synchronous=FULL) before a member acknowledges them",
               "read(): ReadIndex, one batched quorum round for all waiting reads, no log entry"),
    SystemSpec("ckite-nofsync", "ckite", "SQLite synchronous=OFF (labelled: fsync off)", False,
               "entries written to SQLite (page cache) but never fsynced, like PySyncObj's journal",
               "read(): ReadIndex, as above"),
    SystemSpec("ckite-lease", "ckite", "default + with_lease_reads() (reads only: writes are ckite's)", True,
               "entries fsynced (SQLite WAL, synchronous=FULL) before a member acknowledges them",
               "read(): leader lease (thesis 6.4.1), answered on the caller's thread, no quorum round",
               rows=("linearizable_read", "linearizable_read_every_member"), lease_reads=True),
    SystemSpec("ckite-tls", "ckite", "default + with_tls() (mutual TLS between members)", True,
               "entries fsynced (SQLite WAL, synchronous=FULL) before a member acknowledges them",
               "read(): ReadIndex, as above, its rounds over TLS", default=False,
               rows=("sequential_write", "concurrent_write_16B", "concurrent_write_1KiB", "linearizable_read",
                     "linearizable_read_every_member"),
               tls=True),
    SystemSpec("ckite-nosessions", "ckite", "default + without_client_sessions() (writes only: what sessions cost)",
               True, "entries fsynced (SQLite WAL, synchronous=FULL) before a member acknowledges them",
               "read(): ReadIndex, as above",
               rows=("sequential_write", "concurrent_write_16B", "concurrent_write_16B_threads"),
               client_sessions=False),
    SystemSpec("ckite-session", "ckite", "default, writes through a client session (exactly-once retries)",
               True, "entries fsynced (SQLite WAL, synchronous=FULL) before a member acknowledges them",
               "read(): ReadIndex, as above", rows=("concurrent_write_16B",), session_writes=True),
    SystemSpec("pysyncobj", "pysyncobj", "default SyncObjConf (in-memory journal, 100 ms batching)", False,
               "nothing on disk: MemoryJournal; PySyncObj never fsyncs in any configuration",
               "@replicated get(sync=True): the read goes through the log (no ReadIndex in PySyncObj)"),
    SystemSpec("pysyncobj-nobatch", "pysyncobj", "tuned: appendEntriesUseBatch=False (latency mode)", False,
               "nothing on disk: MemoryJournal", "@replicated get(sync=True)"),
    SystemSpec("pysyncobj-journal", "pysyncobj", "tuned: appendEntriesUseBatch=False + journalFile", False,
               "mmap'ed journal file and a .meta file for term and vote, never fsynced (survives a process "
               "crash, not a power cut)",
               "@replicated get(sync=True)", default=False),
    SystemSpec("pysyncobj-compaction", "pysyncobj",
               f"tuned + journalFile + fullDumpFile, log compacted past {COMPACTION_ENTRIES} entries", False,
               "mmap'ed journal, and at every compaction a full dump file written by a forked child; never "
               "fsynced", "@replicated get(sync=True)", default=False),
)}


def create(name: str, binding: str, peers: list[str], data_dir: Path) -> CKiteSystem | PySyncObjSystem:
    """Build (not start) the member of system ``name`` listening on ``binding``."""
    spec = SYSTEMS[name]
    if spec.family == "ckite":
        return CKiteSystem(binding, peers, data_dir, fsync=spec.fsync, lease_reads=spec.lease_reads,
                           tls_dir=data_dir.parent / CERTS_DIR if spec.tls else None,
                           client_sessions=spec.client_sessions, session_writes=spec.session_writes)
    conf: dict[str, Any] = {}
    if name in ("pysyncobj-nobatch", "pysyncobj-journal", "pysyncobj-compaction"):
        conf["appendEntriesUseBatch"] = False
    if name in ("pysyncobj-journal", "pysyncobj-compaction"):
        data_dir.mkdir(parents=True, exist_ok=True)
        conf["journalFile"] = str(data_dir / "journal.bin")
    if name == "pysyncobj-compaction":
        conf["fullDumpFile"] = str(data_dir / "dump.bin")
        conf["logCompactionMinEntries"] = COMPACTION_ENTRIES
    return PySyncObjSystem(binding, peers, conf)


class CKiteSystem:
    """ckite-py with the kvstore state machine, library defaults (timeouts, heartbeats), no admin."""

    def __init__(self, binding: str, peers: list[str], data_dir: Path, *, fsync: bool,
                 lease_reads: bool = False, tls_dir: Path | None = None, client_sessions: bool = True,
                 session_writes: bool = False) -> None:
        from ckite import CKiteBuilder
        from ckite.errors import CKiteError
        from kvstore.store import Get, KVStore, Put

        self._put, self._get, self._error = Put, Get, CKiteError
        builder = (CKiteBuilder().with_local_binding(binding).with_members_bindings(peers)
                   .with_state_machine(KVStore()).without_admin())
        if lease_reads:
            builder.with_lease_reads()
        if not client_sessions:
            builder.without_client_sessions()
        if tls_dir is not None:
            builder.with_tls(tls_dir / f"{CERT_NAME}.pem", tls_dir / f"{CERT_NAME}-key.pem", tls_dir / "ca.pem")
        if fsync:
            builder.with_data_dir(data_dir)
        else:
            builder.with_storage(_sqlite_without_fsync(data_dir))
        self.member = builder.build()
        # write_async on the leader is one attempt (a plain entry); a client session's is retryable.
        self._writer = self.member.session() if session_writes else self.member

    def start(self) -> None:
        self.member.start()

    def is_leader(self) -> bool:
        try:
            return self.member.is_leader(timeout=0.5)
        except self._error:
            return False

    def write(self, key: str, value: bytes, timeout: float) -> None:
        self.member.write(self._put(key, value), timeout=timeout)

    def write_async(self, key: str, value: bytes, done: Done, timeout: float) -> None:
        future = self._writer.write_async(self._put(key, value), timeout=timeout)
        future.add_done_callback(lambda f: done(*_outcome(f)))

    def read(self, key: str, timeout: float) -> Any:
        return self.member.read(self._get(key), timeout=timeout)

    def term(self) -> int:
        return self.member.status().term

    def stop(self) -> None:
        self.member.stop()


def _outcome(future: Any) -> tuple[bool, str | None]:
    if future.cancelled():
        return False, "cancelled"
    exc = future.exception()
    return (True, None) if exc is None else (False, type(exc).__name__)


def _sqlite_without_fsync(data_dir: Path) -> Any:
    """ckite's SQLite storage with ``PRAGMA synchronous=OFF``: same code path, no fsync.

    ckite has no public switch for this (on purpose: Raft needs the fsync), so the benchmark
    reaches into the storage's connection; it checks that the pragma took effect."""
    from ckite.config import DATABASE_FILE
    from ckite.log.sqlite_storage import SQLiteStorage

    storage = SQLiteStorage(data_dir / DATABASE_FILE)
    conn = storage._connection()   # noqa: SLF001 - benchmark-only variant, see docstring
    conn.execute("PRAGMA synchronous=OFF")
    if conn.execute("PRAGMA synchronous").fetchone()[0] != 0:
        raise RuntimeError("could not turn fsync off in ckite's SQLite storage")
    return storage


def _pysyncobj_kv_class() -> type:
    """A replicated dict for PySyncObj (defined on first use: the parent never imports PySyncObj)."""
    from pysyncobj import SyncObj, replicated

    class BenchKV(SyncObj):
        def __init__(self, self_addr: str, partners: list[str], conf: Any) -> None:
            super().__init__(self_addr, partners, conf)
            self._data: dict[str, bytes] = {}

        @replicated
        def put(self, key: str, value: bytes) -> bytes:
            self._data[key] = value
            return value

        @replicated
        def get(self, key: str) -> Any:
            return self._data.get(key)

    return BenchKV


class PySyncObjSystem:
    """PySyncObj's SyncObj with @replicated put/get; ``conf`` on top of the default SyncObjConf.

    Only ``bindAddress`` is always set, so that members listen on loopback, not 0.0.0.0."""

    def __init__(self, binding: str, peers: list[str], conf: dict[str, Any]) -> None:
        from pysyncobj import FAIL_REASON, SyncObjConf, SyncObjException

        self._success, self._error = FAIL_REASON.SUCCESS, SyncObjException
        self._reasons = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
        self._args = (binding, peers, SyncObjConf(bindAddress=binding, **conf))
        self.obj: Any = None

    def start(self) -> None:
        self.obj = _pysyncobj_kv_class()(*self._args)   # starts its tick thread

    def is_leader(self) -> bool:
        return bool(self.obj._isLeader())   # noqa: SLF001 - PySyncObj's documented query

    def write(self, key: str, value: bytes, timeout: float) -> None:
        self.obj.put(key, value, sync=True, timeout=timeout)

    def write_async(self, key: str, value: bytes, done: Done, timeout: float) -> None:
        success, reasons = self._success, self._reasons

        def callback(result: Any, error: int) -> None:
            done(True, None) if error == success else done(False, f"FAIL_REASON.{reasons.get(error, error)}")

        self.obj.put(key, value, callback=callback)

    def read(self, key: str, timeout: float) -> Any:
        return self.obj.get(key, sync=True, timeout=timeout)

    def term(self) -> int:
        return int(self.obj.raftCurrentTerm)

    def stop(self) -> None:
        if hasattr(self.obj, "destroy_synchronous"):
            self.obj.destroy_synchronous()
        else:
            self.obj.destroy()
            time.sleep(0.2)
