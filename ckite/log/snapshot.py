"""A snapshot: the state machine and the cluster configuration as of one log index (§7).

Everything up to ``last_index`` is committed and applied, so a snapshot replaces that log
prefix: the log may then be deleted up to it, and a follower too far behind receives the
snapshot instead of the entries.

This record is the snapshot's *metadata*; the state itself is a file in the member's
:class:`~ckite.log.snapshot_store.SnapshotStore` (``size`` bytes whose CRC-32 is
``checksum``), streamed to and from the state machine and the network, never held whole in
memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``configuration`` is the encoded :class:`~ckite.consensus.membership.Configuration`
    in effect at ``last_index``: committed, so a restored member never starts from a
    configuration the cluster did not agree on (CKite stored an uncommitted one)."""

    last_index: int
    last_term: int
    configuration: bytes
    size: int
    checksum: int   #: CRC-32 (zlib) of the state's bytes: detects a torn or damaged file, not tampering

    @property
    def name(self) -> str:
        """The store's name for its state (index and term identify a snapshot, as they do an entry)."""
        return f"{self.last_index:020d}-{self.last_term:020d}"

    def describe(self) -> dict[str, Any]:
        return {"index": self.last_index, "term": self.last_term, "bytes": self.size}
