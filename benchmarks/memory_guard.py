"""Reads the members' peak RSS while a row runs, and stops the row before the machine runs out of memory.

A row of the large-state benchmark holds up to 1 GiB of state in each of three members, and a
member may need several times that (issue 14 saw 7x): on a shared machine the row must end
itself, not the kernel's OOM killer choosing among everybody's processes. The guard reads
``VmHWM`` of every member (``benchmarks.procstat``) every quarter of a second, so that a
member's peak is known even when it dies or is stopped before the end, and calls ``on_short``
(which kills the members) once ``MemAvailable`` drops below ``min_available_mib``.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from benchmarks import procstat

INTERVAL = 0.25


class MemoryGuard:
    """``pids()`` names the processes to watch (it may change: a member restarted is a new pid)."""

    def __init__(self, pids: Callable[[], list[int]], min_available_mib: float, on_short: Callable[[], None],
                 interval: float = INTERVAL) -> None:
        self._pids, self._min, self._on_short, self._interval = pids, min_available_mib, on_short, interval
        self.peaks: dict[int, float] = {}   # pid -> latest VmHWM read, MiB
        self.tripped: str | None = None     # why the row was stopped, once it was
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)

    def start(self) -> MemoryGuard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, pid: int) -> float | None:
        """The peak RSS of ``pid`` in MiB: read now if it still runs, else the last reading."""
        self._read(pid)
        return self.peaks.get(pid)

    def _read(self, pid: int) -> None:
        try:
            peak = procstat.memory_mib(pid)["peak_rss_mib"]
        except (FileNotFoundError, ProcessLookupError):
            return   # exited: keep its last reading
        if peak > 0:   # a zombie has no VmHWM any more
            self.peaks[pid] = peak

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in self._pids():
                self._read(pid)
            available = procstat.available_mib()
            if available < self._min:
                self.tripped = (f"stopped: the machine had {available:.0f} MiB available, below "
                                f"--min-available-mib {self._min:.0f}; members killed")
                self._on_short()
                return
