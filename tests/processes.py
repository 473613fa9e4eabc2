"""Real kvstore member processes for end-to-end and fault tests.

A :class:`ProcessCluster` launches ``python -m kvstore`` members on loopback ports it picks,
and is the only thing that signals them: stop (SIGTERM), kill (SIGKILL), pause/resume
(SIGSTOP/SIGCONT), restart on the same data directory, wipe a data directory. Every launch's
stdout and stderr go to the member's log file under ``base_dir``, so a failing test can show
what the member said. Readiness and leadership are observed over HTTP (``/status``) with
deadlines; nothing here sleeps blindly.

Members are started in their own session (``start_new_session``): a Ctrl-C in the terminal
running pytest reaches pytest, whose fixture finalizer then kills them, not the members
directly. Use the :func:`process_clusters` fixture (or ``with ProcessCluster(...)``) so no
member outlives its test; an ``atexit`` hook is the last resort for scripts.

A member's admin port is passed explicitly (``--admin-port``) but chosen as the Raft port +
1000, the convention by which each member's console finds the other members' ``/status``.
"""
from __future__ import annotations

import atexit
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ckite.admin import ADMIN_PORT_OFFSET
from kvstore.http import IDEMPOTENCY_HEADER
from tests.cluster_fixture import HEARTBEAT_MS, MAX_ELECTION_MS, MIN_ELECTION_MS
from tests.netutil import free_port, is_free
from tests.waiting import wait_for

#: A fresh interpreter imports Flask, thriftpy2 and SQLite before it serves: seconds on 2 busy cores.
START_TIMEOUT = 20.0
#: A member's own stop waits up to 5 s for requests in flight (ckite.admin.server.STOP_TIMEOUT).
STOP_TIMEOUT = 10.0
#: One HTTP request to a member; ckite's own write/read timeouts (2 s) answer 503 well before it.
HTTP_TIMEOUT = 5.0
#: One /status poll: a paused or dying member must not hold a wait loop for long.
STATUS_TIMEOUT = 1.0
LOCALHOST = "127.0.0.1"


def free_base_port(count: int = 1, offset: int = ADMIN_PORT_OFFSET, host: str = LOCALHOST,
                   attempts: int = 50) -> int:
    """A port P such that P .. P+count-1 and the same plus ``offset`` (their admin ports) are all
    free now: :func:`~tests.netutil.free_port` picks P, the others are checked by binding them."""
    for _ in range(attempts):
        base = free_port(host)
        wanted = [base + i for i in range(1, count)] + [base + i + offset for i in range(count)]
        if max(wanted, default=base) < 65536 and all(is_free(host, port) for port in wanted):
            return base
    raise RuntimeError(f"found no {count} free port(s) with their admin ports (+{offset}) in {attempts} attempts")


