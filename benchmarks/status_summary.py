"""What a run's status samples (``benchmarks.status_poller``) say about a cluster.

Each member's answer times; the terms and leaders the members named (an election is a new
term; a leader change is a new term with a leader); the snapshots each member took and how
long each took; the longest its log grew. Plain dicts, ready for JSON.

How long a snapshot took is read from outside, so that it means the same for every version
of the code: from the first poll at which the member had applied index N (the snapshot's
state exists) to the first poll that shows its snapshot at N. Both ends are known to one poll
interval (50 ms) plus that poll's answer time; a snapshot taken under a lock that also holds up
``/status`` shows up at the end of the wait, which is when it was done.
"""
from __future__ import annotations

from typing import Any

from benchmarks.status_poller import Sample

#: How many of a member's slowest answers the summary lists (when they were sent, how long they took).
SLOWEST = 5


def _mine(samples: list[Sample], n: int) -> list[Sample]:
    return sorted((s for s in samples if s.member == n), key=lambda s: s.sent)


def _quantile(ordered: list[float], q: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None


def answer_times(samples: list[Sample], n: int) -> dict[str, Any]:
    """Member ``n``'s answer times in seconds. A poll that timed out counts with the time it
    waited (a lower bound); one that found the member unreachable (stopped, restarting) does not."""
    mine = _mine(samples, n)
    counted = [s for s in mine if s.answered or s.timed_out]
    waited = sorted(s.seconds for s in counted)
    slowest = sorted(counted, key=lambda s: s.seconds, reverse=True)[:SLOWEST]
    return {"polls": len(mine), "answered": sum(s.answered for s in mine),
            "timed_out": sum(s.timed_out for s in mine),
            "unreachable": sum(not s.answered and not s.timed_out for s in mine),
            "max_s": _quantile(waited, 1.0), "p99_s": _quantile(waited, 0.99), "p50_s": _quantile(waited, 0.5),
            "slowest": [{"sent": round(s.sent, 3), "seconds": round(s.seconds, 3)} for s in slowest]}


def leadership(samples: list[Sample]) -> dict[str, Any]:
    """Terms and leaders named in the answers from the first one on: ``new_terms`` (elections
    held), ``leader_changes`` (terms in which some member named a leader, after the first),
    every term's leaders. Terms below the first answer's are left out: a wiped member starts
    again from term 0 until it hears from the leader."""
    answers = sorted((s for s in samples if s.answered and s.term is not None), key=lambda s: s.received)
    if not answers:
        return {"terms": [], "new_terms": None, "leader_changes": None, "leaders": [], "by_term": []}
    answers = [s for s in answers if s.term >= answers[0].term]
    terms = sorted({s.term for s in answers})
    leaders: dict[int, set[str]] = {}
    first_seen: dict[int, float] = {}
    for s in answers:
        first_seen.setdefault(s.term, s.received)
        if s.leader:
            leaders.setdefault(s.term, set()).add(s.leader)
    return {"terms": [terms[0], terms[-1]], "new_terms": terms[-1] - terms[0],
            "leader_changes": max(len(leaders) - 1, 0),
            "leaders": sorted(set().union(*leaders.values())) if leaders else [],
            "by_term": [{"term": t, "first_seen": round(first_seen[t], 3), "leaders": sorted(leaders.get(t, ()))}
                        for t in terms]}


def snapshots(samples: list[Sample], n: int, before: float) -> dict[str, Any]:
    """The snapshots member ``n`` took before ``before`` (a ``time.time()``), each with its
    index, size and duration (see the module docstring), and apart, untimed, those it installed
    from a leader (its count of installed snapshots went up). A member whose status names no
    snapshot (PySyncObj) gets the compactions its log length shows instead, without durations."""
    mine = [s for s in _mine(samples, n) if s.answered and s.received < before]
    taken: list[dict[str, Any]] = []
    installed: list[dict[str, Any]] = []
    covered = mine[0].snapshot_index if mine else None   # a snapshot held from the start is not timed
    for previous, s in zip([None, *mine], mine, strict=False):
        if s.snapshot_index is None or (covered is not None and s.snapshot_index <= covered):
            continue
        covered = s.snapshot_index
        if previous is not None and (s.snapshots_installed or 0) > (previous.snapshots_installed or 0):
            installed.append({"index": s.snapshot_index, "bytes": s.snapshot_bytes,
                              "seen_at": round(s.received, 3)})
            continue
        applied_at = next(x.sent for x in mine if x.applied is not None and x.applied >= s.snapshot_index)
        taken.append({"index": s.snapshot_index, "bytes": s.snapshot_bytes,
                      "seconds": round(s.received - applied_at, 3), "seen_at": round(s.received, 3)})
    lengths = [s.log_length for s in mine if s.log_length is not None]
    shrinks = sum(1 for a, b in zip(lengths, lengths[1:], strict=False) if b < a)
    durations = sorted(t["seconds"] for t in taken)
    known = any(s.snapshot_index is not None for s in mine)
    return {"taken": taken, "installed": installed, "count": len(taken) if known else None,
            "log_compactions_seen": shrinks, "max_s": _quantile(durations, 1.0), "median_s": _quantile(durations, 0.5),
            "longest_log": max(lengths, default=None)}
