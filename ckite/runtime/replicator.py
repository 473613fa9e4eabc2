"""One thread per peer: sends whatever the consensus core wants that peer to get, and hands
the replies back.

For a leader that is AppendEntries (entries, heartbeats, read-confirmation rounds); for a
candidate, RequestVote. The thread drives a :class:`~ckite.rpc.transport.Pipeline`: it sends
without waiting for replies, up to the core's window (``max_inflight_appends``; the core
sends a further request before a reply only for a full batch), so a follower far behind gets
the next batch while it still writes the previous one to its disk; then it
waits for a reply, a wake-up (new entries) or the next heartbeat, whichever comes first. The
thread only waits, sends and hands replies back; the role classes decide what to send and
what a reply means. Beside it runs the peer's :class:`~ckite.runtime.heartbeat_lane.HeartbeatLane`,
for heartbeats that must not wait behind entries.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError, StorageError
from ckite.identity import MemberIdentity
from ckite.messages import Request
from ckite.rpc.transport import Transport
from ckite.runtime.heartbeat_lane import HeartbeatLane
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)


class Replicator:
    """The ``ckite-<port>-replicate-<peer port>`` thread of one peer. After a failed request
    it sends nothing for a heartbeat interval, so a down peer does not make it spin."""

    def __init__(self, tag: str, consensus: Consensus, transport: Transport, peer: str,
                 clock: Callable[[], float], identity: MemberIdentity) -> None:
        self._consensus = consensus
        self._peer = peer
        self._identity = identity
        self._is_self: bool | None = None   # found out on the thread: resolving a name may wait on DNS
        self._clock = clock
        self._backoff_until = float("-inf")
        self._pipeline = transport.open_pipeline(peer, consensus.settings.rpc_timeout)
        # The thread closes its own pipeline on the way out: the connection and the selector are
        # its alone, and a peer removed from the cluster gives back its file descriptors at once.
        self._worker = Worker(f"ckite-{tag}-replicate-{peer.rsplit(':', 1)[-1]}", self._step,
                              on_exit=self._pipeline.close)
        self._lane = HeartbeatLane(tag, consensus, transport, peer, clock)

    def start(self) -> None:
        self._worker.start()
        self._lane.start()

    def wake(self) -> None:
        """Something new to send (entries, a read round, a role change)."""
        self._pipeline.wake()

    def signal_stop(self) -> None:
        self._worker.signal_stop()
        self._lane.signal_stop()
        self._pipeline.interrupt()

    @property
    def finished(self) -> bool:
        """Its threads have ended and the pipeline is closed."""
        return self._worker.finished and self._lane.finished

    def join(self) -> None:
        self._worker.join()
        self._lane.join()

    def _step(self, worker: Worker) -> None:
        consensus, peer = self._consensus, self._peer
        if self._is_self is None:
            self._is_self = self._identity.warn_once_if_alias(peer, "the configuration")
        if self._is_self:
            worker.wait(None)   # never send to ourselves under another name; idle until stopped
            return
        if self._clock() >= self._backoff_until:
            requests, deadline, barrier = consensus.outgoing(peer)
            if requests and not self._durable(barrier):
                for unsent in requests:   # the member is out of service: nothing may leave
                    consensus.handle_failure(peer, *unsent)
                return
            for position, (request, context) in enumerate(requests):
                readable = self._materialize(request, context)
                if not readable or not self._pipeline.send(request, context):
                    self._back_off()
                    # Never left (a request the pipeline took reports its own outcome): as good as lost.
                    for unsent in requests[position + (1 if readable else 0):]:
                        consensus.handle_failure(peer, *unsent)
                    break
        else:
            deadline = consensus.peer_deadline(peer)
        wake_at = max(float("inf") if deadline is None else deadline, self._backoff_until)
        for request, context, reply in self._pipeline.wait(None if wake_at == float("inf")
                                                           else wake_at - self._clock()):
            try:
                if isinstance(reply, CKiteError):
                    logger.debug("%s -> %s failed: %s", consensus.member_id, peer, reply)
                    consensus.handle_failure(peer, request, context)
                    self._back_off()
                else:
                    consensus.handle_response(peer, request, context, reply)
            except Exception:   # a bug; the other outcomes must still reach the core
                logger.exception("%s: handling the reply of %s to %s failed", consensus.member_id, peer,
                                 type(request).__name__)

    def _materialize(self, request: Request, context: Any) -> bool:
        """Fill in what the core left for this thread to read (a snapshot chunk from its file)."""
        try:
            self._consensus.materialize(request, context)
        except StorageError as exc:
            logger.error("%s: cannot read what to send %s: %s", self._consensus.member_id, self._peer, exc)
            return False
        return True

    def _durable(self, barrier: int) -> bool:
        """Wait for what the requests rest on (a candidate's term and vote) to be on disk."""
        try:
            self._consensus.writer.flush(barrier)
        except StorageError:
            return False
        return True

    def _back_off(self) -> None:
        self._backoff_until = self._clock() + self._consensus.settings.heartbeat_interval
