"""In-process clusters of real ckite members (threads and all) over either transport (Thrift with
or without mutual TLS)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ckite import CKite, CKiteBuilder, StateMachine
from ckite.config import DEFAULT_COMPACTION_THRESHOLD
from ckite.log.memory_storage import MemoryStorage
from ckite.log.storage import LogStorage
from ckite.rpc.local import LocalNetwork
from ckite.rpc.thrift_transport import ThriftTransport
from ckite.rpc.tls import TlsConfig
from tests.kv_example import KVStore
from tests.netutil import free_port
from tests.waiting import wait_for

#: Fast but not flaky on 2 busy cores: heartbeats every 50 ms, elections after 300-600 ms.
MIN_ELECTION_MS, MAX_ELECTION_MS, HEARTBEAT_MS = 300, 600, 50


@dataclass
class TestCluster:
    transport_kind: str
    size: int
    bindings: list[str] = field(default_factory=list)
    storages: dict[str, LogStorage] = field(default_factory=dict)
    members: dict[str, CKite] = field(default_factory=dict)
    state_machines: dict[str, KVStore] = field(default_factory=dict)
    network: LocalNetwork = field(default_factory=LocalNetwork)
    compaction_threshold: int = DEFAULT_COMPACTION_THRESHOLD
    lease_reads: bool = False
    metrics: bool = False   # Prometheus metrics (with_metrics); off, as for any member without its console
    tls: TlsConfig | None = None   # with "thrift": every member presents the same certificate
    new_state_machine: Callable[[], StateMachine] = KVStore   # the tests' own map by default

    __test__ = False   # not a pytest test class

    def __post_init__(self) -> None:
        if self.transport_kind == "local":
            self.bindings = [f"localhost:{9091 + i}" for i in range(self.size)]
        else:
            self.bindings = [f"127.0.0.1:{free_port()}" for _ in range(self.size)]
        for binding in self.bindings:
            self.storages[binding] = MemoryStorage()

    def start(self, binding: str, storage: LogStorage | None = None) -> CKite:
        """(Re)build and start the member at ``binding`` on its storage (a restart keeps the log)."""
        if storage is not None:
            self.storages[binding] = storage
        state_machine = self.new_state_machine()
        transport = (self.network.transport(binding) if self.transport_kind == "local"
                     else ThriftTransport(tls=self.tls))
        builder = (CKiteBuilder().with_local_binding(binding)
                   .with_members_bindings([b for b in self.bindings if b != binding])
                   .with_min_election_timeout(MIN_ELECTION_MS).with_max_election_timeout(MAX_ELECTION_MS)
                   .with_heartbeats_interval(HEARTBEAT_MS)
                   .with_storage(self.storages[binding]).with_transport(transport)
                   .with_state_machine(state_machine).with_write_timeout(3000).with_read_timeout(3000)
                   .with_leader_timeout(5000).with_compaction_threshold(self.compaction_threshold).without_admin())
        if self.lease_reads:
            builder.with_lease_reads()
        if self.metrics:
            builder.with_metrics()
        member = builder.build()
        member.start()
        self.members[binding] = member
        self.state_machines[binding] = state_machine
        return member

    def start_all(self) -> TestCluster:
        for binding in self.bindings:
            self.start(binding)
        return self

    def stop(self, binding: str) -> None:
        member = self.members.pop(binding, None)
        if member is not None:
            member.stop()

    def stop_all(self) -> None:
        for binding in list(self.members):
            self.stop(binding)
        self.network.heal_all()

    def running(self) -> list[CKite]:
        return list(self.members.values())

    def leader(self, among: list[CKite] | None = None, timeout: float = 10.0) -> CKite:
        """Wait until exactly one running member leads and every other one follows it."""
        candidates = among if among is not None else self.running()

        def single_leader():
            leaders = [m for m in candidates if m.status().role == "Leader"]
            if len(leaders) != 1:
                return None
            leader = leaders[0]
            if all(m.leader == leader.id for m in candidates):
                return leader
            return None
        return wait_for(single_leader, timeout, "a single leader that every member follows")

    def followers(self) -> list[CKite]:
        leader = self.leader()
        return [m for m in self.running() if m is not leader]
