"""Everything a member is configured with, and every default in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ckite.consensus.settings import RaftSettings
from ckite.log.storage import LogStorage
from ckite.rpc.tls import TlsConfig
from ckite.rpc.transport import Transport
from ckite.statemachine import StateMachine

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Defaults, in the units the builder takes (milliseconds). CKite's were 1000-2000 ms / 200 ms;
#: the seed's README example uses 1000-1500 ms / 250 ms, which we adopt.
DEFAULT_MIN_ELECTION_TIMEOUT_MS = 1000
DEFAULT_MAX_ELECTION_TIMEOUT_MS = 1500
DEFAULT_HEARTBEATS_INTERVAL_MS = 250
DEFAULT_LEADER_TIMEOUT_MS = 10_000   # CKite's ckite.leader-timeout
DEFAULT_WRITE_TIMEOUT_MS = 2_000     # CKite's ckite.write-timeout (which CKite never enforced)
DEFAULT_READ_TIMEOUT_MS = 2_000
DEFAULT_COMPACTION_THRESHOLD = 10_000  # CKite's ckite.log.compaction-threshold
DEFAULT_MEMBERSHIP_TIMEOUT_MS = 30_000  # add/remove member: includes the new member's catch-up
DATABASE_FILE = "ckite.db"
#: The admin console listens on the loopback interface unless told otherwise: its mutating
#: routes must not be open to the network by default (see docs/security.md).
DEFAULT_ADMIN_HOST = "127.0.0.1"


@dataclass
class MemberConfig:
    """The resolved configuration :meth:`ckite.CKiteBuilder.build` turns into a member."""

    local_binding: str
    members_bindings: list[str]
    state_machine: StateMachine
    settings: RaftSettings = field(default_factory=RaftSettings)
    data_dir: Path | None = None
    storage: LogStorage | None = None
    transport: Transport | None = None
    listen_address: str | None = None
    leader_timeout_ms: int = DEFAULT_LEADER_TIMEOUT_MS
    write_timeout_ms: int = DEFAULT_WRITE_TIMEOUT_MS
    read_timeout_ms: int = DEFAULT_READ_TIMEOUT_MS
    membership_timeout_ms: int = DEFAULT_MEMBERSHIP_TIMEOUT_MS
    join_seeds: list[str] = field(default_factory=list)   # non-empty: start as a Joiner (CKite's)
    admin_enabled: bool = True
    client_sessions: bool = True   # CKite.write through the member's own session (exactly-once retries)
    admin_host: str = DEFAULT_ADMIN_HOST
    admin_port: int | None = None   # None: the Raft port + ADMIN_PORT_OFFSET, as in CKite; 0: any free port
    admin_token: str | None = None  # when set, the admin server's mutating routes require it (bearer token)
    tls: TlsConfig | None = None    # mutual TLS between members (the default Thrift transport); None: plain TCP
    metrics_registry: CollectorRegistry | None = None   # the application's; None: one of the member's own
    # Prometheus metrics: on with the admin console or a registry of the application's, or when
    # asked for (with_metrics); off, the member only counts (no prometheus_client import).
    metrics: bool = False
