"""One run: start the cluster, run clients and nemesis, heal, read the final state, check, report.

Phases, in order, on one monotonic timeline:

1. start ``members`` processes on the fault network (``netns`` or ``proxy``) and wait for a leader;
2. clients run for ``time`` seconds; the nemesis runs beside them for all but the last
   ``cooldown`` seconds, then heals everything (clients keep going: the time to recover after
   that heal is measured like any other);
3. clients stop; the final value of every key is read linearizably (recorded in the history, as
   process -1, so the checker judges it with the rest);
4. every member must then hold exactly those values in its own state machine (local reads);
5. checks — the workload's own (``workloads.py``: linearizable and no lost acknowledged write,
   or exactly-once increments), converged, no crash — and the report.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.jepsen.checks import recovery, scan_logs
from tests.jepsen.cluster import JepsenCluster
from tests.jepsen.history import FINAL_PROCESS, GET, OK, History, Recorder, summarize
from tests.jepsen.nemesis import ALL, Nemesis, Timing
from tests.jepsen.report import write_report
from tests.jepsen.workload import CLIENT_TIMEOUT, WorkloadConfig, perform
from tests.jepsen.workloads import WORKLOADS, Config, yes
from tests.processes import Member

logger = logging.getLogger(__name__)

#: After the last heal: to elect a leader and answer the final reads, then for every member to
#: apply the log up to the end.
FINAL_TIMEOUT = 60.0


@dataclass
class RunConfig:
    out: Path
    time: float = 60.0
    seed: int = 0
    members: int = 3
    nemesis: list[str] = field(default_factory=lambda: list(ALL))
    #: The register workload's (``WorkloadConfig``) or the counter's (``CounterConfig``).
    workload: Config = field(default_factory=WorkloadConfig)
    timing: Timing = field(default_factory=Timing)
    #: Clients keep running this long after the nemesis' last heal.
    cooldown: float = 5.0
    #: Seconds the linearizability search may take (in all keys together).
    check_budget: float = 120.0
    #: ``auto`` (namespaces where possible), ``netns`` or ``proxy``: see network.py.
    network: str = "auto"
    #: Passed to every member: small so that snapshots and InstallSnapshot happen under faults.
    member_args: tuple[str, ...] = ("--compaction-threshold", "500")


def run(config: RunConfig) -> dict[str, Any]:
    """Run, check and write the report; returns the verdict (also in ``out/verdict.json``)."""
    config.out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder()
    wall_start = time.time()   # to find the history's monotonic seconds in the members' logs
    final: dict[str, str | None] = {}
    facts: dict[str, Any] = {"divergence": {}, "crashes": [], "members": {}, "out_of_service": [], "error": None}
    cluster = JepsenCluster(config.out / "cluster", config.members, config.seed, config.member_args, config.network)
    try:
        nemesis = Nemesis(cluster, recorder, config.nemesis, config.seed, config.timing)
        workload = WORKLOADS[config.workload.name].clients(cluster.members, recorder, config.workload, config.seed)
    except BaseException:
        cluster.close()
        raise
    try:
        cluster.start_all()
        cluster.leader(timeout=30)
        workload.start()
        nemesis.start()
        time.sleep(max(config.time - config.cooldown, 0))
        nemesis.stop()
        time.sleep(min(config.cooldown, config.time))
        workload.stop()
        _final_reads(cluster, recorder, workload.keys, final)
        facts["divergence"] = _divergence(cluster, final)
        facts["crashes"] = [f"{m.name} exited with status {status}" for m, status in cluster.crashed()]
        facts["members"] = {m.name: _progress(cluster, m) for m in cluster.members}
        facts["out_of_service"] = [f"{m.name} is out of service at the end: {reason}" for m in cluster.members
                                   if (reason := cluster.out_of_service(m))]
    except Exception as exc:   # the run could not finish: still check and report what happened
        logger.exception("run failed")
        facts["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        nemesis.stop()
        workload.stop()
        cluster.close()
    facts["mode"], facts["skipped"], facts["client_errors"] = cluster.network.mode, nemesis.skipped, workload.errors
    meta = {"wall_clock_start": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_start)),
            "seed": config.seed, "mode": cluster.network.mode, "members": config.members, "time": config.time,
            "nemesis": config.nemesis, "workload": {"name": config.workload.name, **asdict(config.workload)}}
    history = recorder.snapshot(meta)
    return _judge(config, history, final, facts, nemesis.error, cluster.members)


def _final_reads(cluster: JepsenCluster, recorder: Recorder, keys: list[str], final: dict[str, str | None]) -> None:
    """Each key's value into ``final``, read linearizably once the cluster has recovered; retried
    until it works."""
    deadline = time.monotonic() + FINAL_TIMEOUT
    for key in keys:
        while key not in final:
            if time.monotonic() > deadline:
                raise AssertionError(f"no final read of {key} within {FINAL_TIMEOUT}s; logs:\n{cluster.logs()}")
            member = cluster.current_leader() or cluster.members[0]
            op = perform(recorder.invoke(FINAL_PROCESS, GET, key, node=member.name), member.client(CLIENT_TIMEOUT),
                         recorder)
            if op.outcome == OK:
                final[key] = op.result
            else:
                time.sleep(0.2)


def _divergence(cluster: JepsenCluster, final: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    """Until every member's own state machine holds the final values; what still differs after
    ``FINAL_TIMEOUT`` (empty: converged)."""
    deadline = time.monotonic() + FINAL_TIMEOUT
    while True:
        differences = {}
        for member in cluster.members:
            local = {key: _local_value(member, key) for key in final}
            wrong = {key: value for key, value in local.items() if value != final[key]}
            if wrong:
                differences[member.name] = wrong
        if not differences or time.monotonic() > deadline:
            return differences
        time.sleep(0.2)


def _local_value(member: Member, key: str) -> Any:
    try:
        answer = member.client(CLIENT_TIMEOUT).get(key, local=True)
    except OSError as exc:
        return f"<unreachable: {exc}>"
    if answer.status == 404:
        return None
    return answer.json()["value"] if answer.status == 200 else f"<HTTP {answer.status}>"


def _progress(cluster: JepsenCluster, member: Member) -> dict[str, Any]:
    status = cluster.status(member) or {}
    return {"state": status.get("cluster", {}).get("state"), "term": status.get("cluster", {}).get("term"),
            "commitIndex": status.get("log", {}).get("commitIndex")}


def _judge(config: RunConfig, history: History, final: dict[str, str | None], facts: dict[str, Any],
           nemesis_error: BaseException | None, members: list[Member]) -> dict[str, Any]:
    started = time.monotonic()
    judgement = WORKLOADS[config.workload.name].judge(history, config.check_budget)
    recovered = recovery(history, [m.name for m in members])
    found = scan_logs(m.log_path for m in members)
    problems = [*judgement.problems, *facts["crashes"], *facts["out_of_service"], *found.fatal]
    if facts["divergence"]:
        problems.append(f"members did not converge: {facts['divergence']}")
    if facts["error"]:
        problems.append(f"run did not finish: {facts['error']}")
    if nemesis_error is not None:
        problems.append(f"nemesis failed: {nemesis_error!r}")
    problems += facts["client_errors"]
    if problems:
        result = "INVALID"
    else:
        result = "VALID" if judgement.valid else "UNKNOWN"
    counts = summarize(history.ops)
    faults = sum(1 for e in history.events if e.phase == "start")
    line = (f"jepsen {result}: seed={config.seed} mode={facts['mode']} members={config.members} "
            f"time={config.time:.0f}s "
            f"faults={faults} ops={len(history.ops)} (ok {counts['ok']}, fail {counts['fail']}, info {counts['info']}) "
            f"{judgement.summary} converged={yes(not facts['divergence'])} "
            f"crashes={len(facts['crashes']) + len(found.fatal)} "
            f"tracebacks={len(found.tracebacks)} "
            f"{recovered.describe()} report={config.out}")
    verdict = {"line": line, "result": result, "valid": result == "VALID", "seed": config.seed,
               "mode": facts["mode"], "members": config.members, "time": config.time, "nemesis": config.nemesis,
               "skipped_faults": facts["skipped"],
               "faults": faults, "workload": config.workload.name,
               "ops": counts, **judgement.fields,
               "final": final, "divergence": facts["divergence"],
               "crashes": facts["crashes"], "fatal_log_lines": found.fatal, "warnings": found.tracebacks,
               "log_errors": found.errors,
               "log_error_samples": found.error_samples, "member_progress": facts["members"],
               "recovery": {"p50": recovered.p50, "max": recovered.max, "count": len(recovered.times),
                            "interrupted": recovered.interrupted, "times": [round(t, 3) for t in recovered.times]},
               "problems": problems, "check_seconds": round(time.monotonic() - started, 2)}
    write_report(config.out, history, verdict, judgement.witness, config.workload.clients)
    return verdict
