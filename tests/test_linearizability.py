"""The linearizability checker of the fault suite (tests/jepsen/linearizability.py).

Hand-made histories name the anomaly each one shows (stale read, lost write, phantom value, CAS
anomalies, unknown writes); generated ones come from a simulated register whose operations take
effect at a known instant inside their interval, so they are linearizable by construction, and
stop being so when a read is made to return a value nobody wrote.
"""
from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jepsen.history import CAS, FAIL, GET, INFO, MISMATCH, OK, PUT, History, Op, Recorder
from tests.jepsen.linearizability import check_history, check_key, linearizable, relevant_ops


def op(kind: str, start: float, end: float | None, outcome: str = OK, value: str | None = None,
       expected: str | None = None, result: str | None = None, key: str = "k", error: str = "") -> Op:
    return Op(0, 0, kind, key, value, expected, start, end, outcome, result, error=error)


def put(value: str, start: float, end: float | None, outcome: str = OK) -> Op:
    return op(PUT, start, end, outcome, value=value)


def get(result: str | None, start: float, end: float, outcome: str = OK) -> Op:
    return op(GET, start, end, outcome, result=result)


def cas(expected: str, new: str, start: float, end: float | None, outcome: str = OK,
        current: str | None = None) -> Op:
    """A CAS; with ``outcome=FAIL`` it is a 409 mismatch that saw ``current``."""
    return op(CAS, start, end, outcome, value=new, expected=expected, result=current,
              error=MISMATCH if outcome == FAIL else "")


def verdict(*ops: Op) -> bool | None:
    return check_key("k", ops, budget=10).linearizable


# --- linearizable by hand ----------------------------------------------------------------------

def test_sequential_put_get_cas_is_linearizable() -> None:
    assert verdict(get(None, 0, 1), put("a", 2, 3), get("a", 4, 5), cas("a", "b", 6, 7), get("b", 8, 9))


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    assert verdict(put("a", 0, 1), put("b", 2, 6), get("a", 3, 4), get("b", 4.5, 5))


def test_reads_may_not_go_back_once_a_concurrent_write_was_seen() -> None:
    """Both reads overlap the write, but the first saw the new value: the second cannot see the old."""
    assert not verdict(put("a", 0, 1), put("b", 2, 10), get("b", 3, 4), get("a", 5, 6))


def test_cas_mismatch_is_a_read_of_the_reported_value() -> None:
    assert verdict(put("a", 0, 1), cas("x", "y", 2, 3, FAIL, current="a"), get("a", 4, 5))


# --- the anomalies ------------------------------------------------------------------------------

def test_stale_read_is_not_linearizable_and_the_witness_is_minimal() -> None:
    noise = [get("a", 1.5, 1.8), get(None, -1, -0.5)]
    result = check_key("k", [put("a", 0, 1), put("b", 2, 3), get("a", 4, 5), *noise], budget=10)
    assert result.linearizable is False
    assert [(o.kind, o.value, o.result) for o in result.witness] == [("put", "a", None), ("put", "b", None),
                                                                    ("get", None, "a")]
    assert "NOT linearizable" in result.explain()


def test_lost_write_is_not_linearizable() -> None:
    """An acknowledged write, then a read that finds the key still absent."""
    assert not verdict(put("a", 0, 1), get(None, 2, 3))


def test_phantom_value_is_not_linearizable() -> None:
    result = check_key("k", [put("a", 0, 1), get("zzz", 2, 3)], budget=10)
    assert result.linearizable is False
    assert [o.result for o in result.witness] == ["zzz"]


def test_a_definitely_failed_write_cannot_be_observed() -> None:
    refused = op(PUT, 0, 1, FAIL, value="a", error="connection refused")
    assert not verdict(refused, get("a", 2, 3))


def test_two_swaps_from_the_same_value_cannot_both_succeed() -> None:
    assert not verdict(put("a", 0, 1), cas("a", "b", 2, 5), cas("a", "c", 3, 6))


def test_cas_that_succeeded_on_a_value_that_was_not_there() -> None:
    assert not verdict(put("a", 0, 1), put("b", 2, 3), cas("a", "c", 4, 5))


def test_cas_mismatch_that_saw_the_expected_value_is_impossible() -> None:
    assert not verdict(put("a", 0, 1), cas("a", "c", 2, 3, FAIL, current="a"))


def test_cas_mismatch_reporting_a_stale_value() -> None:
    assert not verdict(put("a", 0, 1), put("b", 2, 3), cas("x", "y", 4, 5, FAIL, current="a"))


# --- unknown outcomes ---------------------------------------------------------------------------

def test_unknown_write_may_take_effect_long_after_it_timed_out() -> None:
    assert verdict(put("a", 0, 1, INFO), get(None, 2, 3), get("a", 10, 11))


def test_unknown_write_may_never_take_effect() -> None:
    assert verdict(put("b", 0, 1), put("a", 2, 3, INFO), get("b", 4, 5), get("b", 6, 7))


def test_unknown_write_cannot_take_effect_before_it_was_invoked() -> None:
    assert not verdict(get("a", 0, 1), put("a", 2, 3, INFO))


def test_unknown_write_takes_effect_once_only() -> None:
    """Seen, then overwritten: it cannot reappear (it is not a duplicate delivery)."""
    assert not verdict(put("a", 0, 1, INFO), get("a", 2, 3), put("b", 4, 5), get("a", 6, 7))


def test_unknown_cas_may_have_swapped_or_not() -> None:
    assert verdict(put("a", 0, 1), cas("a", "b", 2, 3, INFO), get("a", 4, 5), get("b", 6, 7))
    assert verdict(put("a", 0, 1), cas("a", "b", 2, 3, INFO), get("a", 4, 5), get("a", 6, 7))


