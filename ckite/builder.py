"""CKiteBuilder: the fluent way to configure a member, as in CKite's README."""
from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckite.api import CKite
from ckite.bindings import parse_binding
from ckite.config import (
    DATABASE_FILE,
    DEFAULT_COMPACTION_THRESHOLD,
    DEFAULT_HEARTBEATS_INTERVAL_MS,
    DEFAULT_MAX_ELECTION_TIMEOUT_MS,
    DEFAULT_MIN_ELECTION_TIMEOUT_MS,
    MemberConfig,
)
from ckite.consensus.consensus import Consensus
from ckite.consensus.membership import Configuration
from ckite.consensus.settings import RaftSettings
from ckite.identity import MemberIdentity, check_reachable_id
from ckite.log.data_dir import DataDir
from ckite.log.memory_storage import MemoryStorage
from ckite.log.storage import LogStorage
from ckite.metrics.counts import MemberCounts
from ckite.rpc.tls import TlsConfig
from ckite.rpc.transport import Transport
from ckite.runtime.node import RaftNode
from ckite.statemachine import StateMachine

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class CKiteBuilder:
    """Collects options; :meth:`build` validates them and returns a :class:`~ckite.CKite`.

    Times are in milliseconds, as in CKite. Required: a local binding, a state machine,
    and either a data dir (SQLite storage) or in-memory storage.
    """

    def __init__(self) -> None:
        self._binding: str | None = None
        self._members: list[str] = []
        self._state_machine: StateMachine | None = None
        self._min_election_ms = DEFAULT_MIN_ELECTION_TIMEOUT_MS
        self._max_election_ms = DEFAULT_MAX_ELECTION_TIMEOUT_MS
        self._heartbeats_ms = DEFAULT_HEARTBEATS_INTERVAL_MS
        self._compaction_threshold = DEFAULT_COMPACTION_THRESHOLD
        self._lease_reads = False
        self._max_inflight_appends = RaftSettings.max_inflight_appends
        self._settings: dict[str, Any] = {}       # RaftSettings fields (keyword arguments)
        self._join_seeds: list[str] = []
        self._data_dir: Path | None = None
        self._storage: LogStorage | None = None
        self._transport: Transport | None = None
        self._listen_address: str | None = None
        self._timeouts: dict[str, Any] = {}       # MemberConfig fields, like _overrides
        self._overrides: dict[str, Any] = {}   # MemberConfig fields set by with_admin_* and without_*
        self._tls: TlsConfig | None = None

    def with_local_binding(self, binding: str) -> CKiteBuilder:
        """This member's "host:port": its identity in the cluster and where peers reach it."""
        self._binding = parse_binding(binding)
        return self

    def with_members_bindings(self, bindings: Sequence[str]) -> CKiteBuilder:
        """The other members of the initial cluster."""
        self._members = [parse_binding(b) for b in bindings]
        return self

    def with_min_election_timeout(self, ms: int) -> CKiteBuilder:
        self._min_election_ms = int(ms)
        return self

    def with_max_election_timeout(self, ms: int) -> CKiteBuilder:
        self._max_election_ms = int(ms)
        return self

    def with_heartbeats_interval(self, ms: int) -> CKiteBuilder:
        self._heartbeats_ms = int(ms)
        return self

    def with_compaction_threshold(self, entries: int) -> CKiteBuilder:
        """Snapshot the state machine and compact the log every ``entries`` applied entries
        (CKite's default: 10000; 0 never compacts)."""
        self._compaction_threshold = int(entries)
        return self

    def with_lease_reads(self) -> CKiteBuilder:
        """Answer ``read`` on the leader from a leader lease (thesis §6.4.1) instead of a quorum
        round per batch of reads: much cheaper reads, still linearizable *provided the members'
        clocks run at rates within 10% of each other* (the lease lasts 90% of the minimum election
        timeout). A leader without a valid lease (just elected, cut off, handing over leadership)
        falls back to ReadIndex. Only a leader built with it reads from a lease; every member,
        with it or not, refuses the votes that would break one, for its own minimum election
        timeout: give every member the same one (see docs/architecture.md)."""
        self._lease_reads = True
        return self

    def with_max_inflight_appends(self, n: int) -> CKiteBuilder:
        """How many AppendEntries the leader keeps in flight to one follower (default 4; 1: stop
        and wait). A further request leaves before the reply only when a full batch is waiting,
        so this matters for a follower far behind over a long round trip."""
        if int(n) < 1:
            raise ValueError(f"bad max_inflight_appends {n}: expected at least 1")
        self._max_inflight_appends = int(n)
        return self

    def with_log_cache_bytes(self, size: int) -> CKiteBuilder:
        """The most log entry data kept in memory (default 64 MiB). Older entries that are applied
        and on disk keep only their index and term in memory; their data is read back from the
        data dir when a lagging follower needs them (large values with a large compaction
        threshold would otherwise hold the whole log in memory)."""
        if int(size) < 0:
            raise ValueError(f"bad log cache size {size}: expected at least 0")
        self._settings["log_cache_bytes"] = int(size)
        return self

    def with_data_dir(self, path: str | os.PathLike[str]) -> CKiteBuilder:
        """Where term, vote, log and snapshots live (SQLite file ``ckite.db`` inside it)."""
        self._data_dir = Path(path)
        return self

    def with_in_memory_storage(self) -> CKiteBuilder:
        """Keep term, vote and log in memory only (tests; a restart forgets everything)."""
        self._storage = MemoryStorage()
        return self

    def with_storage(self, storage: LogStorage) -> CKiteBuilder:
        """Use a storage object of your own (e.g. a MemoryStorage kept across a test restart)."""
        self._storage = storage
        return self

    def with_state_machine(self, state_machine: StateMachine) -> CKiteBuilder:
        self._state_machine = state_machine
        return self

    def with_transport(self, transport: Transport) -> CKiteBuilder:
        """Replace the Thrift transport (tests use the in-process one)."""
        self._transport = transport
        return self

    def with_listen_address(self, address: str) -> CKiteBuilder:
        """Bind the RPC server here (e.g. 0.0.0.0:9091) while peers use the local binding."""
        self._listen_address = parse_binding(address)
        return self

    def with_leader_timeout(self, ms: int) -> CKiteBuilder:
        """How long a call waits for an election to produce a leader."""
        self._timeouts["leader_timeout_ms"] = int(ms)
        return self

    def with_write_timeout(self, ms: int) -> CKiteBuilder:
        """Default timeout of ``write`` (a call may pass its own)."""
        self._timeouts["write_timeout_ms"] = int(ms)
        return self

    def with_membership_timeout(self, ms: int) -> CKiteBuilder:
        """Default timeout of ``add_member``/``remove_member`` (it includes the new member's catch-up)."""
        self._timeouts["membership_timeout_ms"] = int(ms)
        return self

    def with_join(self, seeds: Sequence[str]) -> CKiteBuilder:
        """Join a running cluster (CKite's Joiner) instead of founding one: this member starts
        with no configuration, asks ``seeds`` to add it, and never stands for election before
        a configuration includes it. For a new member with an empty data dir."""
        self._join_seeds = [parse_binding(b) for b in seeds]
        if not self._join_seeds:
            raise ValueError("with_join needs at least one seed")
        return self

    def with_read_timeout(self, ms: int) -> CKiteBuilder:
        """Default timeout of ``read`` (a call may pass its own)."""
        self._timeouts["read_timeout_ms"] = int(ms)
        return self

    def with_admin_port(self, port: int) -> CKiteBuilder:
        """Serve the admin console here (default: the Raft port + 1000, as in CKite; 0: any free port)."""
        if not 0 <= int(port) < 65536:
            raise ValueError(f"bad admin port {port}: expected 0..65535")
        self._overrides["admin_port"] = int(port)
        return self

    def with_admin_host(self, host: str) -> CKiteBuilder:
        """Interface of the admin console (default 127.0.0.1: only this machine can reach it)."""
        self._overrides["admin_host"] = host
        return self

    def without_client_sessions(self) -> CKiteBuilder:
        """``CKite.write`` sends bare commands instead of going through the member's own client
        session. A write the library retries (a forwarded write whose reply was lost, a leader
        change) may then apply twice; use it only for commands that are idempotent anyway, or to
        measure what sessions cost (``benchmarks``). ``CKite.session()`` keeps working."""
        self._overrides["client_sessions"] = False
        return self

    def with_metrics_registry(self, registry: CollectorRegistry) -> CKiteBuilder:
        """Register this member's metrics (:mod:`ckite.metrics`) in the application's Prometheus
        registry instead of one of the member's own, so that one scrape of the application gets
        both; the admin console's ``/metrics`` then serves the whole registry. One member per
        registry (a second raises ValueError at build: the metrics carry no member label);
        ``CKite.stop()`` takes the member's metrics out of it again. Never pass
        prometheus_client's global ``REGISTRY`` for several members of one process."""
        self._overrides["metrics_registry"] = registry
        return self

    def with_metrics(self) -> CKiteBuilder:
        """Keep Prometheus metrics (``CKite.metrics_registry``) for a member without the admin
        console. They are on by default only where someone can read them: with the console
        (``/metrics``) or a registry of the application's (:meth:`with_metrics_registry`).
        Without either, the member does not import prometheus_client (its start-up, its RSS, an
        observation per batch) and only counts what ``status()["metrics"]`` shows."""
        self._overrides["metrics"] = True
        return self

    def without_admin(self) -> CKiteBuilder:
        """Do not serve the admin console at all."""
        self._overrides["admin_enabled"] = False
        return self

    def with_admin_token(self, token: str) -> CKiteBuilder:
        """Require ``Authorization: Bearer <token>`` on the admin server's routes that change
        anything (writes, membership); reads stay open. See docs/security.md."""
        from ckite.admin.auth import checked_token  # Flask only for members that serve the console
        self._overrides["admin_token"] = checked_token(token)
        return self

    def with_tls(self, cert: str | os.PathLike[str], key: str | os.PathLike[str],
                 ca: str | os.PathLike[str]) -> CKiteBuilder:
        """Mutual TLS between members: this member's certificate and private key, and the cluster's
        CA certificate (PEM files). Peers must present a certificate signed by that CA, and so does
        this member. Raises ValueError when a file cannot be loaded. Required across machines."""
        self._tls = TlsConfig.of(cert, key, ca)
        return self

    def config(self) -> MemberConfig:
        """Validate and resolve the options (raises ValueError naming the bad one)."""
        if self._binding is None:
            raise ValueError("with_local_binding(...) is required")
        if self._state_machine is None:
            raise ValueError("with_state_machine(...) is required")
        if self._storage is None and self._data_dir is None:
            raise ValueError("choose storage: with_data_dir(path) for SQLite, or with_in_memory_storage()")
        settings = RaftSettings(min_election_timeout=self._min_election_ms / 1000,
                                max_election_timeout=self._max_election_ms / 1000,
                                heartbeat_interval=self._heartbeats_ms / 1000,
                                compaction_threshold=self._compaction_threshold,
                                lease_reads=self._lease_reads,
                                max_inflight_appends=self._max_inflight_appends, **self._settings)
        for name, value in self._timeouts.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        identity = MemberIdentity(self._binding, self._listen_address)
        members = [m for m in self._members if not identity.is_self(m)]   # this member, perhaps under another name
        check_reachable_id(self._binding, [*members, *self._join_seeds])
        if self._join_seeds and members:
            raise ValueError("with_join(...) and with_members_bindings(...) exclude each other: a joining member "
                             "learns the members from the cluster")
        config = MemberConfig(self._binding, members, self._state_machine, settings, self._data_dir,
                              self._storage, self._transport, self._listen_address)
        if self._tls is not None and self._transport is not None:
            raise ValueError("with_tls(...) configures the default Thrift transport; "
                             "give a transport of your own its TLS contexts instead")
        return replace(config, **self._timeouts, **self._overrides, join_seeds=list(self._join_seeds), tls=self._tls)

    def build(self) -> CKite:
        return build_member(self.config())


