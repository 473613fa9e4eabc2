"""Issue 14's targets for a large state, judged on one row of ckite-py's results (informational).

The issue sets them for the scenario at 100 MiB and for the benchmark's 1 GiB row: no leader
change and no failed write while snapshots are taken; ``/status`` within 0.5 s on every member
throughout; peak RSS per member at most twice the state plus 100 MiB; a wiped follower that
serves the last key within 60 s (at 100 MiB: larger rows show the time, unjudged); a data dir
at most twice the state plus the retained log tail. The tail is what the member's own status
showed: the longest its log grew (entries a snapshot did not cover yet) times the value size.
A number over its limit is "not met" however far the row got; one within it is "met" only for
a row that ran whole (no error, not stopped for memory, every write acknowledged), else "not
judged" (None), as is a target with no data.
"""
from __future__ import annotations

from typing import Any

from benchmarks.large_state_row import PROBLEMS

STATUS_LIMIT_S = 0.5
RSS_FACTOR, RSS_MARGIN_MIB = 2, 100
CATCH_UP_LIMIT_S = 60.0
CATCH_UP_JUDGED_UP_TO_MIB = 100
DATA_DIR_FACTOR = 2


def _values(items: list[Any] | None, key: str | None = None) -> list[Any]:
    """The values (or ``key`` of each dict) of a per-member list, without the missing ones."""
    values = [(item or {}).get(key) if key else item for item in items or []]
    return [v for v in values if v is not None]


def rss_limit_mib(state_mib: float) -> float:
    return RSS_FACTOR * state_mib + RSS_MARGIN_MIB


def retained_tail_mib(outcome: dict[str, Any]) -> float | None:
    """The largest log any member kept, in MiB (longest log in entries x the value size)."""
    longest = _values(outcome.get("snapshots"), "longest_log")
    return round(max(longest) * outcome["plan"]["value_kib"] / 1024, 1) if longest else None


def issue_14(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target as ``{"goal", "limit", "met": True | False | None}``."""
    state = outcome["plan"]["state_mib"]
    goals: list[dict[str, Any]] = []

    def goal(text: str, limit: str, met: bool | None) -> None:
        goals.append({"goal": text, "limit": limit, "met": met})

    complete = not any(problem in outcome for problem in PROBLEMS)

    def at_most(values: list[float], limit: float) -> bool | None:
        """Over the limit is "not met" however far the row got; within it only counts for a whole row."""
        if not values:
            return None
        return False if max(values) > limit else (True if complete else None)

    goal("failed writes", "none", at_most(_values([outcome.get("writes")], "failed"), 0))
    goal("leader changes", "none (no new term)", at_most(_values([outcome.get("leadership")], "new_terms"), 0))
    goal("longest status answer", f"<= {STATUS_LIMIT_S:g} s, every member",
         at_most(_values(outcome.get("status"), "max_s"), STATUS_LIMIT_S))
    peaks = _values(outcome.get("peak_rss_mib")) + _values([outcome.get("catch_up")], "peak_rss_mib")
    limit = rss_limit_mib(state)
    goal("peak RSS", f"<= {limit:,.0f} MiB (2 x state + {RSS_MARGIN_MIB})", at_most(peaks, limit))
    catch_up = outcome.get("catch_up")
    judged = state <= CATCH_UP_JUDGED_UP_TO_MIB and catch_up is not None
    goal("wiped follower catch-up",
         f"<= {CATCH_UP_LIMIT_S:g} s" if state <= CATCH_UP_JUDGED_UP_TO_MIB else "(judged at 100 MiB only)",
         (catch_up["caught_up"] and catch_up["seconds"] <= CATCH_UP_LIMIT_S) if judged else None)
    tail = retained_tail_mib(outcome)
    sizes = _values(outcome.get("data_dir_mib"))
    bound = None if tail is None else DATA_DIR_FACTOR * state + tail
    goal("data dir", "<= 2 x state + log tail" + ("" if bound is None else f" = {bound:,.0f} MiB"),
         None if bound is None else at_most(sizes, bound))
    return goals
