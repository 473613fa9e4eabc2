"""The counter workload's checker: did every acknowledged increment apply exactly once?

The history's increments (``counter.py``) each add 1 to a key that starts absent (0), and each
is sent, under its own idempotency key, until a member acknowledges it; the attempts that share
a key are one increment. What must hold, and what a violation means:

* **count**: the counter ends at the number of increments applied. When every increment was
  acknowledged that is exactly the number acknowledged: more is an increment applied twice,
  less an acknowledged one lost. Increments the run gave up on (``pending``) applied once or
  not at all, which only bounds it: acknowledged <= final <= acknowledged + pending.
* **distinct values**: each applied increment moved the counter to a value no other one did,
  so the acknowledged increments returned distinct values from 1 to the final one. A value
  returned twice is two increments answered from the same state (a lost update) or one
  answered with another's outcome; a value above the final one was lost afterwards.
* **real-time order**: an increment acknowledged before another was first sent took effect
  before it, so it returned the smaller value; otherwise a member answered from a stale state.
* **no rejection**: a correct cluster answers none of these requests with a 4xx.

A pure function of the history (its final read included), so a saved history is checked again
by ``scripts/jepsen --check``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.jepsen.history import INCR, OK, History, Op

#: How many instances of one kind of problem a message names.
EXAMPLES = 3


@dataclass(frozen=True)
class Increment:
    """The attempts under one idempotency key: from the first one's invocation to the
    acknowledged one's completion (``end`` and ``value`` None: never acknowledged)."""

    key: str
    start: float
    attempts: int
    end: float | None = None
    value: str | None = None
    #: The answer of an attempt rejected with a 4xx, if one was.
    rejected: str = ""

    def describe(self) -> str:
        at = f" -> {self.value!r} at {self.end:.3f}s" if self.end is not None else " (not acknowledged)"
        return f"{self.key} (sent at {self.start:.3f}s{at}, {self.attempts} attempts)"


def increments(ops: Iterable[Op]) -> list[Increment]:
    """The history's increments, in the order they were first sent."""
    attempts: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind == INCR:
            attempts.setdefault(op.idempotency_key, []).append(op)
    found = []
    for key, tries in attempts.items():
        acknowledged = next((op for op in tries if op.outcome == OK), None)
        rejected = next((op.error for op in tries if op.rejected), "")
        found.append(Increment(key, min(op.invoke for op in tries), len(tries),
                               acknowledged.complete if acknowledged else None,
                               acknowledged.result if acknowledged else None, rejected))
    return sorted(found, key=lambda increment: increment.start)


@dataclass(frozen=True)
class CounterResult:
    """What the checker found: the numbers, and ``problems`` in words (empty: none)."""

    key: str
    acknowledged: int
    pending: int
    attempts: int
    #: The counter's value read at the end (None: it was never read).
    final: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        """Every increment acknowledged, and each applied once: the count is exact."""
        return not self.problems and self.pending == 0

    def describe(self) -> str:
        final = "never read" if self.final is None else str(self.final)
        head = f"counter: {self.acknowledged} increments acknowledged ({self.attempts} attempts)"
        if self.problems:
            return f"{head}, final value {final}: NOT exactly once ({len(self.problems)} problems)"
        if self.pending:
            return (f"{head}, {self.pending} pending, final value {final}: within acknowledged..acknowledged+pending "
                    f"(no double apply, no loss; the pending ones' fate unknown, so not exact)")
        return f"{head}, final value {final}, exactly once"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "acknowledged": self.acknowledged, "pending": self.pending,
                "attempts": self.attempts, "final": self.final, "exactly_once": self.exactly_once,
                "problems": self.problems}