def build_member(config: MemberConfig) -> CKite:
    """Assemble storage, consensus core, transport and runtime for one member. A failure on the
    way leaves nothing open: the data dir's lock and database are released before it raises."""
    if config.storage is not None:
        return _assemble(config, config.storage, None)
    from ckite.log.sqlite_storage import SQLiteStorage
    assert config.data_dir is not None   # config() requires a data dir or a storage
    data_dir = DataDir(config.data_dir)   # first: nothing is opened in a directory another process holds
    storage: LogStorage | None = None
    try:
        storage = SQLiteStorage(data_dir.file(DATABASE_FILE))
        return _assemble(config, storage, data_dir)
    except BaseException:
        if storage is not None:
            storage.close()
        data_dir.close()
        raise


def _assemble(config: MemberConfig, storage: LogStorage, data_dir: DataDir | None) -> CKite:
    transport = config.transport
    if transport is None:
        from ckite.rpc.thrift_transport import ThriftTransport
        transport = ThriftTransport(tls=config.tls)
    # A joining member knows no configuration until the cluster's log gives it one.
    initial = Configuration.of([] if config.join_seeds else [config.local_binding, *config.members_bindings])
    metrics: MemberCounts
    if config.metrics or config.admin_enabled or config.metrics_registry is not None:
        from ckite.metrics.member import MemberMetrics  # prometheus_client only for members that export it
        metrics = MemberMetrics(config.metrics_registry)
    else:
        metrics = MemberCounts()
    try:
        consensus = Consensus(config.local_binding, storage, initial, config.settings, clock=time.monotonic,
                              rng=random.Random(), join=bool(config.join_seeds), metrics=metrics)
        node = RaftNode(consensus, transport, config.state_machine,
                        leader_timeout=config.leader_timeout_ms / 1000, write_timeout=config.write_timeout_ms / 1000,
                        read_timeout=config.read_timeout_ms / 1000, listen_address=config.listen_address,
                        membership_timeout=config.membership_timeout_ms / 1000, join_seeds=config.join_seeds,
                        client_sessions=config.client_sessions)
        member = CKite(node, storage, data_dir)
        if config.admin_enabled:
            from ckite.admin import ADMIN_PORT_OFFSET, build_admin  # Flask only for members that serve it
            port = config.admin_port
            if port is None:
                port = int(config.local_binding.rpartition(":")[2]) + ADMIN_PORT_OFFSET
            member.attach_admin(build_admin(member, config.admin_host, port, token=config.admin_token))
    except BaseException:
        metrics.close()   # a failed build leaves nothing in the application's registry
        raise
    return member
