"""ckite-py in the large-state benchmark: three ``python -m kvstore`` processes, used over HTTP only.

Only the kvstore's command line, its HTTP routes and ``/status`` are used, no ckite API, so
that the benchmark measures any version of the code the same way (issue 14: snapshots are
being rewritten). The members run with the kvstore's default timeouts, as a new user starts
them (``tests.processes.ProcessCluster`` passes the tests' faster ones; these flags come after
and win), with ``--compaction-threshold`` set. Writes are ``PUT /kv/<key>`` on the leader, one
at a time on a kept-alive connection, as a client following the README would; the wiped
follower has caught up when ``GET /kv/<last key>?local=true`` returns the last value written.
"""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.large_state_row import Plan
from benchmarks.status_poller import Probe, StatusPoller
from benchmarks.systems import COMPACTION_ENTRIES
from ckite.config import (
    DEFAULT_HEARTBEATS_INTERVAL_MS,
    DEFAULT_MAX_ELECTION_TIMEOUT_MS,
    DEFAULT_MIN_ELECTION_TIMEOUT_MS,
)
from tests.processes import STOP_TIMEOUT, ProcessCluster

#: Longest wait for one HTTP answer. kvstore answers a write within its 2 s write timeout (503
#: past it); a /status held up by a snapshot may take longer, and counts as slow until this.
HTTP_TIMEOUT = 30.0
#: A write still failing after this long means the cluster is broken: the writes stop there.
WRITE_GIVE_UP = 300.0
#: Pause before a failed write is sent again (a leader election takes about a second).
RETRY_PAUSE = 0.2
#: The results keep this many of the first failed writes, and as many of the last.
FAILURES_KEPT = 10


class KeepAlive:
    """One HTTP/1.1 connection to a member, opened again after any failure."""

    def __init__(self, host: str, port: int, timeout: float = HTTP_TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """``(status, body)``; raises ``TimeoutError`` when no answer came in time, another
        ``OSError`` when the member could not be reached or dropped the connection."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._connection.request(method, path, body=body)
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            self._connection = None
            if isinstance(exc, OSError):
                raise
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc


def _kv_path(key: str) -> str:
    return "/kv/" + urllib.parse.quote(key, safe="")


class KVStoreCluster:
    """The system adapter for ``benchmarks.large_state_row`` (see there for the methods)."""

    name = "ckite"

    def __init__(self, directory: Path, plan: Plan) -> None:
        flags = ["--min-election-timeout", str(DEFAULT_MIN_ELECTION_TIMEOUT_MS),
                 "--max-election-timeout", str(DEFAULT_MAX_ELECTION_TIMEOUT_MS),
                 "--heartbeat-interval", str(DEFAULT_HEARTBEATS_INTERVAL_MS),
                 "--compaction-threshold", str(COMPACTION_ENTRIES), "--max-value-bytes", str(plan.value_bytes)]
        self.processes = ProcessCluster(directory, 3, extra_args=flags)
        self.bindings = [m.binding for m in self.processes]
        self._last: tuple[str, bytes] | None = None   # the last key written and its value
        self._reader: KeepAlive | None = None         # reads the wiped follower's copy of it

    def pids(self) -> list[int]:
        return [m.pid for m in self.processes if m.pid is not None]

    def data_dirs(self) -> list[Path]:
        return [m.data_dir for m in self.processes]

    def start(self) -> None:
        self.processes.start_all()
        self.processes.leader(timeout=30.0)

    def probe(self, n: int) -> Probe:
        member = self.processes[n]
        connection = KeepAlive(member.host, member.admin_port)

        def status() -> dict[str, Any]:
            code, body = connection.request("GET", "/status")
            if code != 200:
                raise ConnectionError(f"/status answered {code}")
            document = json.loads(body)
            cluster, log = document["cluster"], document["log"]
            snapshot = log.get("snapshot") or {}
            return {"term": cluster["term"], "leader": cluster["leader"], "state": cluster["state"],
                    "applied": log["lastApplied"], "commit": log["commitIndex"],
                    "snapshot_index": snapshot.get("index", 0), "snapshot_bytes": snapshot.get("bytes"),
                    "snapshots_installed": document.get("metrics", {}).get("snapshotsInstalled"),
                    "log_length": log["length"]}
        return status

    def write(self, plan: Plan, poller: StatusPoller, aborted: Callable[[], bool]) -> dict[str, Any]:
        """Every write of ``plan`` in turn, each sent to the member the poller last saw leading
        (a failed write again, after a pause, until it succeeds or has failed for
        ``WRITE_GIVE_UP``: the writes stop there, and ``gave_up`` says why)."""
        connections = [KeepAlive(m.host, m.admin_port) for m in self.processes]
        failures: list[dict[str, Any]] = []
        acknowledged, longest, gave_up = 0, 0.0, None
        start = time.monotonic()
        for i in range(plan.writes):
            if aborted() or gave_up:
                break
            key, value = plan.key(i), os.urandom(plan.value_bytes)
            first_try = time.monotonic()
            while not aborted():
                leader = poller.leader()
                n = 0 if leader is None else leader
                sent = time.monotonic()
                try:
                    code, body = connections[n].request("PUT", _kv_path(key), value)
                    failure = None if code == 200 else f"{code}: {body[:200].decode(errors='replace')}"
                except OSError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                longest = max(longest, time.monotonic() - sent)
                if failure is None:
                    acknowledged, self._last = acknowledged + 1, (key, value)
                    break
                failures.append({"at": round(time.time(), 3), "key": key, "member": self.bindings[n],
                                 "seconds": round(time.monotonic() - sent, 3), "failure": failure})
                if time.monotonic() - first_try > WRITE_GIVE_UP:
                    gave_up = f"gave up writing {key}: it failed for {WRITE_GIVE_UP:.0f} s, last with {failure}"
                    break
                time.sleep(RETRY_PAUSE)
        elapsed = time.monotonic() - start
        kept = failures if len(failures) <= 2 * FAILURES_KEPT else failures[:FAILURES_KEPT] + failures[-FAILURES_KEPT:]
        return {"acknowledged": acknowledged, "failed": len(failures), "failures": kept, "gave_up": gave_up,
                "elapsed_s": round(elapsed, 2), "longest_write_s": round(longest, 3)}

    def wipe(self, n: int) -> str:
        member = self.processes[n]
        try:
            stopped = f"SIGTERM: exit status {self.processes.stop(member)}"
        except AssertionError:   # ProcessCluster killed it
            stopped = f"did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM: killed"
        self.processes.wipe(member)
        return stopped

    def restart(self, n: int) -> None:
        member = self.processes[n]
        self.processes.start(member, wait=False)
        self._reader = KeepAlive(member.host, member.admin_port, timeout=5.0)

    def caught_up(self, n: int) -> bool:
        assert self._reader is not None and self._last is not None
        key, value = self._last
        try:
            code, body = self._reader.request("GET", _kv_path(key) + "?local=true")
        except OSError:
            return False   # not listening yet
        return code == 200 and body == value

    def kill(self) -> None:
        self.processes.close()

    def stop(self) -> None:
        self.processes.close()