def test_unknown_reads_and_refused_requests_constrain_nothing() -> None:
    ops = [put("a", 0, 1), get("zzz", 2, 3, INFO), op(CAS, 4, 5, FAIL, value="q", expected="p", error="refused")]
    assert relevant_ops(ops) == ops[:1]


def test_unobserved_unknown_writes_are_dropped_before_the_search() -> None:
    ops = [put("a", 0, 1, INFO), put("b", 0, 1, INFO), get("b", 2, 3)]
    assert relevant_ops(ops) == ops[1:]


# --- whole histories ----------------------------------------------------------------------------

def test_keys_are_checked_independently_and_the_bad_one_is_named() -> None:
    recorder = Recorder()
    for key, read in (("x", "1"), ("y", "2"), ("z", "0")):
        write = recorder.invoke(1, PUT, key, read if key != "z" else "1")
        recorder.complete(write, OK)
        read_op = recorder.invoke(1, GET, key)
        recorder.complete(read_op, OK, result=read)
    result = check_history(recorder.snapshot(), budget=10)
    assert result.linearizable is False
    assert [(k.key, k.linearizable) for k in result.keys] == [("x", True), ("y", True), ("z", False)]


def test_history_survives_json_round_trip(tmp_path) -> None:
    recorder = Recorder()
    recorder.complete(recorder.invoke(3, CAS, "k", "n", "e", node="member1"), FAIL, "cur", MISMATCH)
    recorder.invoke(4, PUT, "k", "open")
    recorder.event("start", "partition", "member1 | member2 member3")
    history = recorder.snapshot({"seed": 7})
    history.save(tmp_path / "h.json")
    loaded = History.load(tmp_path / "h.json")
    assert loaded == history
    assert loaded.ops[1].outcome == INFO   # open at the end: unknown
    assert loaded.ops[0].mismatch


# --- generated histories ------------------------------------------------------------------------

def simulate(seed: int, count: int, processes: int = 4, keys: int = 1, unknown: float = 0.1) -> list[Op]:
    """A concurrent history of a real register: each operation takes effect at a random instant
    of its interval (an unknown write maybe long after it timed out, maybe never)."""
    rng = random.Random(seed)
    clock = [0.0] * processes
    planned: list[tuple[float, Op]] = []
    for index in range(count):
        process = rng.randrange(processes)
        start = clock[process] + rng.random()
        end = start + rng.random() * 3
        clock[process] = end
        kind = rng.choice((PUT, GET, CAS))
        key = f"k{rng.randrange(keys)}"
        new = f"v{index}"
        item = Op(index, process, kind, key, new if kind != GET else None, None, start, end, OK)
        effect = rng.uniform(start, end)
        if kind != GET and rng.random() < unknown:
            item.outcome = INFO
            effect = effect + rng.random() * 10 if rng.random() < 0.7 else float("inf")
        planned.append((effect, item))
    state: dict[str, str | None] = {}
    written: dict[str, list[str]] = {}
    for effect, item in sorted(planned, key=lambda pair: pair[0]):
        current = state.get(item.key)
        if item.kind == CAS:   # expect the current value half the time, an older one otherwise
            choices = written.get(item.key) or ["none"]
            item.expected = current if current is not None and rng.random() < 0.5 else rng.choice(choices)
        if effect == float("inf"):
            continue
        if item.kind == GET:
            item.result = current
        elif item.kind == PUT or item.expected == current:
            state[item.key] = item.value
            written.setdefault(item.key, []).append(item.value)
        elif item.outcome == OK:
            item.outcome, item.error, item.result = FAIL, MISMATCH, current
    return [item for _, item in sorted(planned, key=lambda pair: pair[1].index)]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(1, 60), st.integers(1, 6))
def test_simulated_register_histories_are_linearizable(seed: int, count: int, processes: int) -> None:
    ops = simulate(seed, count, processes)
    assert check_key("k0", ops, budget=20).linearizable is True


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(2, 60), st.integers(1, 6), st.data())
def test_a_read_of_a_value_never_written_is_caught_and_kept_in_the_witness(seed: int, count: int, processes: int,
                                                                           data: st.DataObject) -> None:
    ops = simulate(seed, count, processes)
    reads = [o for o in ops if o.kind == GET]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    victim.result = "phantom"
    result = check_key("k0", ops, budget=20)
    assert result.linearizable is False
    assert victim in result.witness
    assert linearizable(result.witness) is False


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(5, 60), st.data())
def test_a_read_moved_before_the_write_it_saw_is_caught(seed: int, count: int, data: st.DataObject) -> None:
    """A read that returned a value, moved to end before its write was invoked: a read from the future."""
    ops = simulate(seed, count, unknown=0)
    writers = {o.value: o for o in ops if o.kind == PUT}
    reads = [o for o in ops if o.kind == GET and o.result in writers]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    writer = writers[victim.result]
    victim.invoke, victim.complete = writer.invoke - 2, writer.invoke - 1
    assert check_key("k0", ops, budget=20).linearizable is False


def test_ten_thousand_operations_check_in_seconds() -> None:
    ops = simulate(seed=1, count=10_000, processes=8, keys=5)
    history = History(ops)
    started = time.monotonic()
    result = check_history(history, budget=60)
    elapsed = time.monotonic() - started
    assert result.linearizable is True, result.explain()
    assert elapsed < 30, f"{elapsed:.1f}s"


@pytest.mark.parametrize("processes", [2, 10])
def test_one_key_with_many_concurrent_writers(processes: int) -> None:
    ops = simulate(seed=processes, count=3000, processes=processes, keys=1, unknown=0.2)
    assert check_key("k0", ops, budget=60).linearizable is True
