"""Where the ckite leader's and a follower's interpreter time goes, per committed entry.

``python -m benchmarks --only ckite --profile DIR`` attaches py-spy (``--gil``: only samples in
which a thread holds the GIL, i.e. interpreter time; SQLite's fsync and socket waits release
it) to the leader and to one follower during the 16 B concurrent-writes row. It writes, per
member, the raw collapsed stacks (``*.txt``, loadable in speedscope or flamegraph.pl) and a
breakdown by stage of the write path (``breakdown.json``, ``breakdown.txt``): samples / rate /
committed entries = microseconds of interpreter time per committed entry.

Stages are recognised by the innermost frame of a sample that belongs to a known stage (see
``STAGES``); a sample with none is "other", listed by its innermost ckite/kvstore frame.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

RATE = 200   # samples per second per process

#: (stage, predicate on one frame "function (path:line)"). The first stage, scanning a sample
#: from its innermost frame outwards, whose predicate matches a frame, takes the sample.
STAGES: list[tuple[str, Callable[[str], bool]]] = []


def _stage(name: str, *needles: str) -> None:
    STAGES.append((name, lambda frame, needles=needles: any(n in frame for n in needles)))


# Innermost-first order matters: a SQLite call made by the follower's persist step counts as
# "storage", a thrift decode under the server's handler counts as "thrift", and so on.
_stage("storage: SQLite append (executemany, commit)", "sqlite_storage.py", "sqlite_utils", "log/memory_storage.py")
_stage("thrift: encode/decode and socket I/O", "thriftpy2", "thrift_codec.py", "thrift_transport.py",
       "frame_check.py")
_stage("codec: msgpack command/result encoding", "ckite/codec.py", "ckite/commands.py")
_stage("future completion (set_result, callbacks)", "concurrent/futures", "pending.py")
_stage("applier: apply to the state machine", "applier.py", "kvstore/store.py")
_stage("consensus: follower append checks (follower.py)", "follower.py")
_stage("consensus: leader replication and commit rule (leader.py)", "leader.py", "progress.py", "read_index.py",
       "membership.py")
_stage("consensus core: propose, dispatch, log view (consensus.py, raft_log.py)", "raft_log.py", "consensus.py",
       "log/entry.py", "consensus/role.py")
_stage("runtime: replicator thread", "replicator.py")
_stage("runtime: submit and forward (node.py, api.py)", "node.py", "api.py")
_stage("metrics", "ckite/metrics/", "prometheus_client/")
_stage("runtime: other threads (worker, election)", "worker.py", "election_timer.py")
_stage("benchmark load generator", "benchmarks/load.py", "benchmarks/systems.py")
# Only a lock or condition call itself: every thread's outermost frames are in threading.py too.
STAGES.append(("threading: locks, conditions, events",
               lambda frame: "threading.py" in frame and not frame.startswith(("Thread.run", "Thread._bootstrap"))))


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def during_row(directory: Path, duration: float, mode: str = "gil"
               ) -> Callable[[Any, int], Callable[[], dict[str, Any]]]:
    """A hook for ``runner.run_row``: py-spy the leader and one follower while the row runs.

    ``mode`` "gil" samples only the thread holding the GIL (interpreter time); "wall" samples
    every thread, idle or not (where each thread waits: locks, fsync, sockets)."""
    flags = ["--gil"] if mode == "gil" else ["--idle"]
    def start(cluster: Any, leader: int) -> Callable[[], dict[str, Any]]:
        exe = py_spy()
        if exe is None:
            return lambda: {"error": "py-spy not installed (pip install py-spy)"}
        directory.mkdir(parents=True, exist_ok=True)
        follower = next(n for n in range(len(cluster.members)) if n != leader)
        targets = {"leader": cluster.members[leader].pid, "follower": cluster.members[follower].pid}
        spies = {}
        for role, pid in targets.items():
            out = directory / f"{role}.txt"
            spies[role] = (out, subprocess.Popen(
                [exe, "record", "--pid", str(pid), *flags, "--threads", "--format", "raw", "--rate", str(RATE),
                 "--duration", str(sampled_seconds(duration)), "--full-filenames", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))

        def finish() -> dict[str, Any]:
            files: dict[str, Any] = {"seconds": sampled_seconds(duration), "mode": mode}
            for role, (out, spy) in spies.items():
                try:
                    _, err = spy.communicate(timeout=duration + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    _, err = spy.communicate()
                if spy.returncode != 0 or not out.exists():
                    files[role] = {"error": f"py-spy exited {spy.returncode}: {err.strip()[-300:]}"}
                else:
                    files[role] = {"file": str(out)}
            return files
        return finish
    return start


def sampled_seconds(duration: float) -> int:
    """py-spy samples whole seconds: stay inside the row."""
    return max(1, math.floor(duration))


def parse(path: Path) -> Counter[tuple[str, ...]]:
    """Collapsed stacks (root first) and their sample counts from a py-spy raw file."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def classify(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        for name, matches in STAGES:
            if matches(frame):
                return name
    return "other: " + _innermost_own_frame(stack)


