"""The summary of a benchmark: medians across runs, the best-of-PySyncObj column, ratios, the table.

For every ranked metric the "best PySyncObj" column holds the better of the PySyncObj
configurations' medians (higher ops/s; lower latency, RSS, CPU) and names the configuration
that reached it, so that ckite-py is compared with PySyncObj at its best for each row, as issue
13 asks, never with one configuration alone. Ratios are always ckite-py's value divided by
PySyncObj's, whatever the direction of the metric: each row says whether higher or lower is
better. The table shows the ratio to the best column; the JSON also keeps the ratio to each
configuration. Counts (failures, elections, other processes' load) are not ranked: they have
no best and no ratio. Nothing here judges a number; ``benchmarks.targets`` prints met / not met.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import procstat, targets
from benchmarks.systems import SYSTEMS


@dataclass(frozen=True)
class Metric:
    key: str
    label: str           # may name {inflight}, {threads}, {readers}, {member_readers}, {fill_keys}: the run's options
    get: Callable[[dict[str, Any]], float | None]
    better: str | None   # "higher" or "lower"; None: a count to read (failures, load), not to rank
    digits: int = 1


def _row(name: str, field: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda outcome: outcome.get("rows", {}).get(name, {}).get(field)


def _peak(section: str) -> Callable[[dict[str, Any]], float | None]:
    def get(outcome: dict[str, Any]) -> float | None:
        members = outcome.get(section)
        return max(m["peak_rss_mib"] for m in members) if members else None
    return get


def _failed(row: dict[str, Any]) -> int:
    """Operations of a row that failed, or were still unfinished when the drain gave up."""
    return row.get("errors", 0) + row.get("undrained", 0)


def _row_failed(name: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda outcome: _failed(outcome["rows"][name]) if name in outcome.get("rows", {}) else None


def _timed_rows(field: Callable[[dict[str, Any]], float]) -> Callable[[dict[str, Any]], float | None]:
    """The sum of ``field`` over the timed rows (the fill retries its failures; they are in its row)."""
    def get(outcome: dict[str, Any]) -> float | None:
        rows = outcome.get("rows")
        return sum(field(r) for name, r in rows.items() if name != "fill") if rows else None
    return get


def _foreign(outcome: dict[str, Any]) -> float | None:
    values = [r["foreign_busy_cores"] for r in outcome.get("rows", {}).values()
              if r.get("foreign_busy_cores") is not None]
    return round(statistics.mean(values), 2) if values else None


METRICS: tuple[Metric, ...] = (
    Metric("seq_ops_per_s", "(1) sequential writes, 1 client: ops/s", _row("sequential_write", "ops_per_s"), "higher"),
    Metric("seq_p50_ms", "(1)   p50 latency ms", _row("sequential_write", "p50_ms"), "lower", 2),
    Metric("seq_p99_ms", "(1)   p99 latency ms", _row("sequential_write", "p99_ms"), "lower", 2),
    Metric("w16_ops_per_s", "(2) {inflight} writes in flight, 16 B: committed ops/s",
           _row("concurrent_write_16B", "ops_per_s"), "higher"),
    Metric("w16_p99_ms", "(2)   p99 latency ms", _row("concurrent_write_16B", "p99_ms"), "lower", 1),
    Metric("w16_submit_us", "(2)   time inside write_async, us per call",
           _row("concurrent_write_16B", "submit_us_mean"), "lower", 1),
    Metric("w16_failed", "(2)   failed or unfinished writes", _row_failed("concurrent_write_16B"), None, 0),
    Metric("w16_new_terms", "(2)   elections during the row (new terms)", _row("concurrent_write_16B", "new_terms"),
           None, 0),
    Metric("w16t_ops_per_s", "(2b) {threads} threads of blocking writes, 16 B: ops/s",
           _row("concurrent_write_16B_threads", "ops_per_s"), "higher"),
    Metric("w16t_p99_ms", "(2b)   p99 latency ms", _row("concurrent_write_16B_threads", "p99_ms"), "lower", 1),
    Metric("w1k_ops_per_s", "(2) {inflight} writes in flight, 1 KiB: committed ops/s",
           _row("concurrent_write_1KiB", "ops_per_s"), "higher"),
    Metric("w1k_p99_ms", "(2)   p99 latency ms", _row("concurrent_write_1KiB", "p99_ms"), "lower", 1),
    Metric("w1k_failed", "(2)   failed or unfinished writes", _row_failed("concurrent_write_1KiB"), None, 0),
    Metric("w1k_new_terms", "(2)   elections during the row (new terms)", _row("concurrent_write_1KiB", "new_terms"),
           None, 0),
    Metric("read_ops_per_s", "(3) linearizable reads on the leader, {readers} clients: reads/s",
           _row("linearizable_read", "ops_per_s"), "higher"),
    Metric("read_p99_ms", "(3)   p99 latency ms", _row("linearizable_read", "p99_ms"), "lower", 1),
    Metric("read_all_ops_per_s", "(3b) linearizable reads on every member, {member_readers} readers each: reads/s",
           _row("linearizable_read_every_member", "ops_per_s"), "higher"),
    Metric("read_all_p50_ms", "(3b)   p50 latency ms", _row("linearizable_read_every_member", "p50_ms"), "lower", 2),
    Metric("read_all_p99_ms", "(3b)   p99 latency ms", _row("linearizable_read_every_member", "p99_ms"), "lower", 1),
    Metric("rss_rows_mib", "(4) peak RSS of the largest member, MiB", _peak("memory_after_rows"), "lower"),
    Metric("rss_fill_mib", "(4) peak RSS of the largest member at {fill_keys:,} keys, MiB", _peak("memory_at_fill"),
           "lower"),
    Metric("cpu_w16", "(4) CPU s per 1000 writes, 3 members (16 B row)",
           _row("concurrent_write_16B", "cpu_s_per_1000_ops"), "lower", 3),
    Metric("cpu_w1k", "(4) CPU s per 1000 writes, 3 members (1 KiB row)",
           _row("concurrent_write_1KiB", "cpu_s_per_1000_ops"), "lower", 3),
    Metric("cpu_seq", "(4) CPU s per 1000 writes, 3 members (sequential)",
           _row("sequential_write", "cpu_s_per_1000_ops"), "lower", 3),
    Metric("errors", "failed or unfinished operations, timed rows", _timed_rows(_failed), None, 0),
    Metric("new_terms", "elections during the timed rows (new terms)", _timed_rows(lambda r: r.get("new_terms", 0)),
           None, 0),
    Metric("fill_retries", "failed writes retried during the fill", _row("fill", "errors"), None, 0),
    Metric("fill_new_terms", "elections during the fill (new terms)", _row("fill", "new_terms"), None, 0),
    Metric("foreign_load", "other processes' busy cores during rows (mean)", _foreign, None, 2),
)


def machine() -> dict[str, Any]:
    """What any benchmark's numbers depend on: machine, load, code and library versions."""
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        cython_thrift = importlib.util.find_spec("thriftpy2.protocol.cybin") is not None
    except ImportError:
        cython_thrift = False
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": procstat.load_average(),
        "ckite_commit": _git("rev-parse", "--short", "HEAD"),
        "ckite_tree_dirty": bool(_git("status", "--porcelain", "--", "ckite")),
        "versions": {p: version(p) for p in ("pysyncobj", "thriftpy2", "msgpack")},
        "thriftpy2_cython": cython_thrift,
    }


