"""A snapshot: the state machine and the cluster configuration as of one log index (§7).

Everything up to ``last_index`` is committed and applied, so a snapshot replaces that log
prefix: the log may then be deleted up to it, and a follower too far behind receives the
snapshot instead of the entries.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``configuration`` is the encoded :class:`~ckite.consensus.membership.Configuration`
    in effect at ``last_index``: committed, so a restored member never starts from a
    configuration the cluster did not agree on (CKite stored an uncommitted one)."""

    last_index: int
    last_term: int
    configuration: bytes
    data: bytes

    def describe(self) -> dict:
        return {"index": self.last_index, "term": self.last_term, "bytes": len(self.data)}
