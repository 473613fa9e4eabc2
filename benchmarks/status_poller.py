"""Asks every member for its status every 50 ms, each on a thread of its own, and keeps every answer.

Issue 14 asks how long a member holding a large state takes to answer its status while it
takes snapshots, and whether the leader changes. One thread per member, so that a member that
takes seconds to answer does not delay the polls of the others; a poll starts ``interval``
after the previous one started, or at once when that one took longer. A probe is a callable
that asks one member and returns the fields of :class:`Sample` it read (the system's own
status: kvstore's ``GET /status``, PySyncObj's ``status`` utility command); it raises
``TimeoutError`` when the member did not answer in time and ``OSError`` when it could not be
reached (stopped, restarting). ``benchmarks.status_summary`` says what the samples mean.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A probe of one member: the status fields of a :class:`Sample` (all optional).
Probe = Callable[[], dict[str, Any]]

#: Issue 14's scenario polls every member every 50 ms.
INTERVAL = 0.05


@dataclass(frozen=True)
class Sample:
    """One poll of one member: when it was sent and answered (``time.time()``, comparable with
    the members' log timestamps) and what the member said."""

    member: int
    sent: float
    received: float
    answered: bool
    timed_out: bool = False   # not answered within the probe's timeout (a poll that was not answered at all)
    term: int | None = None
    leader: str | None = None
    state: str | None = None
    applied: int | None = None             # last applied log index
    commit: int | None = None
    snapshot_index: int | None = None      # index the latest snapshot covers (0: none yet; None: not reported)
    snapshot_bytes: int | None = None
    snapshots_installed: int | None = None  # snapshots received from a leader so far (None: not reported)
    log_length: int | None = None          # entries in the log (those a snapshot does not cover)

    @property
    def seconds(self) -> float:
        return self.received - self.sent


class StatusPoller:
    """Polls member ``n`` with ``probes[n]`` from :meth:`start` until :meth:`stop`."""

    def __init__(self, probes: list[Probe], interval: float = INTERVAL) -> None:
        self.interval = interval
        self.samples: list[Sample] = []   # appended by the poll threads (list.append is atomic)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(n, probe), name=f"status-poll-{n}", daemon=True)
                         for n, probe in enumerate(probes)]

    def start(self) -> StatusPoller:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; waits for polls in flight (bounded by the probes' own timeouts)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _poll(self, n: int, probe: Probe) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            sent = time.time()
            try:
                fields = probe()
                sample = Sample(n, sent, time.time(), True, **fields)
            except TimeoutError:
                sample = Sample(n, sent, time.time(), False, timed_out=True)
            except OSError:
                sample = Sample(n, sent, time.time(), False)
            self.samples.append(sample)
            due = max(due + self.interval, time.monotonic())
            self._stop.wait(due - time.monotonic())

    def latest(self, n: int) -> Sample | None:
        """Member ``n``'s latest answer."""
        return next((s for s in reversed(self.samples) if s.member == n and s.answered), None)

    def leader(self) -> int | None:
        """The member that says it leads, in the highest term any member's latest answer names."""
        answers = [s for s in (self.latest(n) for n in range(len(self._threads))) if s is not None]
        claims = [(s.term or 0, s.member) for s in answers if s.state == "Leader"]
        return max(claims)[1] if claims else None
