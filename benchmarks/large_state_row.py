"""One row of the large-state benchmark (issue 14) on one system: fill, overwrite, wipe a follower, catch up.

The steps are the same for every system; a system adapter (``benchmarks.large_state_ckite``,
``benchmarks.large_state_pysyncobj``) does what differs, behind these methods:

- ``name``, ``bindings``; ``pids()`` and ``data_dirs()``, one per member (a pid changes on restart);
- ``start()``: start three members, return once they have a leader;
- ``probe(n)``: a status probe of member ``n`` for ``benchmarks.status_poller``;
- ``write(plan, poller, aborted)``: write ``plan.writes`` values (failures retried), return the counts;
- ``wipe(n)``: stop member ``n`` and delete its data dir (returns how it stopped); ``restart(n)``:
  start it again, empty;
- ``caught_up(n)``: member ``n`` has everything written (it serves the last key);
- ``kill()``: kill every member at once (the machine is short of memory); ``stop()``.

While the row runs, a :class:`~benchmarks.status_poller.StatusPoller` asks every member for its
status every 50 ms and a :class:`~benchmarks.memory_guard.MemoryGuard` reads peak RSS and ends
the row if the machine runs short of memory. A row whose writes did not all succeed is
``incomplete`` (the wiped follower is then not timed: there is no last key to serve). Nothing
here judges a number.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import status_summary
from benchmarks.memory_guard import MemoryGuard
from benchmarks.status_poller import StatusPoller
from tests.waiting import wait_for

MIB = 1024 * 1024
#: The keys of an outcome whose row did not run whole (each says why).
PROBLEMS = ("error", "aborted", "incomplete")
#: How often the catch-up is checked.
CATCH_UP_POLL = 0.1


@dataclass(frozen=True)
class Plan:
    """What a row writes: ``keys`` values of ``value_kib`` (``state_mib`` in all), then
    ``overwrites`` more writes to the same keys from the first one on; how long the wiped
    follower gets to catch up, and how little memory the machine may have left before the
    row is stopped (``benchmarks.memory_guard``)."""

    state_mib: int
    value_kib: int
    overwrites: int
    catch_up_timeout: float
    min_available_mib: float
    prefix: str = "large-"

    @property
    def value_bytes(self) -> int:
        return self.value_kib * 1024

    @property
    def keys(self) -> int:
        return max(1, self.state_mib * 1024 // self.value_kib)

    @property
    def writes(self) -> int:
        return self.keys + self.overwrites

    def key(self, i: int) -> str:
        """The key of write ``i`` (``benchmarks.load.fill`` names them the same way)."""
        return f"{self.prefix}{i % self.keys}"


def _allocated_bytes(path: Path) -> dict[str, int]:
    """Blocks allocated to each file below ``path``, in bytes, by path relative to it."""
    sizes: dict[str, int] = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                sizes[os.path.relpath(full, path)] = os.lstat(full).st_blocks * 512
            except FileNotFoundError:
                pass   # deleted while we walked (a snapshot being replaced)
    return sizes


def disk_usage_mib(path: Path) -> float:
    """What ``du -s`` says of ``path``: blocks allocated to every file below it, in MiB."""
    return round(sum(_allocated_bytes(path).values()) / MIB, 1)


def disk_usage_by_file_mib(path: Path) -> dict[str, float]:
    """What each file below ``path`` takes, in MiB: where a data dir's size goes."""
    return {name: round(size / MIB, 1) for name, size in _allocated_bytes(path).items()}


def run(system: Any, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the row on ``system``; errors are recorded in the result (``error``), not raised."""
    outcome: dict[str, Any] = {"system": system.name, "plan": asdict(plan), "keys": plan.keys,
                               "writes_planned": plan.writes}
    poller = guard = None
    written_at = float("inf")
    try:
        system.start()
        outcome["members"] = list(system.bindings)
        poller = StatusPoller([system.probe(n) for n in range(len(system.bindings))]).start()
        guard = MemoryGuard(system.pids, plan.min_available_mib, system.kill).start()
        say(f"  {system.name}: writing {plan.keys} values of {plan.value_kib} KiB, then {plan.overwrites} more")
        writes = outcome["writes"] = system.write(plan, poller, lambda: guard.tripped is not None)
        written_at = time.time()
        if writes["acknowledged"] < plan.writes:
            outcome["incomplete"] = writes.get("gave_up") or f"{writes['acknowledged']} writes acknowledged"
        outcome["peak_rss_mib"] = [guard.peak(pid) for pid in system.pids()]
        outcome["data_dir_mib"] = [disk_usage_mib(d) for d in system.data_dirs()]
        outcome["data_dir_files_mib"] = [disk_usage_by_file_mib(d) for d in system.data_dirs()]
        say(f"  {system.name}: {writes['acknowledged']} of {plan.writes} written in {writes['elapsed_s']} s, "
            f"{writes['failed']} failed; peak RSS {outcome['peak_rss_mib']} MiB")
        if guard.tripped is None and "incomplete" not in outcome:
            catch_up = outcome["catch_up"] = _catch_up(system, poller, guard, plan)
            say(f"  {system.name}: wiped follower {catch_up['member']}: " +
                (f"serves the last key after {catch_up['seconds']} s" if catch_up["caught_up"] else
                 f"did not catch up in {plan.catch_up_timeout:.0f} s"))
    except Exception as exc:   # one system failing must not lose the other's numbers
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        say(f"  {system.name}: FAILED: {outcome['error']}")
    finally:
        if poller is not None:
            poller.stop()
        if guard is not None:
            guard.stop()
            if guard.tripped:
                outcome["aborted"] = guard.tripped
        system.stop()
    if poller is not None:
        samples = poller.samples
        outcome["status"] = [status_summary.answer_times(samples, n) for n in range(len(system.bindings))]
        outcome["leadership"] = status_summary.leadership(samples)
        outcome["snapshots"] = [status_summary.snapshots(samples, n, written_at) for n in range(len(system.bindings))]
    return outcome


def _catch_up(system: Any, poller: StatusPoller, guard: MemoryGuard, plan: Plan) -> dict[str, Any]:
    """Stop a follower, delete its data, start it empty, and time until it serves the last key."""
    leader = poller.leader()
    n = next(i for i in range(len(system.bindings)) if i != leader)
    stopped = system.wipe(n)
    started = time.monotonic()
    system.restart(n)
    result: dict[str, Any] = {"member": system.bindings[n], "stopped": stopped, "timeout_s": plan.catch_up_timeout}
    try:
        wait_for(lambda: system.caught_up(n) or guard.tripped, plan.catch_up_timeout, "the wiped follower",
                 interval=CATCH_UP_POLL)
        result["seconds"] = None if guard.tripped else round(time.monotonic() - started, 2)
    except AssertionError:   # wait_for's deadline: reported, not raised
        result["seconds"] = None
    result["caught_up"] = result["seconds"] is not None
    result["peak_rss_mib"] = guard.peak(system.pids()[n])
    result["data_dir_mib"] = disk_usage_mib(system.data_dirs()[n])
    return result
