"""Clusters of member processes, the rows of the benchmark, and the CPU/memory accounting.

For each system (``benchmarks.systems.SYSTEMS``) the runner starts three member processes on
loopback, finds the leader, and asks the leader's process to run each workload (or, for the
reads on every member, every member's process at once) while it reads the CPU counters of all
three members from /proc. The rows run in this order on one cluster: warm-up, sequential
writes, concurrent writes (16 B async, 16 B from 64 threads, 1 KiB async), linearizable reads
on the leader, then on every member, then a fill to ``fill_keys`` distinct keys for the memory
row. Systems are interleaved run by run so that a change in the machine's load hits both
libraries alike.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks import load, procstat
from benchmarks.systems import CERT_NAME, CERTS_DIR, SYSTEMS
from tests.netutil import free_port
from tests.tls_certs import make_certs

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0       # three interpreters importing their libraries on 2 busy cores
LEADER_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class Options:
    """Everything a run is configured with (the command line maps onto it)."""

    systems: list[str]
    duration: float = 5.0
    warmup: float = 1.0
    inflight: int = 2000        # issue 13: the same window of 2000 writes in flight for both libraries
    writer_threads: int = 64    # row 2b: threads doing blocking writes
    read_clients: int = 64      # reader threads on the leader (row 3)
    member_readers: int = 64    # reader threads in each member (row 3b)
    small: int = 16
    large: int = 1024
    fill_keys: int = 100_000
    fill_window: int = 1000
    runs: int = 1
    out: Path = Path("artifacts/benchmark-results.json")
    profile_dir: Path | None = None
    profile_mode: str = "gil"
    profile_row: str = "concurrent_write_16B"
    workdir: Path | None = None
    keep: bool = False
    progress: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))


class MemberProcess:
    """A ``benchmarks.member`` process and the reader thread that queues its replies."""

    def __init__(self, system: str, binding: str, peers: list[str], data_dir: Path, log_path: Path) -> None:
        self.binding = binding
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.member", "--system", system, "--binding", binding,
             "--peers", ",".join(peers), "--data-dir", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            cwd=REPO, env=env, start_new_session=True)
        self.pid = self.process.pid
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"bench-reader-{binding}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:
                logger.warning("%s: not a protocol line: %r", self.binding, line)
        self._replies.put(None)   # end of output: the member exited

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            message = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"member {self.binding} did not answer within {timeout:.0f}s "
                               f"(log: {self.log_path})") from None
        if message is None:
            self._replies.put(None)
            raise RuntimeError(f"member {self.binding} exited (code {self.process.poll()}); "
                               f"log: {self.log_path}\n{self.log_tail()}")
        return message

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(message)
        return self.answer(timeout)

    def send(self, message: dict[str, Any]) -> None:
        """Send a request without waiting for its answer (to start a row on several members at once)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"member {self.binding} is gone: {exc}\n{self.log_tail()}") from exc

    def answer(self, timeout: float) -> dict[str, Any]:
        """The answer to the request sent last; a failed request raises RuntimeError."""
        reply = self.reply(timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"member {self.binding}: {reply.get('error')}")
        return reply

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Ask the member to stop; kill it (by its own pid) if it does not exit in time."""
        if self.process.poll() is None:
            try:
                self.request({"op": "stop"}, STOP_TIMEOUT)
            except (RuntimeError, TimeoutError) as exc:
                logger.warning("%s did not stop cleanly: %s", self.binding, exc)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Cluster:
    """Three members of one system on loopback ports, data under ``directory``."""

    SIZE = 3

    def __init__(self, system: str, directory: Path) -> None:
        self.system = system
        self.directory = directory
        if SYSTEMS[system].tls:
            make_certs(directory / CERTS_DIR, CERT_NAME)
        self.bindings = [f"127.0.0.1:{free_port()}" for _ in range(self.SIZE)]
        self.members = [self._launch(n, directory / f"member-{n}.log") for n in range(self.SIZE)]

    def _launch(self, n: int, log_path: Path) -> MemberProcess:
        binding = self.bindings[n]
        return MemberProcess(self.system, binding, [b for b in self.bindings if b != binding], self.data_dir(n),
                             log_path)

    def data_dir(self, n: int) -> Path:
        return self.directory / f"member-{n}"

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members]

    def wait_started(self, members: list[MemberProcess] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for member in self.members if members is None else members:
            message = member.reply(max(deadline - time.monotonic(), 0.1))
            if message.get("event") != "started":
                raise RuntimeError(f"member {member.binding} failed to start: {message.get('error')}\n"
                                   f"{member.log_tail()}")

    def relaunch(self, n: int) -> MemberProcess:
        """Start member ``n`` again, once stopped, on the same binding and data dir (which the
        caller may have emptied), and wait until it has started; its output goes to
        ``member-N.restarted.log``."""
        member = self.members[n] = self._launch(n, self.directory / f"member-{n}.restarted.log")
        self.wait_started([member])
        return member

    def states(self) -> list[dict[str, Any]]:
        """Every member's ``{"leader": bool, "term": int}``."""
        return [member.request({"op": "state"}, 10.0) for member in self.members]

    def leader(self, timeout: float = LEADER_TIMEOUT) -> tuple[int, int]:
        """Index of the member that leads and the highest term of any member (polled until one
        says it leads). Of two that say so (PySyncObj's deposed leader keeps saying it for up to
        30 s), the one in the higher term."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states()
            claims = [(state["term"], n) for n, state in enumerate(states) if state["leader"]]
            if claims:
                return max(claims)[1], max(state["term"] for state in states)
            time.sleep(0.1)
        raise TimeoutError(f"{self.system}: no leader within {timeout:.0f}s")

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _cpu(pids: list[int]) -> dict[int, float]:
    return {pid: procstat.cpu_seconds(pid) for pid in pids}


class Row(NamedTuple):
    """A timed row: its name in the results, the ``benchmarks.load`` workload and its arguments."""

    name: str
    workload: str
    args: dict[str, Any]
    everywhere: bool = False   # run in every member's process at once, not only the leader's


def run_row(cluster: Cluster, workload: str, args: dict[str, Any], timeout: float,
            during: Callable[[Cluster, int], Callable[[], Any]] | None = None,
            everywhere: bool = False) -> dict[str, Any]:
    """Run one workload in the leader (``everywhere``: in every member at once, results combined);
    add CPU of all members, the machine's load and the elections held during the row (new
    terms: a failover under load) to its result."""
    leader, term_before = cluster.leader()
    pids = cluster.pids
    finish = during(cluster, leader) if during else None
    cpu_before, machine_before, wall_before = _cpu(pids), procstat.MachineSample.now(), time.monotonic()
    if everywhere:
        request = {"op": "run", "workload": workload, "args": {**args, "latencies": True}}
        for member in cluster.members:
            member.send(request)
        result = load.combine([member.answer(timeout)["result"] for member in cluster.members])
    else:
        result = cluster.members[leader].request({"op": "run", "workload": workload, "args": args},
                                                 timeout)["result"]
    cpu_after, machine_after, wall = _cpu(pids), procstat.MachineSample.now(), time.monotonic() - wall_before
    if finish is not None:
        result["profile"] = finish()
    new_terms = max(state["term"] for state in cluster.states()) - term_before
    cpu = {pid: round(cpu_after[pid] - cpu_before[pid], 3) for pid in pids}
    cpu_total = sum(cpu.values())
    busy = procstat.busy_cores(machine_before, machine_after)
    done = result.get("completed_total", result["ops"])
    result.update({
        "leader": cluster.members[leader].binding,
        "new_terms": new_terms,
        "cpu_s_by_member": [cpu[pid] for pid in pids],
        "cpu_s_total": round(cpu_total, 3),
        "cpu_s_per_1000_ops": round(cpu_total / done * 1000, 4) if done else None,
        "wall_s": round(wall, 3),
        "machine_busy_cores": round(busy, 2),
        # Busy cores not explained by our members: other processes on the machine (and this runner).
        "foreign_busy_cores": round(max(busy - cpu_total / wall, 0.0), 2) if wall > 0 else None,
        "loadavg": procstat.load_average(),
    })
    return result


def _memory(cluster: Cluster) -> list[dict[str, float]]:
    return [procstat.memory_mib(pid) for pid in cluster.pids]


def run_system(system: str, options: Options, directory: Path) -> dict[str, Any]:
    """Start a cluster of ``system``, run every row on it, stop it; errors are recorded, not raised."""
    spec = SYSTEMS[system]
    outcome: dict[str, Any] = {"rows": {}, "loadavg_before": procstat.load_average()}
    say = options.progress
    d = options.duration
    drain = 30.0
    row_timeout = d + drain + 60
    profiler = None
    if options.profile_dir is not None and spec.family == "ckite":
        from benchmarks import profile
        profiler = profile.during_row(options.profile_dir / system, d, options.profile_mode)
    rows = [
        Row("sequential_write", "sequential", {"duration": d, "size": options.small}),
        Row("concurrent_write_16B", "window", {"duration": d, "size": options.small, "inflight": options.inflight,
                                               "drain_timeout": drain}),
        Row("concurrent_write_16B_threads", "writers", {"duration": d, "size": options.small,
                                                        "clients": options.writer_threads}),
        Row("concurrent_write_1KiB", "window", {"duration": d, "size": options.large, "inflight": options.inflight,
                                                "drain_timeout": drain}),
        Row("linearizable_read", "readers", {"duration": d, "clients": options.read_clients}),
        Row("linearizable_read_every_member", "readers", {"duration": d, "clients": options.member_readers},
            everywhere=True),
    ]
    if spec.rows is not None:   # a variant of another system runs only the rows it changes
        rows = [row for row in rows if row.name in spec.rows]
    started = time.monotonic()
    cluster = Cluster(system, directory)
    try:
        cluster.wait_started()
        outcome["startup_s"] = round(time.monotonic() - started, 2)
        leader, _ = cluster.leader()
        say(f"  {system}: started in {outcome['startup_s']}s, leader {cluster.members[leader].binding}")
        # Warm-up: the leader's first entries commit, connections open, code paths get hot.
        run_row(cluster, "sequential", {"duration": options.warmup / 2, "size": options.small}, row_timeout)
        run_row(cluster, "window", {"duration": options.warmup / 2, "size": options.small,
                                    "inflight": options.inflight, "drain_timeout": drain}, row_timeout)
        for name, workload, args, everywhere in rows:
            during = profiler if name == options.profile_row else None
            result = run_row(cluster, workload, args, row_timeout, during, everywhere)
            outcome["rows"][name] = result
            if during is not None and options.profile_dir is not None:
                from benchmarks import profile
                text = profile.write_breakdown(options.profile_dir / system, result)
                say(text or f"  {system}: no profile ({result.get('profile')})")
            say(f"  {system}: {name}: {result['ops_per_s']} ops/s, p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, errors {result['errors']}, unfinished {result.get('undrained', 0)}, "
                f"new terms {result['new_terms']}, foreign load {result['foreign_busy_cores']} cores")
        outcome["memory_after_rows"] = _memory(cluster)
        if spec.rows is None or "fill" in spec.rows:
            fill = run_row(cluster, "fill", {"keys": options.fill_keys, "size": options.small,
                                             "inflight": options.fill_window}, timeout=700.0)
            outcome["rows"]["fill"] = fill
            outcome["memory_at_fill"] = _memory(cluster)
            outcome["fill_keys"] = options.fill_keys
            say(f"  {system}: filled {options.fill_keys} keys in {fill['elapsed_s']}s "
                f"({fill['ops_per_s']} writes/s, {fill['errors']} failed and retried); peak RSS "
                f"{max(m['peak_rss_mib'] for m in outcome['memory_at_fill'])} MiB")
    except Exception as exc:   # one system failing must not lose the others' numbers
        logger.debug("system %s failed", system, exc_info=True)
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        say(f"  {system}: FAILED: {outcome['error']}")
    finally:
        cluster.stop()
    outcome["loadavg_after"] = procstat.load_average()
    return outcome


def run(options: Options) -> dict[str, Any]:
    """Every run, every system; returns (and writes to ``options.out``) the results document."""
    from benchmarks import report

    base = options.workdir or Path(tempfile.mkdtemp(prefix="ckite-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"meta": report.environment(options), "runs": []}
    try:
        for n in range(options.runs):
            options.progress(f"run {n + 1}/{options.runs} (load average {procstat.load_average()})")
            this_run: dict[str, Any] = {}
            for system in options.systems:
                directory = base / f"run-{n + 1}" / system
                directory.mkdir(parents=True, exist_ok=True)
                this_run[system] = run_system(system, options, directory)
            document["runs"].append(this_run)
            document.update(report.summarize(document["runs"], options))
            write_json(options.out, document)   # after every run: an interrupted run keeps its numbers
    finally:
        if not options.keep and options.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            options.progress(f"member logs and data kept in {base}")
    return document


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` whole or not at all (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
