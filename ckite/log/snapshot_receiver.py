"""A follower's side of InstallSnapshot: the chunks of a leader's snapshot, gathered in a file.

The consensus core decides whether a leader's InstallSnapshot is to be heeded (its term, the
role); the chunk itself is written here, without the consensus lock (it waits on the disk), by
the RPC thread before it answers. Chunks must arrive in order: one that does not continue the
file is refused with the offset expected next, so the leader resumes there (a lost reply, a
reconnection), or from 0 when this member has nothing of that snapshot (a restart drops
partial files). A late duplicate of the first chunk never wipes what came after it. On the last
chunk the whole state is checked against the leader's size and CRC-32 and made durable; then
the core installs it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ckite.errors import StorageError
from ckite.log.snapshot import Snapshot
from ckite.log.snapshot_store import IncomingSnapshot, SnapshotStore
from ckite.messages import InstallSnapshot

logger = logging.getLogger(__name__)


def announced(request: InstallSnapshot) -> Snapshot:
    """The snapshot a leader's InstallSnapshot is a chunk of."""
    return Snapshot(request.last_index, request.last_term, request.configuration, request.size, request.checksum)


class SnapshotReceiver:
    """One snapshot being received at a time; ``current()`` is the member's latest snapshot,
    kept on disk while a new one arrives (and nothing older: at most two states on disk).
    ``received(snapshot, seconds)`` is told of each one made whole and durable, and how long
    that took from its first chunk."""

    def __init__(self, store: SnapshotStore, current: Callable[[], Snapshot | None],
                 received: Callable[[Snapshot, float], None] | None = None) -> None:
        self._store = store
        self._current = current
        self._received = received
        self._lock = threading.Lock()
        self._incoming: IncomingSnapshot | None = None
        self._began = 0.0   # when the first chunk of the incoming snapshot arrived

    def deliver(self, request: InstallSnapshot) -> tuple[bool, int, Snapshot | None]:
        """Take one chunk: (accepted, offset expected next, the snapshot once whole and durable)."""
        snapshot = announced(request)
        with self._lock:
            incoming = self._incoming
            same = incoming if incoming is not None and incoming.snapshot == snapshot else None
            if request.offset == 0 and not (same is not None and same.received):
                if incoming is not None:
                    incoming.abort()
                current = self._current()
                self._store.retain([current] if current is not None else [])
                incoming = self._incoming = self._store.receive(snapshot)
                self._began = time.perf_counter()
            elif same is None:
                return False, 0, None   # chunks of a snapshot this member has nothing of: from the start
            else:
                incoming = same
            if not incoming.append(request.offset, request.data):
                return False, incoming.received, None   # a duplicate or late chunk: say where to resume
            return self._after_chunk(incoming, request)

    def _after_chunk(self, incoming: IncomingSnapshot, request: InstallSnapshot) -> tuple[bool, int, Snapshot | None]:
        if not request.done:
            return True, incoming.received, None
        self._incoming = None
        try:
            incoming.finish()
        except StorageError as exc:   # damaged on the way (or by the leader's disk): ask for it again
            logger.warning("%s; asking the leader for it again", exc)
            return False, 0, None
        if self._received is not None:
            self._received(incoming.snapshot, time.perf_counter() - self._began)
        return True, incoming.received, incoming.snapshot
