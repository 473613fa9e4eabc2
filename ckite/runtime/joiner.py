"""The join thread of a new member (CKite's Joiner): asks the seeds to add it to the cluster.

A member started with ``with_join(seeds)`` and no configuration of its own that includes
it waits as a Joiner: it never stands for election. This thread asks each seed in turn to
add it (the seed forwards the request to the leader, which adds it as a learner, lets it
catch up, then makes it a voter) until the member sees itself in a configuration.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ckite.consensus.consensus import Consensus
from ckite.errors import CKiteError
from ckite.messages import JoinMember, JoinMemberResponse
from ckite.rpc.transport import Transport
from ckite.runtime.worker import Worker

logger = logging.getLogger(__name__)

#: Pause between two rounds over the seeds.
RETRY_PAUSE = 0.5


def join_step(consensus: Consensus, transport: Transport, seeds: Sequence[str],
              timeout: float) -> Callable[[Worker], None]:
    """A :class:`Worker` step that asks the seeds until this member is no longer a Joiner."""
    def step(worker: Worker) -> None:
        for seed in seeds:
            if worker.stopping or not consensus.is_joining:
                worker.pause(RETRY_PAUSE)   # done (or stopping): idle until stopped
                return
            try:
                answer = transport.call(seed, JoinMember(consensus.member_id, int(timeout * 1000)), timeout)
                assert isinstance(answer, JoinMemberResponse)   # the codec checks a reply's type
                if answer.success:
                    logger.info("%s: added to the cluster through %s", consensus.member_id, seed)
                else:   # a learner catching up: asking again joins the change in progress
                    logger.info("%s: %s is adding this member; still catching up", consensus.member_id, seed)
                worker.pause(RETRY_PAUSE)   # until the configuration that adds us reaches us
                return
            except CKiteError as exc:
                logger.info("%s: joining through %s failed (%s); retrying", consensus.member_id, seed, exc)
        worker.pause(RETRY_PAUSE)
    return step
