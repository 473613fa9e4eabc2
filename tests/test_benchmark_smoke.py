"""The benchmarks (python -m benchmarks, python -m benchmarks.large_state) run end to end and
write every row they promise.

A smoke test only: half-second rows on real member processes, and no timing is judged (the
numbers of a run this short on a busy CI machine mean nothing). PySyncObj runs too when it is
installed (the test and bench extras pin it); otherwise only ckite-py does.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report, status_summary
from benchmarks.runner import Options
from benchmarks.status_poller import Sample

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parent.parent
ROWS = {"sequential_write", "concurrent_write_16B", "concurrent_write_16B_threads", "concurrent_write_1KiB",
        "linearizable_read", "linearizable_read_every_member", "fill"}
HAVE_PYSYNCOBJ = importlib.util.find_spec("pysyncobj") is not None


@pytest.mark.timeout(120)
def test_quick_benchmark_writes_every_row(tmp_path):
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--duration", "0.5", "--fill-keys", "300",
               "--read-clients", "16", "--member-readers", "8", "--out", str(out)]
    if not HAVE_PYSYNCOBJ:
        command += ["--only", "ckite"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ckite" in done.stdout   # the table

    document = json.loads(out.read_text())
    systems = ["ckite", "pysyncobj"] if HAVE_PYSYNCOBJ else ["ckite"]
    assert list(document["runs"][0]) == systems
    for system in systems:
        outcome = document["runs"][0][system]
        assert "error" not in outcome, outcome.get("error")
        assert set(outcome["rows"]) == ROWS
        for name, row in outcome["rows"].items():
            assert row["ops"] > 0, (system, name, row)
            assert len(row["cpu_s_by_member"]) == 3
        assert outcome["rows"]["fill"]["completed_total"] == 300
        everywhere = outcome["rows"]["linearizable_read_every_member"]
        assert everywhere["clients"] == 3 * 8 and len(everywhere["ops_per_s_by_member"]) == 3
        assert all(rate > 0 for rate in everywhere["ops_per_s_by_member"]), everywhere   # followers read too
        assert "latencies_us" not in everywhere and everywhere["p99_ms"] is not None
        assert len(outcome["memory_at_fill"]) == 3
        assert all(m["peak_rss_mib"] > 0 for m in outcome["memory_at_fill"])
        summary = document["summary"][system]
        for key in ("seq_ops_per_s", "seq_p50_ms", "seq_p99_ms", "w16_ops_per_s", "w16_p99_ms", "w1k_ops_per_s",
                    "read_ops_per_s", "read_all_ops_per_s", "read_all_p50_ms", "rss_fill_mib", "cpu_w16"):
            assert summary[key] is not None, (system, key)
    assert document["meta"]["fsync"]["ckite"] is True
    if HAVE_PYSYNCOBJ:
        assert document["meta"]["fsync"]["pysyncobj"] is False
        assert document["ratios"]["ckite/pysyncobj"]["w16_ops_per_s"] is not None
        # --quick runs one PySyncObj configuration: it is the best column, and the table shows it.
        assert document["best-pysyncobj"]["read_all_ops_per_s"]["system"] == "pysyncobj"
        assert document["ratios"]["ckite/best-pysyncobj"]["w16_ops_per_s"] is not None
        assert "best PySyncObj" in done.stdout and "targets of issues 13 and 15" in done.stdout
        assert len(document["targets"]) == 8   # issue 13 five, issue 15 three (not judged: one ckite system)
        assert document["targets"][-1]["met"] is None


def test_the_best_column_takes_the_better_configuration_per_row():
    """For each row the best-of-PySyncObj column holds the better configuration's median (higher
    ops/s, lower latency and RSS), ratios and targets are taken against it, and counts such as
    failures are not ranked."""
    def outcome(w16, p50, rss, errors):
        return {"rows": {"concurrent_write_16B": {"ops_per_s": w16, "errors": errors},
                         "sequential_write": {"p50_ms": p50}},
                "memory_at_fill": [{"peak_rss_mib": rss}, {"peak_rss_mib": rss - 5}]}

    run = {"ckite": outcome(30_000, 0.5, 60, 0), "pysyncobj": outcome(10_000, 100.0, 50, 7),
           "pysyncobj-nobatch": outcome(8_000, 0.6, 45, 0)}
    document = report.summarize([run], Options(systems=list(run)))
    best = document["best-pysyncobj"]
    assert best["w16_ops_per_s"] == {"value": 10_000, "system": "pysyncobj"}
    assert best["seq_p50_ms"] == {"value": 0.6, "system": "pysyncobj-nobatch"}
    assert best["rss_fill_mib"] == {"value": 45, "system": "pysyncobj-nobatch"}
    assert "errors" not in best and document["summary"]["pysyncobj"]["errors"] == 7
    assert document["ratios"]["ckite/best-pysyncobj"]["w16_ops_per_s"] == 3.0
    met = {goal["goal"].split(" >=")[0].split(" <=")[0]: goal["met"] for goal in document["targets"]}
    assert met["concurrent 16 B writes"] is True and met["sequential write p50"] is True
    assert met["peak RSS of the busiest member after the fill"] is True   # 60 <= 45 + 20
    assert met["concurrent 1 KiB writes"] is None                         # no data: not judged
    assert "10,000.0 (default)" in document["table"] and "0.60 (nobatch)" in document["table"]


def test_the_cost_of_sessions_is_judged_on_session_writes_and_on_the_default_member():
    """Issue 15's targets at 16 B: writes through a client session within 10% of plain ones, and
    the default member (sessions on) within 10% of one without sessions, for asynchronous writes
    and for blocking writes from many threads (row 2b)."""
    def with_rates(w16, w16t=None):
        rows = {"concurrent_write_16B": {"ops_per_s": w16}}
        if w16t is not None:
            rows["concurrent_write_16B_threads"] = {"ops_per_s": w16t}
        return {"rows": rows}

    for rate, met in ((9_100, True), (8_900, False)):
        run = {"ckite": with_rates(10_000, rate), "ckite-session": with_rates(rate),
               "ckite-nosessions": with_rates(10_000, 10_000)}
        session_writes, default, blocking = report.summarize([run], Options(systems=list(run)))["targets"][-3:]
        assert session_writes["goal"].startswith("writes through a client session cost")
        assert session_writes["met"] is met, session_writes
        assert default["goal"].startswith("client sessions on (the default)") and default["met"] is True, default
        assert "blocking writes" in blocking["goal"] and blocking["met"] is met, blocking


def run_variant(tmp_path, system: str) -> dict:
    """A short run of one ckite variant; its outcome (no error), and the whole JSON document."""
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--systems", system, "--duration", "0.5",
               "--read-clients", "16", "--member-readers", "8", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    outcome = document["runs"][0][system]
    assert "error" not in outcome, outcome.get("error")
    return document


@pytest.mark.timeout(120)
def test_the_lease_variant_runs_the_read_row_only(tmp_path):
    """``ckite-lease`` (with_lease_reads) runs just the two linearizable read rows; the other rows
    would measure ckite's write path again. Its summary has reads and nothing else."""
    document = run_variant(tmp_path, "ckite-lease")
    rows = document["runs"][0]["ckite-lease"]["rows"]
    assert set(rows) == {"linearizable_read", "linearizable_read_every_member"}
    assert all(row["ops"] > 0 for row in rows.values())
    summary = document["summary"]["ckite-lease"]
    assert summary["read_ops_per_s"] is not None and summary["read_all_ops_per_s"] is not None
    assert summary["w16_ops_per_s"] is None
    assert "leader lease" in document["meta"]["configs"]["ckite-lease"]["read_path"]


