"""The fault suite's checks besides linearizability (tests/jepsen/checks.py): lost acknowledged
writes, recovery after heals, and what counts as a crash in a member's log."""
from __future__ import annotations

from pathlib import Path

from tests.jepsen.checks import lost_writes, recovery, scan_logs
from tests.jepsen.history import CAS, GET, INFO, OK, PUT, Event, History, Op


def write(value: str, start: float, end: float, outcome: str = OK, kind: str = PUT, node: str = "m1") -> Op:
    return Op(0, 0, kind, "k", value, "x" if kind == CAS else None, start, end, outcome, node=node)


def test_final_value_from_the_last_acknowledged_write_loses_nothing() -> None:
    history = History([write("a", 0, 1), write("b", 2, 3)])
    assert lost_writes(history, {"k": "b"}) == []


def test_a_write_acknowledged_after_the_final_values_writer_completed_is_lost() -> None:
    history = History([write("a", 0, 1), write("b", 2, 3, kind=CAS)])
    [problem] = lost_writes(history, {"k": "a"})
    assert "lost the later acknowledged" in problem and "'b'" in problem


def test_concurrent_writes_may_end_either_way() -> None:
    history = History([write("a", 0, 3), write("b", 1, 2)])
    assert lost_writes(history, {"k": "a"}) == lost_writes(history, {"k": "b"}) == []


def test_an_unknown_write_may_be_the_last_one() -> None:
    history = History([write("a", 0, 1, INFO), write("b", 2, 3)])
    assert lost_writes(history, {"k": "a"}) == []


def test_absent_or_unwritten_final_values_are_reported() -> None:
    history = History([write("a", 0, 1)])
    assert "absent at the end" in lost_writes(history, {"k": None})[0]
    assert "which no operation wrote" in lost_writes(history, {"k": "zzz"})[0]


def test_recovery_waits_for_every_member_to_serve_again() -> None:
    ops = [write("a", 10.0, 10.1, node="m1"), write("b", 10.2, 10.5, node="m2"), write("c", 9, 9.5, node="m3"),
           Op(0, 0, GET, "k", None, None, 10.3, 11.0, OK, "a", node="m3")]
    history = History(ops, [Event(5, "start", "pause"), Event(10, "heal", "pause")])
    result = recovery(history, ["m1", "m2", "m3"])
    assert result.times == [1.0] and result.interrupted == 0


def test_a_heal_followed_by_another_fault_before_recovery_is_interrupted() -> None:
    history = History([write("a", 10.0, 13.0)], [Event(10, "heal", "pause"), Event(12, "start", "kill-leader")])
    result = recovery(history, ["m1"])
    assert result.times == [] and result.interrupted == 1
    assert "interrupted" in result.describe()


def test_logs_dead_threads_are_fatal_caught_stacks_are_warnings(tmp_path: Path) -> None:
    log = tmp_path / "member1.log"
    log.write_text("INFO fine\nERROR compactor: snapshot failed\nTraceback (most recent call last):\n  File x\n"
                   "ValueError: boom\nException in thread ckite-apply:\nWARNING slow\n")
    found = scan_logs([log, tmp_path / "missing.log"])
    assert len(found.fatal) == 1 and "ckite-apply" in found.fatal[0]
    assert len(found.tracebacks) == 1 and "ValueError: boom" in found.tracebacks[0]
    assert found.errors == 1
