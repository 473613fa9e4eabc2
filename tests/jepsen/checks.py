"""The checks after a run, besides linearizability: acknowledged writes that vanished, time to
recover after each heal, and what the members' logs say. Pure functions over the history and
the facts the runner collected, so a saved history can be checked again (``--check FILE``).
"""
from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.jepsen.history import FAIL, OK, History, Op

#: Log lines that mean a member lost a thread or gave up: never normal, faults or not.
FATAL_LOG = re.compile(r"Exception in thread|\bCRITICAL\b")
#: An exception the member caught and logged with its stack: it lived on, but something failed
#: that should not have (reported as a warning, with the stack).
TRACEBACK_LOG = re.compile(r"Traceback \(most recent call last\)")
ERROR_LOG = re.compile(r"\bERROR\b")


def lost_writes(history: History, final: Mapping[str, str | None]) -> list[str]:
    """Acknowledged writes missing from the final state without a write that could follow them.

    The final value of a key was written by some operation W; any acknowledged write invoked
    after W had completed came after W in every linearization, so the final value should be its
    (or a later one's). A key absent at the end, after acknowledged writes, lost them all; a
    final value nobody wrote is a phantom.
    """
    problems = []
    for key, ops in sorted(history.by_key().items()):
        if key not in final:
            continue
        acknowledged = [op for op in ops if op.writes and op.outcome == OK]
        value = final[key]
        if value is None:
            problems += [f"{key} absent at the end after acknowledged {op.describe()}" for op in acknowledged]
            continue
        writers = [op for op in ops if op.writes and op.value == value and op.outcome != FAIL]
        if not writers:
            problems.append(f"{key} ends as {value!r}, which no operation wrote")
            continue
        written_by = min(writers, key=lambda op: op.complete if op.outcome == OK else float("inf"))
        if written_by.outcome != OK:
            continue   # an unknown write may have landed last of all
        problems += [f"{key} ends as {value!r} ({written_by.describe().strip()}) but lost the later "
                     f"acknowledged {op.describe().strip()}"
                     for op in acknowledged if op.invoke > (written_by.complete or 0.0)]
    return problems


@dataclass(frozen=True)
class Recovery:
    """Seconds from each heal until every member has served a successful operation again."""

    times: list[float]
    #: Heals followed by the next fault (or the end) before every member served again.
    interrupted: int

    @property
    def p50(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def max(self) -> float | None:
        return max(self.times) if self.times else None

    def describe(self) -> str:
        if not self.times:
            return f"recovery n/a ({self.interrupted} interrupted)"
        return f"recovery p50={self.p50:.2f}s max={self.max:.2f}s over {len(self.times)} heals" + \
               (f" ({self.interrupted} interrupted)" if self.interrupted else "")


def recovery(history: History, members: Iterable[str]) -> Recovery:
    """Per heal: until the last of ``members`` answers an operation invoked after the heal.

    Every member, not just any: after a kill or an isolation the majority may never have
    stopped serving, and what the heal must restore is the member that was cut off.
    """
    heals = [e.time for e in history.events if e.phase == "heal"]
    starts = sorted(e.time for e in history.events if e.phase == "start")
    served: dict[str, list[tuple[float, float]]] = {member: [] for member in members}
    for op in history.ops:
        if _answered(op) and op.complete is not None and op.node in served:
            served[op.node].append((op.invoke, op.complete))
    times, interrupted = [], 0
    for healed in heals:
        next_fault = next((t for t in starts if t > healed), float("inf"))
        firsts = [min((done for invoked, done in ops if invoked >= healed), default=None) for ops in served.values()]
        if None in firsts or max(firsts) > next_fault:   # type: ignore[type-var]
            interrupted += 1
        else:
            times.append(max(firsts) - healed)   # type: ignore[type-var]
    return Recovery(times, interrupted)


def _answered(op: Op) -> bool:
    """The cluster worked for ``op``: it succeeded, or a CAS was refused on the current value."""
    return op.outcome == OK or op.mismatch


@dataclass(frozen=True)
class LogFindings:
    fatal: list[str]
    tracebacks: list[str]
    errors: int
    error_samples: list[str]


def scan_logs(paths: Iterable[Path]) -> LogFindings:
    """What the members' logs say beyond the normal: fatal lines and logged stacks (each with
    its context), and the count of ERROR lines (with the first few)."""
    fatal, tracebacks, samples, errors = [], [], [], 0
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for number, line in enumerate(lines, start=1):
            context = f"{path.name}:{number}: " + "\n".join(lines[max(number - 2, 0):number + 12])
            if FATAL_LOG.search(line):
                fatal.append(context)
            elif TRACEBACK_LOG.search(line):
                tracebacks.append(context)
            elif ERROR_LOG.search(line):
                errors += 1
                if len(samples) < 10:
                    samples.append(f"{path.name}:{number}: {line}")
    return LogFindings(fatal, tracebacks, errors, samples)
