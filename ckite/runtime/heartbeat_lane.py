"""A leader's second connection to each peer, for heartbeats only.

The replication pipeline carries entries in order on one connection, and a follower answers
them in order, each once it is on the follower's disk. When that disk stalls (a large snapshot
being fsynced, another process's writes), a heartbeat queued behind the entries would reach the
follower only after them: the follower hears nothing for an election timeout and campaigns,
and the leader, hearing nothing back, counts it unreachable. hashicorp/raft sends heartbeats on
a connection of their own for the same reason. The lane sends one only while the pipeline has
been held up for a heartbeat interval, and it claims nothing the follower's disk has yet to
hold (:meth:`~ckite.consensus.leader.Leader.lane_heartbeat`), so the follower answers it at
once, from another of its connection threads.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError
from ckite.rpc.transport import Transport
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)


class HeartbeatLane:
    """The ``ckite-<port>-heartbeat-<peer port>`` thread of one peer; started and stopped with
    the peer's :class:`~ckite.runtime.replicator.Replicator`."""

    def __init__(self, tag: str, consensus: Consensus, transport: Transport, peer: str,
                 clock: Callable[[], float]) -> None:
        self._consensus = consensus
        self._transport = transport
        self._peer = peer
        self._clock = clock
        self._worker = Worker(f"ckite-{tag}-heartbeat-{peer.rsplit(':', 1)[-1]}", self._step)

    def start(self) -> None:
        self._worker.start()

    def signal_stop(self) -> None:
        self._worker.signal_stop()

    @property
    def finished(self) -> bool:
        return self._worker.finished

    def join(self) -> None:
        self._worker.join()

    def _step(self, worker: Worker) -> None:
        consensus, peer = self._consensus, self._peer
        item, deadline = consensus.lane_heartbeat(peer)
        if item is None:
            # Nothing held up (or not leading): look again when the next one may fall due. A
            # pipeline that fills up meanwhile is noticed within one heartbeat interval.
            interval = consensus.settings.heartbeat_interval
            worker.wait(interval if deadline is None else min(interval, deadline - self._clock()))
            return
        request, context = item
        try:
            reply = self._transport.call(peer, request, consensus.settings.rpc_timeout)
        except CKiteError as exc:
            logger.debug("%s -> %s heartbeat failed: %s", consensus.member_id, peer, exc)
            consensus.handle_failure(peer, request, context)
            worker.pause(consensus.settings.heartbeat_interval)
        else:
            consensus.handle_response(peer, request, context, reply)
