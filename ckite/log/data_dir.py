"""A member's data directory, held by one process at a time.

Two processes on one data dir would each believe the term, vote and log are theirs: both could
vote in one term for different candidates, which breaks Election Safety. So a member takes an
exclusive lock on ``<data_dir>/LOCK`` before it opens anything there, and keeps it until it
stops; a second process is refused at once with the directory and, where the file says so, the
pid of the holder. The lock is an ``flock`` on an open file: the kernel drops it when the holder
exits, however it exits (a SIGKILL included), so a stale file never blocks a restart.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ckite.errors import StorageError

LOCK_FILE = "LOCK"


class DataDirInUseError(StorageError):
    """Another process holds the data directory (another member, or this one started twice)."""


class DataDir:
    """An existing (or created) data directory, locked by this process until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / LOCK_FILE, "a+", encoding="ascii")   # noqa: SIM115 - held until close()
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot open the data directory: {exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            self._lock.close()
            raise DataDirInUseError(f"data directory {self.path} is in use by another process"
                                    + (f" (pid {holder})" if holder else "")) from None
        except OSError as exc:
            self._lock.close()
            raise StorageError(f"{self.path}: cannot lock the data directory: {exc}") from exc
        self._lock.truncate(0)
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()

    def file(self, name: str) -> Path:
        """A file inside the directory."""
        return self.path / name

    def _holder(self) -> str:
        self._lock.seek(0)
        text = self._lock.read(32).strip()
        return text if text.isdigit() else ""

    def close(self) -> None:
        """Release the lock (idempotent); the directory and its files stay."""
        if not self._lock.closed:
            self._lock.close()
