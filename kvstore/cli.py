"""Command line of one kvstore member: parse flags, build the member, serve until a signal.

``python -m kvstore --port 9091 --members localhost:9092,localhost:9093 --data-dir /tmp/ckite/member1``
``python -m kvstore --port 9094 --join localhost:9091,localhost:9092 --data-dir /tmp/ckite/member4`` (a new
member asks the running cluster to add it). Changing a running cluster: ``python -m kvstore.control``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ckite import CKite, CKiteBuilder, __version__
from ckite.admin import ADMIN_PORT_OFFSET
from ckite.config import (
    DEFAULT_ADMIN_HOST,
    DEFAULT_COMPACTION_THRESHOLD,
    DEFAULT_HEARTBEATS_INTERVAL_MS,
    DEFAULT_MAX_ELECTION_TIMEOUT_MS,
    DEFAULT_MIN_ELECTION_TIMEOUT_MS,
)
from ckite.errors import CKiteError
from ckite.identity import host_named_by_peers
from kvstore.http import DEFAULT_MAX_VALUE_BYTES, kv_blueprint
from kvstore.store import KVStore

logger = logging.getLogger(__name__)

PROG = "ckite-kvstore"
#: Where the admin token is read from when --admin-token is not given.
ADMIN_TOKEN_ENV = "CKITE_ADMIN_TOKEN"

#: Either stops the member cleanly (Ctrl-C, or `kill` from a supervisor).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class _OneLineErrors(argparse.ArgumentParser):
    """A bad flag gets one line naming it, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = _OneLineErrors(prog=PROG, description="One member of a replicated key-value store built on ckite (Raft). "
                       "Start one process per member; they elect a leader among themselves.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--host", default=None,
                   help="host name other members use to reach this one (default: the host the other members are "
                        "named by, when that is this machine, as with --members 127.0.0.1:9092,...; else localhost)")
    p.add_argument("--port", type=_port, required=True, help="Raft port; this member's id is HOST:PORT")
    founding = p.add_mutually_exclusive_group()
    founding.add_argument("--members", default="",
                          help="comma-separated HOST:PORT of the other members of the initial cluster")
    founding.add_argument("--join", default="", metavar="SEED[,SEED...]",
                          help="join a running cluster instead: ask these members (any of them) to add this one; "
                               "for a new member with an empty --data-dir (it waits as a learner, then votes)")
    p.add_argument("--data-dir", required=True,
                   help="directory for this member's durable state (term, vote, log); created if missing")
    p.add_argument("--admin-host", default=DEFAULT_ADMIN_HOST,
                   help="interface of the HTTP console and key-value routes (default: %(default)s, this machine "
                        "only; use 0.0.0.0 to expose them)")
    p.add_argument("--admin-port", type=_port, default=None,
                   help=f"HTTP port of the console and key-value routes (default: Raft port + {ADMIN_PORT_OFFSET})")
    p.add_argument("--min-election-timeout", type=_positive, default=DEFAULT_MIN_ELECTION_TIMEOUT_MS, metavar="MS",
                   help="shortest wait without a leader before standing for election (default: %(default)s ms)")
    p.add_argument("--max-election-timeout", type=_positive, default=DEFAULT_MAX_ELECTION_TIMEOUT_MS, metavar="MS",
                   help="longest such wait; the actual wait is random in between (default: %(default)s ms)")
    p.add_argument("--heartbeat-interval", type=_positive, default=DEFAULT_HEARTBEATS_INTERVAL_MS, metavar="MS",
                   help="how often the leader contacts idle followers (default: %(default)s ms)")
    p.add_argument("--compaction-threshold", type=_non_negative, default=DEFAULT_COMPACTION_THRESHOLD,
                   metavar="ENTRIES", help="snapshot the store and compact the log every ENTRIES applied "
                                           "entries; 0 never compacts (default: %(default)s)")
    p.add_argument("--lease-reads", action="store_true",
                   help="answer linearizable reads from the leader's lease, without a quorum round per read; "
                        "assumes the members' clocks run at rates within 10%% of each other")
    p.add_argument("--max-value-bytes", type=_positive, default=DEFAULT_MAX_VALUE_BYTES, metavar="BYTES",
                   help="largest value accepted over HTTP (default: %(default)s)")
    p.add_argument("--tls-cert", metavar="PEM", help="this member's certificate: turns on mutual TLS between "
                                                     "members (with --tls-key and --tls-ca; required across machines)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--tls-ca", metavar="PEM", help="the cluster CA's certificate: peers must present a certificate "
                                                   "it signed (scripts/make-certs makes a throwaway CA)")
    p.add_argument("--admin-token", metavar="TOKEN", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on the HTTP routes that change anything (default: "
                        f"${ADMIN_TOKEN_ENV}; the environment is safer, a flag shows in ps)")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging verbosity (default: %(default)s)")
    return p


def _bindings(text: str) -> list[str]:
    return [binding.strip() for binding in text.split(",") if binding.strip()]


def build(args: argparse.Namespace) -> CKite:
    """Build (not start) the member with its HTTP server; raises ValueError for bad settings."""
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    seeds = _bindings(args.join)
    host = args.host or host_named_by_peers(seeds or _bindings(args.members))
    builder = CKiteBuilder().with_local_binding(f"{host}:{args.port}")
    if args.join and not seeds:
        raise ValueError("--join needs at least one HOST:PORT")
    if seeds:
        builder.with_join(seeds)
    else:
        builder.with_members_bindings(_bindings(args.members))
    builder = (builder.with_min_election_timeout(args.min_election_timeout)
               .with_max_election_timeout(args.max_election_timeout)
               .with_heartbeats_interval(args.heartbeat_interval)
               .with_compaction_threshold(args.compaction_threshold)
               .with_data_dir(args.data_dir).with_state_machine(KVStore())
               .with_admin_host(args.admin_host))
    if args.admin_port is not None:
        builder.with_admin_port(args.admin_port)
    if args.lease_reads:
        builder.with_lease_reads()
    tls = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key, "--tls-ca": args.tls_ca}
    missing = [flag for flag, value in tls.items() if not value]
    if missing and len(missing) < len(tls):
        raise ValueError(f"--tls-cert, --tls-key and --tls-ca go together; missing: {', '.join(missing)}")
    if not missing:
        builder.with_tls(args.tls_cert, args.tls_key, args.tls_ca)
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        builder.with_admin_token(token)
    member = builder.build()
    assert member.admin is not None
    member.admin.app.register_blueprint(kv_blueprint(member, args.max_value_bytes))
    body_bytes = 2 * args.max_value_bytes + 1024   # a JSON compare-and-set carries two values
    member.admin.max_request_body_bytes = max(member.admin.max_request_body_bytes, body_bytes)
    return member


def run(argv: Sequence[str] | None = None) -> int:
    """The process's life: serve until SIGINT/SIGTERM, stop cleanly; returns the exit status.

    The stop signals are blocked before any thread exists, so every thread inherits the mask
    and a signal waits for sigwait() below: no handler runs in the middle of stop() or under
    a lock. They stay blocked: a second signal during shutdown (Ctrl-C and a supervisor's
    SIGTERM together) is discarded when the process exits instead of killing it mid-stop.
    """
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        member = build(args)
    except (ValueError, OSError, CKiteError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        member.start()
    except (OSError, CKiteError) as exc:
        print(f"{PROG}: error: cannot start {member.id}: {exc}", file=sys.stderr)
        return 1
    assert member.admin is not None   # build() made it
    logger.info("%s serving; console and key-value routes on %s", member.id, member.admin.url)
    received = signal.sigwait(STOP_SIGNALS)
    logger.info("%s stopping (%s)", member.id, signal.Signals(received).name)
    member.stop()
    logger.info("%s stopped", member.id)
    return 0
