"""The fault-injection suite, bounded for CI: a few short runs of mixed nemeses against real
kvstore processes, each of which must come out VALID (linearizable, no lost acknowledged write,
members converged, no crash), and one of the counter workload, whose increments must have
applied exactly once. ``scripts/jepsen`` runs the long version; see docs/testing.md.

A failing run leaves its report (history.json, verdict.json, timeline.html, member logs) under
pytest's tmp_path, named in the failure message; ``scripts/jepsen --seed N`` replays the seed.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.jepsen import netns
from tests.jepsen.counter import CounterConfig
from tests.jepsen.nemesis import ALL, Timing
from tests.jepsen.runner import RunConfig, run
from tests.jepsen.workload import WorkloadConfig

pytestmark = [pytest.mark.processes, pytest.mark.timeout(150)]

#: Three seeds of ~25 s each, the suite's self-test and a counter run: under three minutes on 2 cores,
#: startup and checks included. One run per network mode; ``auto`` is namespaces where they work
#: (root with iptables), else proxies.
RUNS = (pytest.param(101, "proxy", id="seed101-proxy"), pytest.param(202, "auto", id="seed202-auto"),
        pytest.param(303, "netns", id="seed303-netns"))
RUN_SECONDS = 25.0


@pytest.mark.parametrize("seed, network", RUNS)
def test_mixed_nemesis_run_is_valid(seed: int, network: str, tmp_path: Path) -> None:
    if network == "netns" and netns.available() is not None:
        pytest.skip(f"network namespaces unavailable here: {netns.available()}")
    out = tmp_path / f"jepsen-seed-{seed}"
    verdict = run(RunConfig(out=out, time=RUN_SECONDS, seed=seed, nemesis=list(ALL), network=network,
                            timing=Timing(quiet=(1.0, 3.0), hold=(2.0, 5.0)), cooldown=4.0, check_budget=30.0))
    problems = "\n".join(verdict["problems"])
    assert verdict["valid"], f"{verdict['line']}\n{problems}\nreport: {out}"
    assert verdict["faults"] >= 2, verdict["line"]
    assert verdict["ops"]["ok"] > 100, verdict["line"]
    assert {"history.json", "verdict.json", "timeline.html"} <= {p.name for p in out.iterdir()}


def test_counter_increments_retried_through_mixed_faults_apply_exactly_once(tmp_path: Path) -> None:
    """Issue 15: each increment is retried under its own Idempotency-Key, on the next member after
    every failure, until acknowledged; through kills, pauses and partitions the counter must end
    at exactly the number acknowledged, each having returned a value of its own."""
    out = tmp_path / "jepsen-counter"
    verdict = run(RunConfig(out=out, time=20.0, seed=505, nemesis=list(ALL), workload=CounterConfig(),
                            timing=Timing(quiet=(1.0, 2.0), hold=(2.0, 4.0)), cooldown=4.0))
    problems = "\n".join(verdict["problems"])
    assert verdict["valid"], f"{verdict['line']}\n{problems}\nreport: {out}"
    counter = verdict["counter"]
    assert counter["exactly_once"] and counter["pending"] == 0, verdict["line"]
    assert counter["final"] == counter["acknowledged"] > 50, verdict["line"]
    assert counter["attempts"] > counter["acknowledged"], f"no increment was retried: {verdict['line']}"
    assert verdict["faults"] >= 2 and "exactly once" in verdict["line"], verdict["line"]


def test_the_suite_catches_stale_reads_when_clients_read_locally(tmp_path: Path) -> None:
    """The suite's test of itself: ``?local=true`` reads are allowed to be stale, and with the
    leader isolated or a minority cut off they are, so the run must be INVALID with a witness."""
    out = tmp_path / "jepsen-local-reads"
    verdict = run(RunConfig(out=out, time=20.0, seed=404, nemesis=["isolate-leader", "partition"], network="proxy",
                            workload=WorkloadConfig(local_reads=True), timing=Timing(quiet=(1.0, 2.0), hold=(3.0, 5.0)),
                            cooldown=3.0, check_budget=30.0))
    assert verdict["linearizable"] is False, verdict["line"]
    assert verdict["result"] == "INVALID"
    assert "NOT linearizable; minimal offending sub-history" in "\n".join(verdict["problems"])
    assert "outlined" in (out / "timeline.html").read_text()