@pytest.mark.timeout(120)
def test_the_tls_variant_runs_writes_and_reads_over_mutual_tls(tmp_path):
    """``ckite-tls``: members with certificates from scripts/make-certs; every write and read row
    commits operations, none fails."""
    document = run_variant(tmp_path, "ckite-tls")
    rows = document["runs"][0]["ckite-tls"]["rows"]
    assert set(rows) == {"sequential_write", "concurrent_write_16B", "concurrent_write_1KiB", "linearizable_read",
                         "linearizable_read_every_member"}
    assert all(row["ops"] > 0 and row["errors"] == 0 for row in rows.values())
    assert "mutual TLS" in document["meta"]["configs"]["ckite-tls"]["config"]


@pytest.mark.timeout(60)
def test_catchup_runs_through_a_delaying_proxy():
    """``benchmarks.catchup --rtt-ms --window``: the lagging follower behind a delaying proxy
    catches up (kept and wiped data dir) and each line reports the round trip and window."""
    command = [sys.executable, "-m", "benchmarks.catchup", "--entries", "300", "--threshold", "0",
               "--rtt-ms", "2", "--window", "2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["wiped"] for r in results] == [False, True]
    for result in results:
        assert result["entries_missed"] == 300 and result["rtt_ms"] == 2 and result["window"] == 2
        assert result["seconds"] > 0 and result["snapshots_installed"] == 0


@pytest.mark.timeout(90)
def test_large_state_quick_run_measures_every_number_of_issue_14(tmp_path):
    """``benchmarks.large_state --quick``: each system is filled and overwritten (compaction on,
    several snapshots per member), every member's status is polled throughout, a wiped follower
    catches up, and every number of the row is in the JSON; issue 14's targets are judged on
    ckite's numbers (all of them: an 8 MiB row is below the 100 MiB the catch-up is judged at)."""
    out = tmp_path / "large-state.json"
    command = [sys.executable, "-m", "benchmarks.large_state", "--quick", "--out", str(out)]
    if not HAVE_PYSYNCOBJ:
        command += ["--only", "ckite"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "issue 14 target" in done.stdout

    row = json.loads(out.read_text())["rows"][0]
    assert list(row["outcomes"]) == (["ckite", "pysyncobj"] if HAVE_PYSYNCOBJ else ["ckite"])
    for system, outcome in row["outcomes"].items():
        assert "error" not in outcome and "aborted" not in outcome, (system, outcome)
        assert outcome["writes"]["acknowledged"] == outcome["writes_planned"] == row["keys"] + 20
        assert len(outcome["peak_rss_mib"]) == 3 and min(outcome["peak_rss_mib"]) > 0
        assert len(outcome["data_dir_mib"]) == 3 and min(outcome["data_dir_mib"]) > 0
        assert all(member["answered"] > 0 and member["max_s"] is not None for member in outcome["status"])
        assert outcome["leadership"]["terms"], outcome["leadership"]
        assert outcome["catch_up"]["caught_up"] and outcome["catch_up"]["peak_rss_mib"] > 0, outcome["catch_up"]
    ckite = row["outcomes"]["ckite"]
    assert all(member["count"] >= 2 and member["max_s"] is not None for member in ckite["snapshots"])
    assert [goal["goal"] for goal in row["targets"]] == ["failed writes", "leader changes", "longest status answer",
                                                         "peak RSS", "wiped follower catch-up", "data dir"]
    assert all(goal["met"] is not None for goal in row["targets"]), row["targets"]


def test_status_samples_give_elections_and_snapshot_times():
    """What the status polls say: a new term with a leader is a leader change, a wiped member's
    term 0 is not one; a snapshot lasts from the first poll at which its index was applied to
    the first poll that shows it; one installed from the leader is not timed."""
    def sample(member, at, term, applied, snapshot, leader="a:1", installed=0):
        return Sample(member, at, at + 0.01, True, term=term, leader=leader, state="Follower", applied=applied,
                      snapshot_index=snapshot, snapshots_installed=installed, log_length=applied - snapshot)

    samples = [sample(0, 0.0, 1, 90, 0), sample(0, 0.05, 1, 100, 0), sample(0, 0.10, 1, 104, 0),
               sample(0, 0.15, 1, 108, 100), sample(0, 0.20, 1, 150, 200, installed=1),
               sample(1, 0.2, 2, 108, 100, leader="b:1"),
               sample(1, 0.25, 0, 0, 0, leader=None), Sample(1, 0.3, 0.4, False, timed_out=True)]
    leadership = status_summary.leadership(samples)
    assert leadership["terms"] == [1, 2] and leadership["new_terms"] == 1 and leadership["leader_changes"] == 1
    assert leadership["leaders"] == ["a:1", "b:1"]
    taken = status_summary.snapshots(samples, 0, before=1.0)
    assert taken["count"] == 1 and taken["taken"][0]["index"] == 100
    assert taken["taken"][0]["seconds"] == pytest.approx(0.16 - 0.05)
    assert [snapshot["index"] for snapshot in taken["installed"]] == [200]
    assert taken["longest_log"] == 104
    times = status_summary.answer_times(samples, 1)
    assert times["timed_out"] == 1 and times["max_s"] == pytest.approx(0.1)
