"""CPU time, resident memory, free memory and machine load from /proc (Linux only).

The parent process reads its members' counters from outside, so the numbers include every
thread of a member (library threads and the load generator alike) and cost the members nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])   # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set of ``pid``, in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024   # kB
    return {"rss_mib": round(values.get("VmRSS", 0.0), 1), "peak_rss_mib": round(values.get("VmHWM", 0.0), 1)}


def available_mib() -> float:
    """MemAvailable from /proc/meminfo: what the machine can still hand out without swapping, in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024   # kB
    raise RuntimeError("no MemAvailable in /proc/meminfo (Linux 3.14 or later has it)")


@dataclass(frozen=True)
class MachineSample:
    """Busy and total jiffies of all CPUs (from /proc/stat) at one moment."""

    busy: int
    total: int

    @staticmethod
    def now() -> MachineSample:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)   # idle + iowait
        total = sum(parts[:8])   # guest time is already counted in user
        return MachineSample(total - idle, total)


def busy_cores(start: MachineSample, end: MachineSample) -> float:
    """How many cores were busy on average between two samples (0 .. os.cpu_count())."""
    total = end.total - start.total
    if total <= 0:
        return 0.0
    return (end.busy - start.busy) / total * (os.cpu_count() or 1)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return [round(x, 2) for x in os.getloadavg()]
