"""The applier thread: applies committed entries, in order, and completes waiting writes.

It waits for the commit index to pass what it has applied, takes the newly committed
entries in one batch, applies them to the state machine outside the consensus lock, and
then publishes the new applied index for readers waiting on it. When the log holds a
snapshot beyond what the state machine has applied (at start, or after the leader sent
one), it restores the state machine from it first. Every ``compaction_threshold`` applied
entries it prepares a snapshot and hands it to the compactor.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import BinaryIO

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError, StorageError
from ckite.log.snapshot import Snapshot
from ckite.runtime.compactor import Compactor
from ckite.runtime.pending import PendingWrites
from ckite.runtime.replicated_state import BatchFailed, ReplicatedState
from ckite.runtime.worker import Worker
from ckite.sessions.table import ClientTable
from ckite.statemachine import StateMachine

logger = logging.getLogger(__name__)

#: The most entries handed to the state machine at once (and at most ``apply_batch_bytes`` of them).
APPLY_BATCH_ENTRIES = 10_000

#: Longest ``snapshot_now`` waits for the batch it captured to be published.
PUBLISH_WAIT = 5.0

#: Longest the applier sleeps without a wake-up: bounds how late it notices stop() and how late
#: an expired write future fails.
IDLE_WAIT = 0.1


class Applier:
    """Owns ``applied_index``; ``state_machine_lock`` serialises applies with reads."""

    def __init__(self, consensus: Consensus, state_machine: StateMachine, pending: PendingWrites,
                 clock: Callable[[], float], compactor: Compactor, table: ClientTable | None = None) -> None:
        self.consensus = consensus
        self.compactor = compactor
        self.clock = clock
        self.state_machine = state_machine
        self.state = ReplicatedState(state_machine, table)
        self.pending = pending
        self.state_machine_lock = threading.Lock()
        self.applied_signal = threading.Condition()
        self.applied_index = state_machine.last_applied_index
        #: The index the state machine's state is at (under ``state_machine_lock``; ``applied_index``
        #: is published a moment later, once the batch's writers are answered).
        self._state_index = self.applied_index
        self.worker: Worker | None = None
        consensus.set_applied(self.applied_index)

    def wake(self) -> None:
        """The commit index moved, a snapshot arrived, or the member stops."""
        if self.worker is not None:
            self.worker.wake()

    def _has_work(self) -> bool:
        consensus = self.consensus
        return consensus.commit_index > self.applied_index and consensus.failure is None

    def step(self, worker: Worker) -> None:
        if not self._has_work():
            worker.wait(IDLE_WAIT)
        if worker.stopping or not self._has_work():
            self.pending.expire(self.clock())
            if not worker.stopping and self.consensus.failure is None:   # a failed member's state is suspect
                self._snapshot_if_due()
            return
        with self.consensus.lock:
            snapshot = self.consensus.snapshot_to_restore(self.applied_index)
            if snapshot is None:
                start = self.applied_index + 1
                entries = self.consensus.log.slice_within(
                    start, min(self.consensus.commit_index + 1, start + APPLY_BATCH_ENTRIES),
                    self.consensus.settings.apply_batch_bytes)
        if snapshot is not None:
            self._restore(snapshot)
            return
        entries = self.consensus.log.load(entries)   # data the log view dropped, read back without the lock
        with self.state_machine_lock:
            try:
                outcomes = self.state.apply(entries)
            except BatchFailed as exc:
                self.consensus.fail(CKiteError(f"{exc}; its state may hold part of the batch, so this member "
                                               "stops (restart it to rebuild the state)"))
                return
            last = self._state_index = entries[-1].index
            # Captured here, with the state at exactly `last`; submitted once `last` is published.
            snapshot_job = self._begin_snapshot_if_due(last)
        self.pending.complete(entries, outcomes)
        self.pending.expire(self.clock())
        self._publish_applied(last)
        if snapshot_job is not None:
            self.compactor.submit(last, snapshot_job)

    def _begin_snapshot_if_due(self, index: int) -> Callable[[BinaryIO], None] | None:
        """With applying paused at ``index``: the snapshot's writer, when one is due and the
        compactor is free (else the next batch, or the next idle moment, asks again)."""
        if self.consensus.compaction_due(index) and not self.compactor.busy:
            return self.state.begin_snapshot()
        return None

    def _snapshot_if_due(self) -> None:
        """Nothing to apply: take the snapshot that was skipped while the compactor was busy (or
        waiting after a failure), so a member whose writes stopped still compacts its log."""
        with self.state_machine_lock:
            index = self._state_index   # == applied_index: this thread publishes every batch it applies
            job = self._begin_snapshot_if_due(index)
        if job is not None:
            self.compactor.submit(index, job)

    def _restore(self, snapshot: Snapshot) -> None:
        """Replace the state machine's state with the snapshot's (exactly once per snapshot)."""
        try:
            with self.state_machine_lock, self.consensus.open_snapshot(snapshot) as reader:
                self.state.restore(reader)
                self._state_index = snapshot.last_index
        except Exception as exc:   # the user's code, on bytes that may be damaged
            self.consensus.fail(StorageError(f"the snapshot at index {snapshot.last_index} cannot be restored: "
                                             f"{exc!r}"))
            return
        logger.info("%s: state machine restored from the snapshot at index %d",
                    self.consensus.member_id, snapshot.last_index)
        self._publish_applied(snapshot.last_index)

    def _publish_applied(self, index: int) -> None:
        self.consensus.set_applied(index)
        with self.applied_signal:
            self.applied_index = index
            self.applied_signal.notify_all()

    def snapshot_now(self) -> Future[int]:
        """Begin a snapshot of the state as it is (between two batches) and hand it to the
        compactor; the future completes with the index of the snapshot stored. Nothing applied
        since the latest snapshot: that snapshot's index at once."""
        done: Future[int] = Future()
        with self.state_machine_lock:
            index = self._state_index
            latest = self.consensus.snapshot
            if index == 0 or (latest is not None and latest.last_index >= index):
                done.set_result(0 if latest is None else latest.last_index)
                return done
            write = self.state.begin_snapshot()
        # The core snapshots only a published index; the batch at `index` is published right after
        # the lock above is released (its writers answered first), as the applier's own snapshots are.
        self.wait_applied(index, PUBLISH_WAIT)
        self.compactor.submit(index, write, done)
        return done

    def wait_applied(self, index: int, timeout: float) -> bool:
        """Block until ``index`` is applied; False when ``timeout`` passes first."""
        if self.applied_index >= index:
            return True   # the common case for a read: no lock, no wait
        with self.applied_signal:
            return self.applied_signal.wait_for(lambda: self.applied_index >= index, timeout)

