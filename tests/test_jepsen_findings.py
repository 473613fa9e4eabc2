"""Library bugs the fault suite (tests/jepsen) found, each reproduced deterministically here.

They are marked ``xfail(strict=True)`` until fixed in ckite/: the fix makes the test pass, and
strictness then fails the run until the marker is removed, so the regression test stays.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ckite import CKiteBuilder
from ckite.rpc.local import LocalNetwork
from ckite.runtime.compactor import Compactor
from tests.kv_example import KVStore, Put
from tests.waiting import wait_for

THRESHOLD = 20


def test_a_compaction_submitted_by_the_applier_is_taken_even_if_the_compactor_runs_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Found by ``scripts/jepsen --seed 2`` (kill -9 then restart): "snapshot at 610 failed;
    ValueError: cannot snapshot at 610: not an applied entry of the log".

    ``Applier.step`` calls ``compactor.submit(last, ...)`` and only afterwards
    ``_publish_applied(last)`` -> ``consensus.set_applied(last)``. When the compactor thread is
    scheduled in between, ``Consensus.take_snapshot`` sees ``index > applied_index``, raises,
    and the compaction is dropped (the log is not compacted until the next threshold). Here the
    compactor runs the job the moment it is submitted: the schedule that lost the race.
    """
    original_submit = Compactor.submit

    def eager_submit(self: Compactor, index: int, produce) -> None:   # type: ignore[no-untyped-def]
        original_submit(self, index, produce)
        self.step(self.worker)   # the compactor thread, scheduled before the applier goes on

    monkeypatch.setattr(Compactor, "submit", eager_submit)
    binding = "localhost:9291"
    member = (CKiteBuilder().with_local_binding(binding).with_data_dir(tmp_path)
              .with_compaction_threshold(THRESHOLD).with_min_election_timeout(300).with_max_election_timeout(600)
              .with_heartbeats_interval(50).with_transport(LocalNetwork().transport(binding))
              .with_state_machine(KVStore()).without_admin().build())
    member.start()
    try:
        with caplog.at_level(logging.ERROR, logger="ckite.runtime.compactor"):
            for i in range(THRESHOLD + 5):
                member.write(Put(f"key{i}", "v"))
            wait_for(lambda: member.status()["log"]["snapshot"] or caplog.records, 10, "a compaction or its failure")
        assert not caplog.records, caplog.records[0].getMessage()
        assert member.status()["log"]["snapshot"]["index"] >= THRESHOLD
    finally:
        member.stop()
