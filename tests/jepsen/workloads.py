"""The workloads a run can have (``scripts/jepsen --workload NAME``): each one's configuration,
clients, and own checker. The runner judges every run on the rest itself (crashes, convergence,
recovery, the members' logs), whatever its workload.

* ``register`` (the default; ``workload.py``): put/get/CAS on a few keys; linearizable key by key,
  no acknowledged write lost.
* ``counter`` (``counter.py``): increments of one key, each retried under its idempotency key
  until acknowledged; applied exactly once (``exactly_once.py``).

A checker reads only the history (the final reads are in it), so ``--check`` judges a saved one.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.jepsen.checks import lost_writes
from tests.jepsen.counter import COUNTER_KEY, CounterConfig, CounterWorkload
from tests.jepsen.exactly_once import exactly_once
from tests.jepsen.history import History, Op, Recorder
from tests.jepsen.linearizability import check_history
from tests.jepsen.workload import ClientThreads, Workload, WorkloadConfig
from tests.processes import Member

Config = WorkloadConfig | CounterConfig


@dataclass(frozen=True)
class Judgement:
    """A workload checker's verdict: ``valid`` None when it could not decide (out of budget);
    ``summary`` goes into the one-line verdict, ``fields`` into verdict.json."""

    valid: bool | None
    summary: str
    problems: list[str]
    fields: dict[str, Any]
    #: Operations to outline on the timeline (a minimal offending sub-history).
    witness: list[Op] = field(default_factory=list)


def judge_register(history: History, budget: float) -> Judgement:
    linearizability = check_history(history, budget)
    lost = lost_writes(history, history.final_values())
    problems = [f"lost write: {p}" for p in lost]
    if linearizability.linearizable is False:
        problems.append(linearizability.explain())
    fields = {"linearizable": linearizability.linearizable,
              "keys": [{"key": k.key, "linearizable": k.linearizable, "ops": k.ops, "checked": k.checked,
                        "seconds": round(k.seconds, 3)} for k in linearizability.keys],
              "lost_writes": lost}
    return Judgement(False if problems else linearizability.linearizable,
                     f"linearizable={yes(linearizability.linearizable)} lost={len(lost)}", problems, fields,
                     [op for key in linearizability.keys for op in key.witness])


def judge_counter(history: History, budget: float) -> Judgement:
    """``budget`` is unused: the check is linear in the history."""
    result = exactly_once(history, COUNTER_KEY)
    return Judgement(not result.problems, result.describe(), [f"counter: {p}" for p in result.problems],
                     {"counter": result.to_json()})


@dataclass(frozen=True)
class Kind:
    config: type
    clients: Callable[[Sequence[Member], Recorder, Any, int], ClientThreads]
    judge: Callable[[History, float], Judgement]


WORKLOADS: dict[str, Kind] = {
    WorkloadConfig.name: Kind(WorkloadConfig, Workload, judge_register),
    CounterConfig.name: Kind(CounterConfig, CounterWorkload, judge_counter),
}


def of_history(history: History) -> Kind:
    """The workload that made ``history`` (from its meta; histories from before the counter
    workload are the register's)."""
    return WORKLOADS[history.meta.get("workload", {}).get("name", WorkloadConfig.name)]


def yes(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "unknown"}[value]
