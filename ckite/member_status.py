"""What ``CKite.status()`` returns: a member's view of itself as typed, frozen values.

The core builds a plain document under its lock (``ckite.consensus.status``: plain values cost
microseconds to build); this module lifts the fields an application acts on into attributes,
and keeps the document itself for :meth:`MemberStatus.to_json` (the CKite-shaped JSON the admin
console and ``/status`` serve).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Configuration:
    """The configuration in effect: ``old_voters`` is set while a joint configuration (Raft §6)
    is in effect; ``learners`` replicate the log without voting; ``promoting`` are learners that
    become voters once caught up."""

    voters: frozenset[str]
    learners: frozenset[str] = frozenset()
    old_voters: frozenset[str] | None = None
    promoting: frozenset[str] = frozenset()

    @property
    def joint(self) -> bool:
        return self.old_voters is not None

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners | (self.old_voters or frozenset())


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """A leader's replication to one peer: ``last_ack`` is seconds since the peer last answered
    (None: never)."""

    match_index: int
    next_index: int
    inflight: int
    last_ack: float | None


@dataclass(frozen=True, slots=True, eq=False)
class MemberStatus(Mapping[str, Any]):
    """One member's state at one instant (taken under one short hold of the consensus lock).

    The attributes are the typed way in. The status is also a read-only mapping over
    :meth:`to_json` (``status["term"]``, ``status["log"]["commitIndex"]``): ``status()`` returned
    that dict before, and callers that read it, or the fields not lifted into attributes
    (``metrics``, ``stateInfo``, ``membershipChange``), keep working unchanged. No deprecation
    warning: the document is the admin console's stable format, not a legacy.
    """

    id: str
    role: str                       #: Leader, Follower, Candidate, Joiner, Starter, Stopped, Failed, Removed
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    last_index: int
    configuration: Configuration
    #: Leader only: the replication to each peer (empty on any other member).
    replication: Mapping[str, PeerProgress]
    #: Follower only: seconds since it last heard from its leader (None: never, or not a follower).
    last_contact: float | None
    _document: dict[str, Any] = field(repr=False)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> MemberStatus:
        """The typed view of the core's status document (``Consensus.status()``)."""
        log, info, configuration = document["log"], document["stateInfo"], document["configuration"]
        contact = info.get("lastLeaderContactMs")
        return cls(
            id=document["id"], role=document["state"], term=document["term"], leader=document["leader"],
            commit_index=log["commitIndex"], applied_index=log["lastApplied"], last_index=log["lastIndex"],
            configuration=Configuration(
                frozenset(configuration["voters"]), frozenset(configuration["learners"]),
                None if configuration["oldVoters"] is None else frozenset(configuration["oldVoters"]),
                frozenset(configuration["promoting"])),
            replication={peer: PeerProgress(p["matchIndex"], p["nextIndex"], p["inflight"],
                                            None if p["lastAckMs"] is None else p["lastAckMs"] / 1000)
                         for peer, p in info.get("followers", {}).items()},
            last_contact=None if contact is None else contact / 1000,
            _document=document)

    @property
    def is_leader(self) -> bool:
        return self.role == "Leader"

    def to_json(self) -> dict[str, Any]:
        """The CKite-shaped document (what ``status()`` returned before it was typed): plain
        JSON-ready values; a fresh copy at its top level, so changing it changes nothing here."""
        return dict(self._document)

    # --- the read-only mapping over the document ---------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._document[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._document)

    def __len__(self) -> int:
        return len(self._document)