def environment(options: Any) -> dict[str, Any]:
    """What the numbers depend on: machine, load, versions, options."""
    return {
        **machine(),
        "options": {"systems": options.systems, "duration_s": options.duration, "warmup_s": options.warmup,
                    "inflight": options.inflight, "writer_threads": options.writer_threads,
                    "read_clients": options.read_clients, "member_readers": options.member_readers,
                    "value_sizes": [options.small, options.large], "fill_keys": options.fill_keys,
                    "fill_window": options.fill_window, "runs": options.runs},
        "fsync": {name: SYSTEMS[name].fsync for name in options.systems},
        "configs": {name: {"config": SYSTEMS[name].config, "durability": SYSTEMS[name].durability,
                           "read_path": SYSTEMS[name].read_path} for name in options.systems},
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def summarize(runs: list[dict[str, Any]], options: Any) -> dict[str, Any]:
    """Medians per system and metric over ``runs``, ratios, targets and the printed table."""
    summary: dict[str, dict[str, float | None]] = {}
    for system in options.systems:
        outcomes = [run[system] for run in runs if system in run]
        summary[system] = {}
        for metric in METRICS:
            values = [v for v in (metric.get(o) for o in outcomes) if v is not None]
            summary[system][metric.key] = round(statistics.median(values), 4) if values else None
        summary[system]["failed_runs"] = sum(1 for o in outcomes if "error" in o)
    ours, theirs = _sides(options.systems)
    best = best_of(summary, theirs)
    ratios: dict[str, dict[str, float | None]] = {}
    if ours and theirs:   # the first is the one the table shows
        ratios[f"{ours}/{BEST}"] = {key: _ratio(summary[ours][key], b and b["value"]) for key, b in best.items()}
        for other in theirs:
            ratios[f"{ours}/{other}"] = {m.key: _ratio(summary[ours][m.key], summary[other][m.key])
                                         for m in METRICS if m.better}
    document = {"summary": summary, BEST: best, "ratios": ratios,
                "targets": targets.issue_13(summary, best, ours) + targets.issue_15(summary)}
    document["table"] = table(document, options, len(runs))
    return document


#: The name of the best-of-PySyncObj column, in the JSON and in the ratio's name.
BEST = "best-pysyncobj"


def best_of(summary: dict[str, dict[str, Any]], theirs: list[str]) -> dict[str, dict[str, Any] | None]:
    """For every ranked metric, ``{"value", "system"}``: the better of the PySyncObj
    configurations' medians and the configuration that reached it (None: none has the metric).
    Every PySyncObj configuration in the run competes: by default the two issue 13 names."""
    best: dict[str, dict[str, Any] | None] = {}
    if not theirs:
        return best
    for metric in METRICS:
        if metric.better is None:
            continue
        candidates = [(summary[s][metric.key], s) for s in theirs if summary[s][metric.key] is not None]
        pick = max if metric.better == "higher" else min
        value, system = pick(candidates, key=lambda c: c[0]) if candidates else (None, None)
        best[metric.key] = None if system is None else {"value": value, "system": system}
    return best


def _sides(systems: list[str]) -> tuple[str | None, list[str]]:
    ours = [s for s in systems if SYSTEMS[s].family == "ckite"]
    theirs = [s for s in systems if SYSTEMS[s].family == "pysyncobj"]
    return (ours[0] if ours else None), theirs


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def table(document: dict[str, Any], options: Any, runs: int) -> str:
    """The per-configuration medians, the best-of-PySyncObj column and the ratio ours/best."""
    summary, best = document["summary"], document[BEST]
    systems = options.systems
    ratio_name = next(iter(document["ratios"]), None)   # ours/best, when both sides ran
    extra = ["best PySyncObj", ratio_name] if ratio_name else []
    headers = [f"metric (median of {runs} run{'' if runs == 1 else 's'})", *systems, *extra]
    lines: list[list[str]] = []
    for metric in METRICS:
        label = metric.label.format(inflight=options.inflight, threads=options.writer_threads,
                                    readers=options.read_clients, member_readers=options.member_readers,
                                    fill_keys=options.fill_keys)
        line = [f"{label} [{metric.better} is better]" if metric.better else label]
        line += [_fmt(summary[s][metric.key], metric.digits) for s in systems]
        if ratio_name:
            top = best.get(metric.key)
            ratio = document["ratios"][ratio_name].get(metric.key)
            line.append("" if top is None else
                        f"{_fmt(top['value'], metric.digits)} ({targets.short_name(top['system'])})")
            line.append("" if ratio is None else _fmt(ratio, 2) + "x")
        lines.append(line)
    lines.append(["(5) fsync on acknowledged writes", *("on" if SYSTEMS[s].fsync else "off" for s in systems),
                  *("" for _ in extra)])
    failed = [s for s in systems if summary[s]["failed_runs"]]
    widths = [max(len(row[i]) for row in [headers, *lines]) for i in range(len(headers))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths, strict=False)))]
    out.append("  ".join("-" * w for w in widths))
    for row in lines:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=False))))
    out.append("")
    for s in systems:
        out.append(f"{s}: {SYSTEMS[s].config}; reads: {SYSTEMS[s].read_path}")
    if failed:
        out.append("runs that failed (see JSON 'error'): " + ", ".join(f"{s} x{summary[s]['failed_runs']}"
                                                                      for s in failed))
    if ratio_name:
        out.append(f"best PySyncObj: for each ranked row, the better of {' and '.join(_sides(systems)[1])} "
                   f"(named in parentheses); {ratio_name} is ours over that column")
    if document.get("targets"):
        out.append("")
        out.append("targets of issues 13 and 15 (medians; issue 13 against the best PySyncObj column, "
                   "issue 15 against plain writes and ckite-nosessions; informational):")
        for g in document["targets"]:
            mark = {True: "met", False: "NOT met", None: "?"}[g["met"]]
            out.append(f"  {mark:8} {g['goal']}: {g['detail']}")
    return "\n".join(out)