@dataclass(frozen=True)
class HttpResult:
    """An HTTP answer of any status (4xx/5xx are answers too, not exceptions)."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, timeout: float = HTTP_TIMEOUT,
         headers: Mapping[str, str] | None = None) -> HttpResult:
    """One request. Raises OSError (``URLError``, ``TimeoutError``, ``ConnectionError``) when no
    answer came: a fault test must tell "refused" (not applied) from "timed out" (unknown)."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResult(error.code, error.read())


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@dataclass(frozen=True)
class KVClient:
    """The kvstore's HTTP routes on one member (see kvstore/http.py), and ckite's admin routes."""

    base_url: str
    timeout: float = HTTP_TIMEOUT

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> HttpResult:
        return http(method, self.base_url + path, body, self.timeout, headers)

    def put(self, key: str, value: str) -> HttpResult:
        return self.call("GET", f"/put/{_segment(key)}/{_segment(value)}")

    def get(self, key: str, local: bool = False) -> HttpResult:
        return self.call("GET", f"/get/{_segment(key)}" + ("?local=true" if local else ""))

    def cas(self, key: str, expected: str, new: str) -> HttpResult:
        return self.call("GET", f"/cas/{_segment(key)}/{_segment(expected)}/{_segment(new)}")

    def incr(self, key: str, by: int = 1, idempotency_key: str | None = None) -> HttpResult:
        """``POST /incr/<key>?by=N``; under an ``Idempotency-Key`` a retry applies once."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else None
        return self.call("POST", f"/incr/{_segment(key)}?by={by}", headers=headers)

    def kv_put(self, key: str, value: bytes) -> HttpResult:
        return self.call("PUT", f"/kv/{_segment(key)}", value)

    def kv_get(self, key: str, local: bool = False) -> HttpResult:
        return self.call("GET", f"/kv/{_segment(key)}" + ("?local=true" if local else ""))

    def kv_delete(self, key: str) -> HttpResult:
        return self.call("DELETE", f"/kv/{_segment(key)}")

    def status(self) -> HttpResult:
        return self.call("GET", "/status")

    def add_member(self, binding: str) -> HttpResult:
        return self.call("POST", f"/members/{_segment(binding)}")

    def remove_member(self, binding: str) -> HttpResult:
        return self.call("DELETE", f"/members/{_segment(binding)}")


@dataclass(eq=False)
class Member:
    """One member: its addresses and files, and its process while it has one."""

    name: str
    host: str
    port: int
    admin_port: int
    data_dir: Path
    log_path: Path
    peers: tuple[str, ...]
    join: bool = False   #: started with ``--join PEERS`` (asks them to add it) instead of ``--members PEERS``
    process: subprocess.Popen | None = None
    paused: bool = False

    @property
    def binding(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def running(self) -> bool:
        """Has a process that has not exited (a paused one is running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def client(self, timeout: float = HTTP_TIMEOUT) -> KVClient:
        return KVClient(self.admin_url, timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"

    def __repr__(self) -> str:
        return f"<Member {self.name} {self.binding} pid={self.pid}{' paused' if self.paused else ''}>"


class ProcessCluster:
    """``size`` kvstore members under ``base_dir`` (``member1/`` data, ``member1.log`` output ...).

    ``extra_args`` go to every member's command line (after the defaults, so they win).
    Nothing starts in the constructor: call :meth:`start_all` or :meth:`start`. The process
    controls of one member are meant for one thread at a time (a test, or a fault injector);
    the HTTP helpers may be used from any number of client threads.
    """

    def __init__(self, base_dir: Path | str, size: int, extra_args: Sequence[str] = (), host: str = LOCALHOST,
                 start_timeout: float = START_TIMEOUT, pass_host: bool = True) -> None:
        """Without ``pass_host`` the members get no ``--host``: each names itself as its peers are named."""
        self.base_dir = Path(base_dir)
        self.pass_host = pass_host
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.members: list[Member] = []
        ports: list[int] = []
        for _ in range(size):
            ports.append(self._unused_port(ports))
        bindings = [f"{host}:{port}" for port in ports]
        for port in ports:
            self._add(port, tuple(b for b in bindings if b != f"{host}:{port}"))
        atexit.register(self.close)

    def _add(self, port: int, peers: tuple[str, ...], join: bool = False) -> Member:
        name = f"member{len(self.members) + 1}"
        member = Member(name, self.host, port, port + ADMIN_PORT_OFFSET, self.base_dir / name,
                        self.base_dir / f"{name}.log", peers, join)
        self.members.append(member)
        return member

    def _unused_port(self, taken: Sequence[int], attempts: int = 50) -> int:
        """A free port pair (Raft, admin) clashing with none of ``taken``'s: a port picked for a
        member not yet started is free again, and may be picked twice."""
        clashes = {port + delta for port in taken for delta in (0, ADMIN_PORT_OFFSET)}
        for _ in range(attempts):
            port = free_base_port(host=self.host)
            if not {port, port + ADMIN_PORT_OFFSET} & clashes:
                return port
        raise RuntimeError(f"no port pair apart from {sorted(taken)} in {attempts} attempts")

    def new_member(self, join: bool = False) -> Member:
        """One more member (not started, not in anyone's configuration) that knows every existing
        one: what a membership change adds. With ``join`` it starts with ``--join`` and asks them
        to add it itself; without, it starts with ``--members`` and waits to be added."""
        return self._add(self._unused_port([m.port for m in self.members]), tuple(m.binding for m in self.members),
                         join)

    def __getitem__(self, index: int) -> Member:
        return self.members[index]

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def running(self) -> list[Member]:
        """Members with a live process that is not paused: the ones that can answer."""
        return [m for m in self.members if m.running and not m.paused]

    # --- processes --------------------------------------------------------------------------

    def command(self, member: Member) -> list[str]:
        return [sys.executable, "-m", "kvstore", *(["--host", member.host] if self.pass_host else []),
                "--port", str(member.port),
                "--admin-port", str(member.admin_port),
                "--join" if member.join else "--members", ",".join(member.peers),
                "--data-dir", str(member.data_dir),
                "--min-election-timeout", str(MIN_ELECTION_MS), "--max-election-timeout", str(MAX_ELECTION_MS),
                "--heartbeat-interval", str(HEARTBEAT_MS), *self.extra_args]

    def start(self, member: Member, wait: bool = True) -> Member:
        """Launch ``member`` on its data directory; with ``wait``, until its /status answers."""
        if member.running:
            raise RuntimeError(f"{member} is already running")
        command = self.command(member)
        with open(member.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(command)}\n".encode())
            log.flush()
            member.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, cwd=_project_root())
        member.paused = False
        if wait:
            self.wait_ready(member)
        return member

    def start_all(self, wait: bool = True) -> ProcessCluster:
        """Launch every member not running, then (with ``wait``) wait for all: they start in parallel."""
        started = [self.start(m, wait=False) for m in self.members if not m.running]
        if wait:
            for member in started:
                self.wait_ready(member)
        return self

    def wait_ready(self, member: Member, timeout: float | None = None) -> dict:
        """Until ``member`` answers /status; fails at once, with its log, if its process exits."""
        def ready() -> dict | None:
            if not member.running:
                exit_status = member.process.returncode if member.process else None
                raise AssertionError(f"{member.name} exited with status {exit_status} before it was ready")
            return self.status(member)
        try:
            return wait_for(ready, timeout or self.start_timeout, f"{member.name} to answer /status", interval=0.05)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{member.name}'s log:\n{member.log_tail()}") from None

    def stop(self, member: Member, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (a clean stop) and wait; returns the exit status. A paused member is resumed
        so that it can handle the signal. Escalates to SIGKILL, and fails, past ``timeout``."""
        return self._end(member, signal.SIGTERM, timeout)

    def kill(self, member: Member) -> int:
        """SIGKILL: a crash; nothing is flushed beyond what the member already made durable."""
        return self._end(member, signal.SIGKILL, STOP_TIMEOUT)

    def _end(self, member: Member, signum: signal.Signals, timeout: float) -> int:
        process = member.process
        if process is None:
            raise RuntimeError(f"{member.name} was never started")
        if process.poll() is None:
            process.send_signal(signum)
            if member.paused:
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"{member.name} did not exit within {timeout}s of {signum.name}; "
                                     f"its log:\n{member.log_tail()}") from None
        member.paused = False
        return process.returncode

    def pause(self, member: Member) -> None:
        """SIGSTOP: the process freezes (no timers, no answers) but keeps its sockets open."""
        self._signal_running(member, signal.SIGSTOP)
        member.paused = True

    def resume(self, member: Member) -> None:
        self._signal_running(member, signal.SIGCONT)
        member.paused = False

    def _signal_running(self, member: Member, signum: signal.Signals) -> None:
        if not member.running:
            raise RuntimeError(f"{member.name} is not running")
        assert member.process is not None
        member.process.send_signal(signum)

    def restart(self, member: Member, wait: bool = True) -> Member:
        """Stop (cleanly) if running, then start again on the same data directory."""
        if member.running:
            self.stop(member)
        return self.start(member, wait)

    def wipe(self, member: Member) -> None:
        """Delete ``member``'s durable state (term, vote, log): it restarts as a blank member."""
        if member.running:
            raise RuntimeError(f"stop {member.name} before wiping its data")
        shutil.rmtree(member.data_dir, ignore_errors=True)

    def close(self) -> None:
        """Kill every member still running and reap it; safe to call more than once."""
        for member in self.members:
            process = member.process
            if process is not None and process.poll() is None:
                process.kill()      # SIGKILL ends a stopped process too
            if process is not None:
                process.wait()
            member.paused = False
        atexit.unregister(self.close)

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- observing over HTTP ----------------------------------------------------------------

    def status(self, member: Member, timeout: float = STATUS_TIMEOUT) -> dict | None:
        """``member``'s /status document, or None when it does not answer with one in time."""
        try:
            result = http("GET", member.admin_url + "/status", timeout=timeout)
            return result.json() if result.status == 200 else None
        except (OSError, ValueError):
            return None

    def leader(self, among: Sequence[Member] | None = None, timeout: float = 10.0) -> Member:
        """Wait until one of ``among`` (default: the running members) leads and every other one
        answers /status, in the same term, naming it as the leader."""
        candidates = list(among) if among is not None else self.running()

        def agreed() -> Member | None:
            clusters = {m: (self.status(m) or {}).get("cluster") for m in candidates}
            if not all(clusters.values()):
                return None
            leaders = [m for m, c in clusters.items() if c["state"] == "Leader"]
            if len(leaders) != 1:
                return None
            term = clusters[leaders[0]]["term"]
            if all(c["term"] == term and c["leader"] == leaders[0].binding for c in clusters.values()):
                return leaders[0]
            return None
        return wait_for(agreed, timeout, f"one leader agreed on by {[m.name for m in candidates]}", interval=0.05)

    def member_of(self, binding: str) -> Member:
        return next(m for m in self.members if m.binding == binding)

    def logs(self, lines: int = 20) -> str:
        """Every member's last log lines, for a failure message."""
        return "\n".join(f"--- {m.name} ({m.log_path}):\n{m.log_tail(lines)}" for m in self.members)


def _project_root() -> Path:
    """Where ``python -m kvstore`` finds the package even without an installed copy."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def process_clusters(tmp_path: Path) -> Iterator[Callable[..., ProcessCluster]]:
    """A factory of :class:`ProcessCluster` under the test's tmp_path; every cluster it made is
    killed when the test ends, passed or failed, and a failed test shows the members' logs."""
    clusters: list[ProcessCluster] = []

    def make(size: int = 3, extra_args: Sequence[str] = (), **options: Any) -> ProcessCluster:
        cluster = ProcessCluster(tmp_path / f"cluster{len(clusters) + 1}", size, extra_args, **options)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:   # runs whether the test passed or failed
        cluster.close()
        print(f"\nmember logs of {cluster.base_dir}:\n{cluster.logs()}")   # pytest shows it for a failed test only
