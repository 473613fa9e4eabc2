"""A program run under a pseudo-terminal, as a person runs it: read its screen, type Ctrl-C.

The program is a session leader whose controlling terminal is the pty, so a ``\\x03`` written
to it is turned into SIGINT for the foreground process group by the terminal itself, exactly
as when a person presses Ctrl-C.
"""
from __future__ import annotations

import os
import pty
import select
import signal
import time
from collections.abc import Sequence
from pathlib import Path

CTRL_C = b"\x03"


class Terminal:
    """``argv`` running in ``cwd`` under a new pty; :meth:`close` kills whatever is left of it."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:   # the child: nothing but exec (or exit), no Python cleanup in a forked copy of pytest
            try:
                os.chdir(cwd)
                os.execvp(argv[0], list(argv))
            finally:
                os._exit(127)
        self.pid = pid
        self._fd = fd
        self.output = ""
        self.exit_status: int | None = None

    def read_until(self, text: str, timeout: float) -> str:
        """Everything shown so far once ``text`` appears; fails with the screen past ``timeout``
        or when the program closes its terminal first."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._read(remaining) is None:
                raise AssertionError(f"{text!r} did not appear within {timeout}s; the terminal shows:\n{self.output}")
        return self.output

    def _read(self, timeout: float) -> str | None:
        """What the program printed within ``timeout`` ("" if nothing), also appended to
        :attr:`output`; None once the terminal is closed."""
        ready, _, _ = select.select([self._fd], [], [], min(timeout, 0.5))
        if not ready:
            return ""
        try:
            chunk = os.read(self._fd, 65536)
        except OSError:   # EIO: every process holding the terminal has exited
            return None
        if not chunk:
            return None
        text = chunk.decode("utf-8", errors="replace").replace("\r\n", "\n")
        self.output += text
        return text

    def type(self, data: bytes) -> None:
        os.write(self._fd, data)

    def wait(self, timeout: float) -> int:
        """The program's exit status (negative: the signal that ended it), reading its last output."""
        deadline = time.monotonic() + timeout
        while self.exit_status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                raise AssertionError(f"still running {timeout}s later; the terminal shows:\n{self.output}")
            elif self._read(0.05) is None:
                time.sleep(0.05)   # terminal closed, process not yet reaped: poll its exit
        while self._read(0):
            pass
        return self.exit_status

    def close(self) -> None:
        """Kill what is left of the program's process group (its background children too, even
        after the program exited) and reap the program."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.exit_status is None:
            self.exit_status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(self._fd)
