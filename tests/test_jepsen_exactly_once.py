"""The counter workload's checker (tests/jepsen/exactly_once.py) on hand-made histories: every
acknowledged increment applied once, none twice, none lost, in real-time order."""
from __future__ import annotations

from tests.jepsen.exactly_once import exactly_once, increments
from tests.jepsen.history import FAIL, FINAL_PROCESS, GET, INCR, INFO, OK, REJECTED, History, Op

KEY = "counter"


def incr(key: str, start: float, end: float, outcome: str = OK, value: str | None = None, node: str = "m1",
         error: str = "") -> Op:
    """One attempt of the increment named ``key`` (its idempotency key)."""
    return Op(0, 0, INCR, KEY, invoke=start, complete=end, outcome=outcome, result=value, node=node, error=error,
              idempotency_key=key)


def final(value: str | None, at: float = 100.0) -> Op:
    return Op(0, FINAL_PROCESS, GET, KEY, invoke=at, complete=at + 0.1, outcome=OK, result=value)


def check(*ops: Op) -> tuple[list[str], str]:
    result = exactly_once(History(list(ops)), KEY)
    return result.problems, result.describe()


def test_retried_increments_each_applied_once_are_exactly_once() -> None:
    """p0-2 timed out on m1 and was sent again to m2, which answered with its first outcome."""
    problems, line = check(incr("p0-1", 0, 1, value="1"),
                           incr("p0-2", 2, 6, INFO, error="TimeoutError"), incr("p0-2", 6, 6.5, value="3", node="m2"),
                           incr("p1-1", 3, 4, value="2"), final("3"))
    assert problems == []
    assert line == "counter: 3 increments acknowledged (4 attempts), final value 3, exactly once"


def test_an_increment_applied_twice_is_caught() -> None:
    """p0-1's retry applied again (the counter moved twice) and answered with the second value."""
    problems, line = check(incr("p0-1", 0, 4, INFO), incr("p0-1", 4, 5, value="2", node="m2"),
                           incr("p1-1", 6, 7, value="3"), final("3"))
    [problem] = problems
    assert "the counter ends at 3, above the 2 acknowledged + 0 pending increments: 1 applied more than once" == problem
    assert "NOT exactly once" in line


def test_a_lost_increment_is_caught() -> None:
    """p0-1 was acknowledged with 1, then lost: p1-1 counted from 0 again."""
    problems, _ = check(incr("p0-1", 0, 1, value="1"), incr("p1-1", 2, 3, value="1"), final("1"))
    assert len(problems) == 2
    assert "below the 2 acknowledged increments: 1 acknowledged increments lost" in problems[0]
    assert problems[1].startswith("1 values were returned to more than one increment") and "p0-1" in problems[1]


def test_a_value_above_the_final_one_was_lost_afterwards() -> None:
    problems, _ = check(incr("p0-1", 0, 1, value="1"), incr("p1-1", 2, 3, value="2"),
                        incr("p2-1", 2.5, 4, value="3"), final("2"))
    assert any("below the 3 acknowledged" in p for p in problems)
    assert any("1 acknowledged increments returned a value above the final 2" in p and "p2-1" in p for p in problems)


def test_an_increment_that_saw_less_than_one_acknowledged_before_it_is_stale() -> None:
    """p1-1 was sent after p0-1 had returned 2, yet returned 1: a member answered from an old state."""
    problems, _ = check(incr("p0-1", 0, 1, value="2"), incr("p1-1", 2, 3, value="1"), final("2"))
    [problem] = problems
    assert problem.startswith("1 increments returned less than one acknowledged before they were first sent")
    assert "p1-1" in problem and "after p0-1" in problem


def test_concurrent_increments_may_return_values_in_either_order() -> None:
    problems, _ = check(incr("p0-1", 0, 3, value="2"), incr("p1-1", 1, 2, value="1"), final("2"))
    assert problems == []


def test_an_increment_never_acknowledged_is_pending_and_only_bounds_the_count() -> None:
    ops = [incr("p0-1", 0, 1, value="1"), incr("p1-1", 2, 6, INFO), incr("p1-1", 6, 6.1, FAIL, error="refused: x")]
    for applied in ("1", "2"):
        result = exactly_once(History([*ops, final(applied)]), KEY)
        assert result.problems == [] and result.pending == 1 and not result.exactly_once
        assert "1 pending" in result.describe() and "not exact" in result.describe()
    assert "above the 1 acknowledged + 1 pending" in check(*ops, final("3"))[0][0]


def test_rejections_a_missing_final_read_and_a_non_number_are_reported() -> None:
    rejected = incr("p0-1", 0, 1, FAIL, error=f"{REJECTED}: HTTP 422: key reused")
    assert check(rejected, final(None)) == (
        ["1 increments were rejected, e.g. p0-1: rejected: HTTP 422: key reused"],
        "counter: 0 increments acknowledged (1 attempts), final value 0: NOT exactly once (1 problems)")
    assert check(incr("p0-1", 0, 1, value="1"))[0] == ["the counter 'counter' was not read at the end"]
    assert "not a whole number" in check(incr("p0-1", 0, 1, value="1"), final("one"))[0][0]


def test_attempts_under_one_key_are_one_increment_from_its_first_send_to_its_acknowledgement() -> None:
    [increment] = increments([incr("p0-1", 1, 5, INFO), incr("p0-1", 5, 5.2, FAIL, error="refused: x"),
                              incr("p0-1", 5.3, 5.9, value="4")])
    assert (increment.start, increment.end, increment.value, increment.attempts) == (1, 5.9, "4", 3)
