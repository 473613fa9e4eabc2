"""The compactor after a failed snapshot (a full or read-only disk): it waits before the next
try, longer after each failure, and says it in one line after the first traceback."""
from __future__ import annotations

import logging

import pytest

from ckite.runtime.compactor import FIRST_RETRY_DELAY, MAX_RETRY_DELAY, Compactor
from ckite.runtime.worker import Worker


class FullDisk:
    member_id = "m1"

    def __init__(self) -> None:
        self.full = True
        self.taken: list[int] = []
        self.snapshot = None   # as Consensus: the newest snapshot (read after a snapshot is stored)

    def take_snapshot(self, index: int, write) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self.taken.append(index)


def test_a_failed_snapshot_is_retried_later_and_later_then_resets(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    consensus = FullDisk()
    compactor = Compactor(consensus, clock=lambda: now[0])   # type: ignore[arg-type]
    worker = Worker("test-compactor", compactor.step)
    caplog.set_level(logging.WARNING, "ckite.runtime.compactor")
    delays = []
    for index in (10, 20, 30, 40, 50, 60, 70, 80):
        compactor.submit(index, lambda file: None)
        compactor.step(worker)
        started = now[0]
        while compactor.busy:   # the applier prepares no snapshot meanwhile
            now[0] += 0.5
        delays.append(now[0] - started)
    assert delays[0] == pytest.approx(FIRST_RETRY_DELAY, abs=0.5)
    assert delays == sorted(delays) and delays[-1] == pytest.approx(MAX_RETRY_DELAY, abs=0.5)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and len(caplog.records) == 8
    assert "No space left on device" in caplog.records[-1].getMessage()
    consensus.full = False
    compactor.submit(90, lambda file: None)
    compactor.step(worker)
    assert consensus.taken == [90] and not compactor.busy
