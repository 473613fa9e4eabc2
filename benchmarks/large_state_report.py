"""The large-state benchmark's table: a block per state size, the systems side by side, issue 14's
targets beside ckite-py's numbers (``benchmarks.large_state_targets``). Per-member numbers are
written ``a / b / c`` in the order of the members' bindings (the JSON names them)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.large_state_row import PROBLEMS
from benchmarks.large_state_targets import retained_tail_mib
from benchmarks.status_poller import INTERVAL
from benchmarks.systems import COMPACTION_ENTRIES

MISSING = "-"


def _get(outcome: dict[str, Any], *path: Any) -> Any:
    value: Any = outcome
    for step in path:
        if value is None:
            return None
        value = value.get(step) if isinstance(step, str) else (value[step] if step < len(value) else None)
    return value


def _num(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def _each(outcome: dict[str, Any], section: str, key: str | None = None, digits: int = 1) -> str:
    """One number per member, ``a / b / c``."""
    items = outcome.get(section) or []
    return " / ".join(_num(item.get(key) if key else item, digits) for item in items) or MISSING


def _leadership(o: dict[str, Any]) -> str:
    terms, changes = _get(o, "leadership", "terms"), _get(o, "leadership", "leader_changes")
    if not terms:
        return MISSING
    return f"terms {terms[0]}-{terms[1]}; {changes} leader change{'' if changes == 1 else 's'}"


def _snapshots(o: dict[str, Any]) -> str:
    members = o.get("snapshots") or []
    if members and all(m["count"] is None for m in members):   # not reported: the compactions seen
        return " / ".join(str(m["log_compactions_seen"]) for m in members) + " compactions (no duration)"
    def one(m: dict[str, Any]) -> str:
        installed = f" +{len(m['installed'])} installed" if m["installed"] else ""
        return MISSING if m["count"] is None else f"{m['count']} ({_num(m['max_s'], 2)}){installed}"
    return " / ".join(one(m) for m in members) or MISSING


def _catch_up(o: dict[str, Any]) -> str:
    result = o.get("catch_up")
    if result is None:
        return MISSING
    if not result["caught_up"]:
        return f"did not catch up in {result['timeout_s']:.0f} s"
    return _num(result["seconds"])


def _write_time(o: dict[str, Any]) -> str:
    writes = o.get("writes")
    if not writes:
        return MISSING
    longest = writes.get("longest_write_s")
    return _num(writes["elapsed_s"]) + ("" if longest is None else f" ({_num(longest, 2)})")


def _tail(o: dict[str, Any]) -> str:
    return _num(retained_tail_mib(o)) if o.get("snapshots") else MISSING


#: (label, cell of one system's outcome, the target it is judged against: a goal of large_state_targets)
ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str], str | None], ...] = (
    ("writes acknowledged", lambda o: f"{_num(_get(o, 'writes', 'acknowledged'), 0)} of {o['writes_planned']:,}", None),
    ("failed writes (each retried)", lambda o: _num(_get(o, "writes", "failed"), 0), "failed writes"),
    ("time to write all, s (longest write)", _write_time, None),
    ("terms seen, leader changes", _leadership, "leader changes"),
    ("longest status answer per member, s", lambda o: _each(o, "status", "max_s", 2), "longest status answer"),
    ("status answer p99 per member, s", lambda o: _each(o, "status", "p99_s", 2), None),
    ("status polls timed out per member", lambda o: _each(o, "status", "timed_out", 0), None),
    ("peak RSS per member, MiB", lambda o: _each(o, "peak_rss_mib"), "peak RSS"),
    ("snapshots per member (longest, s)", _snapshots, None),
    ("snapshot time, median per member, s", lambda o: _each(o, "snapshots", "median_s", 2), None),
    ("wiped follower: serves the last key after, s", _catch_up, "wiped follower catch-up"),
    ("wiped follower: peak RSS, MiB", lambda o: _num(_get(o, "catch_up", "peak_rss_mib")), None),
    ("wiped follower: data dir after, MiB", lambda o: _num(_get(o, "catch_up", "data_dir_mib")), None),
    ("data dir per member after the writes, MiB", lambda o: _each(o, "data_dir_mib"), "data dir"),
    ("retained log tail (longest log x value), MiB", _tail, None),
)

MARKS = {True: "met", False: "NOT met", None: "?"}


def block(row: dict[str, Any]) -> str:
    """The table of one state size: ``row`` holds ``plan``, ``keys``, ``outcomes`` (by system) and
    ckite's ``targets``."""
    plan, outcomes = row["plan"], row["outcomes"]
    systems = list(outcomes)
    goals = {g["goal"]: g for g in row.get("targets", [])}
    headers = ["metric", *systems, "issue 14 target", "ckite"]
    lines = [headers]
    for label, cell, goal in ROWS:
        target = goals.get(goal) if goal else None
        lines.append([label, *(cell(outcomes[s]) for s in systems),
                      target["limit"] if target else "", MARKS[target["met"]] if target else ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = [f"state {plan['state_mib']:,} MiB: {row['keys']:,} values of {plan['value_kib']} KiB through the leader, "
           f"then {plan['overwrites']} overwrites; compaction every {COMPACTION_ENTRIES} entries; "
           f"every member's status polled every {INTERVAL * 1000:.0f} ms"]
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths, strict=False))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for system in systems:
        outcome = outcomes[system]
        for problem in PROBLEMS:
            if outcome.get(problem):
                out.append(f"{system}: {problem}: {outcome[problem]}")
        if outcome.get("members"):
            out.append(f"{system} members: {', '.join(outcome['members'])}")
    return "\n".join(out)


def table(rows: list[dict[str, Any]]) -> str:
    notes = ("status: ckite's GET /status; PySyncObj's 'status' utility command (syncobj_admin -status), "
             "answered on its tick thread.\nsnapshot time: from the first poll at which the member had applied "
             "the snapshot's index to the first poll that shows the snapshot (+-1 poll).")
    return "\n\n".join([*(block(row) for row in rows), notes])
