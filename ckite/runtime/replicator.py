"""One sender thread per peer: sends whatever the consensus core wants that peer to get.

For a leader that is AppendEntries (entries, heartbeats, read-confirmation rounds); for a
candidate, RequestVote. The thread only waits, calls and hands the reply back; the role
classes decide what to send and what a reply means.
"""
from __future__ import annotations

import logging
from typing import Callable

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError
from ckite.rpc.transport import Transport
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)


def replicator_step(consensus: Consensus, transport: Transport, peer: str,
                    clock: Callable[[], float]) -> Callable[[Worker], None]:
    settings = consensus.settings

    def step(worker: Worker) -> None:
        item = consensus.next_request(peer)
        if item is None:
            deadline = consensus.peer_deadline(peer)
            worker.wait(None if deadline is None else deadline - clock())
            return
        request, context = item
        try:
            response = transport.call(peer, request, settings.rpc_timeout)
        except CKiteError as exc:
            logger.debug("%s -> %s failed: %s", consensus.member_id, peer, exc)
            consensus.handle_failure(peer, request, context)
            worker.pause(settings.heartbeat_interval)   # a down peer must not make us spin
            return
        consensus.handle_response(peer, request, context, response)
    return step
