"""How long a follower that missed N entries takes to catch up (issue: log compaction).

Three members in this process over real Thrift on loopback, SQLite data dirs: stop one
follower, write N entries through the leader, restart the follower (with its data dir, then
with an empty one) and time until it has applied the leader's commit index.

``--rtt-ms X`` puts the catching-up follower X ms of round trip away: every member is reached
through a TCP proxy in front of its port (tests/jepsen/proxy.py; its advertised binding is the
proxy, ``with_listen_address`` its real port), and the lagging follower's proxy delays both
directions by X/2 ms. ``--rtt-ms 0`` keeps the proxies without delay (their cost, for
comparison). ``--window N`` sets ``max_inflight_appends``: with one request per round trip, a
long round trip limits the catch-up; with several in flight, it should not. ``--tls`` runs the
members over mutual TLS (a throwaway CA from scripts/make-certs).

    python -m benchmarks.catchup --entries 100000 [--threshold 10000] [--rtt-ms 10] [--window 4] [--tls]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ckite import CKite, CKiteBuilder
from ckite.consensus.settings import RaftSettings
from ckite.errors import CKiteError
from kvstore.store import KVStore, Put
from tests.jepsen.proxy import LOOPBACK, ProxyNetwork
from tests.netutil import free_port
from tests.tls_certs import Certs, make_certs
from tests.waiting import wait_for

#: The proxies' name for "whoever dials a member": in one process all members dial a peer at the
#: same binding, so there is one proxy per member, shared by its callers (not one per pair).
CALLERS = "callers"
#: The members' minimum election timeout (ms). A call to a peer times out after half of it,
#: which bounds the round trip --rtt-ms can simulate.
MIN_ELECTION_MS = 300


class Setup:
    """Bindings, listen addresses and (with ``rtt_ms``) the proxies in front of the members."""

    def __init__(self, rtt_ms: float | None, window: int | None, certs: Certs | None = None) -> None:
        self.rtt_ms, self.window, self.certs = rtt_ms, window, certs
        ports = [free_port() for _ in range(3)]
        self.network: ProxyNetwork | None = None
        if rtt_ms is None:
            self.listen = {f"{LOOPBACK}:{port}": None for port in ports}
            return
        # Nothing dials CALLERS (it only ever sends), so its address is never used.
        self.network = ProxyNetwork({CALLERS: (LOOPBACK, 0), **{str(port): (LOOPBACK, port) for port in ports}})
        self.listen = {f"{LOOPBACK}:{self.network.proxy_ports[(CALLERS, str(port))]}": f"{LOOPBACK}:{port}"
                       for port in ports}

    @property
    def bindings(self) -> list[str]:
        return list(self.listen)

    def delay(self, binding: str) -> None:
        """From now on, requests to ``binding`` and its replies each take rtt_ms / 2 longer."""
        if self.network is not None and self.rtt_ms:
            name = self.listen[binding].rpartition(":")[2]
            self.network.slow([(CALLERS, name), (name, CALLERS)], delay=self.rtt_ms / 2000)

    def build(self, binding: str, data_dir: Path, threshold: int) -> CKite:
        builder = (CKiteBuilder().with_local_binding(binding)
                   .with_members_bindings([b for b in self.bindings if b != binding])
                   .with_min_election_timeout(MIN_ELECTION_MS).with_max_election_timeout(2 * MIN_ELECTION_MS)
                   .with_heartbeats_interval(50)
                   .with_data_dir(data_dir).with_compaction_threshold(threshold).with_state_machine(KVStore())
                   .without_admin())
        if self.listen[binding] is not None:
            builder.with_listen_address(self.listen[binding])
        if self.window is not None:
            builder.with_max_inflight_appends(self.window)
        if self.certs is not None:
            builder.with_tls(*self.certs.files("member"))
        return builder.build()

    def close(self) -> None:
        if self.network is not None:
            self.network.close()


def catch_up_seconds(entries: int, threshold: int, wipe: bool, work: Path,
                     rtt_ms: float | None = None, window: int | None = None, certs: Certs | None = None) -> dict:
    setup = Setup(rtt_ms, window, certs)
    bindings = setup.bindings
    dirs = {b: work / b.replace(":", "_") for b in bindings}
    members = {b: setup.build(b, dirs[b], threshold) for b in bindings}
    for member in members.values():
        member.start()
    try:
        leader = wait_for(lambda: next((m for m in members.values() if m.status().role == "Leader"), None),
                          10, "a leader")
        lagging = next(b for b in bindings if b != leader.id)
        members.pop(lagging).stop()
        setup.delay(lagging)
        for start in range(0, entries, 2000):
            batch = range(start, min(start + 2000, entries))
            while True:
                try:
                    for future in [leader.write_async(Put(f"key{i % 10000}", f"value{i}")) for i in batch]:
                        future.result(timeout=30)
                    break
                except CKiteError:   # leadership moved under load: write the batch again (puts are idempotent)
                    leader = wait_for(lambda: next((m for m in members.values()
                                                    if m.status().role == "Leader"), None), 10, "a leader")
        target = leader.status().commit_index
        if wipe:
            shutil.rmtree(dirs[lagging])
        started = time.monotonic()
        restarted = members[lagging] = setup.build(lagging, dirs[lagging], threshold)
        restarted.start()
        wait_for(lambda: restarted.status().applied_index >= target, 120, "the catch-up")
        elapsed = time.monotonic() - started
        status = restarted.status()
        return {"entries_missed": entries, "wiped": wipe, "rtt_ms": rtt_ms,
                "window": window or RaftSettings.max_inflight_appends, "tls": certs is not None,
                "seconds": round(elapsed, 3),
                "snapshots_installed": status["metrics"]["snapshotsInstalled"],
                "leader_snapshot_bytes": (leader.status()["log"]["snapshot"] or {}).get("bytes")}
    finally:
        for member in members.values():
            member.stop()
        setup.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--threshold", type=int, default=10_000)
    parser.add_argument("--rtt-ms", type=float, default=None,
                        help="round trip between the leader and the catching-up follower, through a delaying "
                             "proxy (0: the proxy without delay; default: no proxy)")
    parser.add_argument("--window", type=int, default=None,
                        help="max_inflight_appends (AppendEntries in flight per follower; default: the library's)")
    parser.add_argument("--tls", action="store_true", help="mutual TLS between the members")
    args = parser.parse_args()
    rpc_timeout_ms = MIN_ELECTION_MS / 2
    if args.rtt_ms is not None and not 0 <= args.rtt_ms < rpc_timeout_ms:
        parser.error(f"--rtt-ms must be in [0, {rpc_timeout_ms:g}): a call times out after {rpc_timeout_ms:g} ms")
    if args.window is not None and args.window < 1:
        parser.error("--window must be >= 1")
    with tempfile.TemporaryDirectory() as work:
        certs = make_certs(Path(work) / "certs", "member") if args.tls else None
        for wipe in (False, True):
            result = catch_up_seconds(args.entries, args.threshold, wipe, Path(work) / f"wipe-{wipe}",
                                      args.rtt_ms, args.window, certs)
            print(json.dumps(result))


if __name__ == "__main__":
    main()