def _innermost_own_frame(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        if "/ckite/" in frame or "/kvstore/" in frame:
            return frame.split(" (")[0]
    return stack[-1].split(" (")[0] if stack else "?"


def thread_of(stack: tuple[str, ...]) -> str:
    """The thread's name without its port (e.g. "ckite-apply", "ckite-replicate"), from the
    first element py-spy writes with --threads: ``thread (TID): NAME``."""
    head = stack[0] if stack else ""
    if not head.startswith("thread ("):
        return "?"
    name = head.partition("): ")[2].strip() or head
    parts = name.split("-")
    if len(parts) >= 3 and parts[0] == "ckite" and parts[1].isdigit():
        return "ckite-" + parts[2].rstrip("0123456789_")
    if name.startswith("bench-client"):
        return "bench-client"
    if name == "MainThread":
        return "main (load generator)"
    return name.rstrip("0123456789_-") or name


def _function(frame: str) -> str:
    """"func (path:line)" -> "func (file)": one entry per function, lines merged."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


def _line(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({'/'.join(where.rstrip(')').split('/')[-2:])})"


def breakdown(path: Path, entries: int, mode: str = "gil", rate: int = RATE) -> dict[str, Any]:
    """Microseconds per committed entry (of GIL time in "gil" mode, of thread time in "wall"
    mode), by stage, by thread, by innermost function and line, and per thread."""
    stacks = parse(path)
    total = sum(stacks.values())
    by_stage: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    by_line: Counter[str] = Counter()
    per_thread: dict[str, Counter[str]] = {}
    for stack, count in stacks.items():
        frames = stack[1:] if stack and stack[0].startswith("thread (") else stack
        thread = thread_of(stack)
        by_stage[classify(frames)] += count
        by_thread[thread] += count
        if frames:
            by_function[_function(frames[-1])] += count
            by_line[_line(frames[-1])] += count
            per_thread.setdefault(thread, Counter())[_line(frames[-1])] += count

    def per_entry(samples: int) -> float:
        return round(samples / rate / max(entries, 1) * 1e6, 1)

    return {
        "mode": mode, "samples": total, "rate_hz": rate, "entries": entries,
        "us_per_entry": per_entry(total),
        "by_stage_us_per_entry": {k: per_entry(v) for k, v in by_stage.most_common()},
        "by_thread_us_per_entry": {k: per_entry(v) for k, v in by_thread.most_common()},
        "top_functions_us_per_entry": {k: per_entry(v) for k, v in by_function.most_common(20)},
        "top_lines_us_per_entry": {k: per_entry(v) for k, v in by_line.most_common(20)},
        "per_thread_top_lines_percent": {
            t: {k: round(v * 100 / sum(c.values()), 1) for k, v in c.most_common(8)}
            for t, c in sorted(per_thread.items(), key=lambda item: -sum(item[1].values()))},
    }


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for role, data in results.items():
        what = "GIL-holding time" if data["mode"] == "gil" else "thread time (all threads, idle included)"
        lines.append(f"== {role}: {data['us_per_entry']} us of {what} per committed entry "
                     f"({data['samples']} samples at {data['rate_hz']} Hz, {data['entries']} entries)")
        for title, key in (("by stage", "by_stage_us_per_entry"), ("by thread", "by_thread_us_per_entry"),
                           ("innermost functions", "top_functions_us_per_entry"),
                           ("innermost lines", "top_lines_us_per_entry")):
            lines.append(f"  {title}:")
            for name, us in data[key].items():
                lines.append(f"    {us:8.1f} us  {name}")
        lines.append("  per thread, innermost lines (% of that thread's samples):")
        for thread, top in data["per_thread_top_lines_percent"].items():
            lines.append(f"    {thread}:")
            for name, pct in top.items():
                lines.append(f"      {pct:5.1f} %  {name}")
    return "\n".join(lines)


def write_breakdown(directory: Path, row: dict[str, Any]) -> str | None:
    """Turn the row's py-spy files into breakdown.json/.txt in ``directory``; return the text."""
    files = row.get("profile") or {}
    # Entries committed while py-spy sampled: the row's rate times the seconds sampled.
    entries = round(row["ops_per_s"] * min(files.get("seconds", 0), row["elapsed_s"]))
    results = {role: breakdown(Path(info["file"]), entries, files.get("mode", "gil"))
               for role, info in files.items()
               if isinstance(info, dict) and "file" in info}
    if not results:
        return None
    text = render(results)
    (directory / "breakdown.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "breakdown.txt").write_text(text + "\n")
    return text