def exactly_once(history: History, key: str) -> CounterResult:
    """Check the increments of ``key`` in ``history`` against its final read."""
    found = increments(op for op in history.ops if op.key == key)
    acknowledged = [increment for increment in found if increment.end is not None]
    rejected = [increment for increment in found if increment.rejected]
    pending = [increment for increment in found if increment.end is None and not increment.rejected]
    attempts = sum(increment.attempts for increment in found)
    problems = []
    if rejected:
        problems.append(f"{len(rejected)} increments were rejected, e.g. "
                        + _some(f"{i.key}: {i.rejected}" for i in rejected))
    finals = history.final_values()
    final: int | None = None
    if key not in finals:
        problems.append(f"the counter {key!r} was not read at the end")
    else:
        text = "0" if finals[key] is None else finals[key]   # absent: no increment applied
        if _is_count(text):
            final = int(text)
            problems += _count_problems(final, len(acknowledged), len(pending))
            problems += _value_problems(acknowledged, final)
        else:
            problems.append(f"the counter {key!r} ends as {text!r}, not a whole number")
    return CounterResult(key, len(acknowledged), len(pending), attempts, final, problems)


def _count_problems(final: int, acknowledged: int, pending: int) -> list[str]:
    if final > acknowledged + pending:
        return [f"the counter ends at {final}, above the {acknowledged} acknowledged + {pending} pending increments: "
                f"{final - acknowledged - pending} applied more than once"]
    if final < acknowledged:
        return [f"the counter ends at {final}, below the {acknowledged} acknowledged increments: "
                f"{acknowledged - final} acknowledged increments lost"]
    return []


def _value_problems(acknowledged: list[Increment], final: int) -> list[str]:
    """What the values the acknowledged increments returned say: each one a count from 1 to
    ``final``, no two the same, in real-time order."""
    problems = []
    malformed = [i for i in acknowledged if not (_is_count(i.value) and int(i.value or "") >= 1)]
    if malformed:
        problems.append(f"{len(malformed)} increments returned a value that is not a count from 1, e.g. "
                        + _some(i.describe() for i in malformed))
    counted = [(int(i.value or ""), i) for i in acknowledged if i not in malformed]
    returned_to: dict[int, list[Increment]] = {}
    for value, increment in counted:
        returned_to.setdefault(value, []).append(increment)
    repeated = sorted((value, shared) for value, shared in returned_to.items() if len(shared) > 1)
    if repeated:
        problems.append(f"{len(repeated)} values were returned to more than one increment (a lost update, or an "
                        f"answer from another increment's outcome), e.g. "
                        + _some(f"{value} to " + " and ".join(i.describe() for i in shared)
                                for value, shared in repeated))
    above = [increment for value, increment in counted if value > final]
    if above:
        problems.append(f"{len(above)} acknowledged increments returned a value above the final {final} "
                        f"(increments were lost after them), e.g. " + _some(i.describe() for i in above))
    stale = _out_of_order(counted)
    if stale:
        problems.append(f"{len(stale)} increments returned less than one acknowledged before they were first sent "
                        f"(an answer from a stale state), e.g. " + _some(stale))
    return problems


def _out_of_order(counted: list[tuple[int, Increment]]) -> list[str]:
    """Increments that returned less than one acknowledged before they were first sent: a sweep
    in order of first sending, keeping the largest value among those acknowledged so far."""
    by_end = sorted(counted, key=lambda pair: pair[1].end or 0.0)
    largest: tuple[int, Increment] | None = None
    position, stale = 0, []
    for value, increment in sorted(counted, key=lambda pair: pair[1].start):
        while position < len(by_end) and (by_end[position][1].end or 0.0) < increment.start:
            if largest is None or by_end[position][0] > largest[0]:
                largest = by_end[position]
            position += 1
        if largest is not None and largest[0] > value:
            stale.append(f"{increment.describe()} after {largest[1].describe()}")
    return stale


def _is_count(text: str | None) -> bool:
    return text is not None and text.isascii() and text.isdigit()


def _some(lines: Iterable[str]) -> str:
    """The first ``EXAMPLES`` of ``lines``, for a message."""
    return "; ".join(list(lines)[:EXAMPLES])
