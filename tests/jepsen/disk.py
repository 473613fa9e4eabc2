"""Size-limited data directories, so the nemesis can fill a member's disk.

Each member's data directory is a small tmpfs mount (root only); "disk full" is a ballast file
written until the file system refuses more, and the heal deletes it. The member keeps running on
a full disk: what it does there — fail writes, step down, keep serving reads — is what the run
checks. Everything is unmounted when the cluster closes.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: Room for a member's SQLite log and snapshots over a long run (it compacts every 500 entries).
SIZE = "64m"
BALLAST = ".jepsen-ballast"
CHUNK = b"\0" * (1 << 20)
COMMAND_TIMEOUT = 10.0


def available() -> str | None:
    """None when tmpfs mounts can be made here; otherwise why not."""
    if os.geteuid() != 0:
        return "not root"
    return None


class Disks:
    """The tmpfs mounts of the data directories given to :meth:`mount`."""

    def __init__(self) -> None:
        self._mounted: list[Path] = []

    def mount(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(directory)],
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise OSError(f"cannot mount a tmpfs on {directory}: {result.stderr.strip()}")
        self._mounted.append(directory)

    def fill(self, directory: Path) -> int:
        """Write the ballast until the file system is full; returns the bytes it took."""
        written = 0
        with open(directory / BALLAST, "ab", buffering=0) as ballast:   # unbuffered: nothing left to flush
            try:
                while True:
                    written += ballast.write(CHUNK) or 0
            except OSError:   # ENOSPC: full, as wanted
                pass
        return written

    def free(self, directory: Path) -> None:
        (directory / BALLAST).unlink(missing_ok=True)

    def close(self) -> None:
        for directory in reversed(self._mounted):
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=COMMAND_TIMEOUT)
        self._mounted.clear()
