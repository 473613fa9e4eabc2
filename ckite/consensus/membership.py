"""Cluster configurations and the quorum arithmetic over them (Raft §6).

A configuration is either simple (``old_voters is None``) or joint (C_old,new), in
which case every decision — an election, a commit, a read confirmation — needs a
majority of *both* the old and the new voters. Learners receive the log but count
toward nothing. Configurations travel in CONFIGURATION log entries, encoded here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from ckite.errors import EncodingError

#: What a quorum is taken over: match indexes and read rounds (int), acknowledgement times (float).
Q = TypeVar("Q", int, float)


@dataclass(frozen=True)
class Configuration:
    """Who votes (and, while joint, who voted before), and who only listens."""

    voters: frozenset[str]
    old_voters: frozenset[str] | None = None
    learners: frozenset[str] = field(default_factory=frozenset)
    #: The learners to make voters once they have caught up (members being added); the other
    #: learners stay learners.
    promoting: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.promoting <= self.learners:
            raise ValueError(f"promoting {sorted(self.promoting - self.learners)}: not learners")

    @classmethod
    def of(cls, voters: Iterable[str]) -> Configuration:
        return cls(frozenset(voters))

    @property
    def is_joint(self) -> bool:
        return self.old_voters is not None

    @property
    def members(self) -> frozenset[str]:
        """Everyone the leader replicates to (plus itself)."""
        return self.voters | (self.old_voters or frozenset()) | self.learners

    @property
    def all_voters(self) -> frozenset[str]:
        return self.voters | (self.old_voters or frozenset())

    def has_quorum(self, ayes: Iterable[str]) -> bool:
        """True when ``ayes`` hold a majority of every voter group in force."""
        ayes = set(ayes)
        return all(len(group & ayes) * 2 > len(group) for group in self._groups())

    def quorum_value(self, values: Mapping[str, Q]) -> Q:
        """The largest v such that a quorum of voters has a value >= v (missing voters count 0).

        Used for the commit index (values = match indexes) and for read confirmation
        (values = acknowledged heartbeat rounds).
        """
        return min(_majority_value(group, values) for group in self._groups())

    def _groups(self) -> tuple[frozenset[str], ...]:
        return (self.voters,) if self.old_voters is None else (self.voters, self.old_voters)

    def encode(self) -> bytes:
        encoded: bytes = msgpack.packb({"voters": sorted(self.voters),
                                        "old_voters": None if self.old_voters is None else sorted(self.old_voters),
                                        "learners": sorted(self.learners), "promoting": sorted(self.promoting)},
                                       use_bin_type=True)
        return encoded

    @classmethod
    def decode(cls, data: bytes) -> Configuration:
        try:
            raw = msgpack.unpackb(data, raw=False)
            old = raw["old_voters"]
            learners = frozenset(raw.get("learners", ()))
            # Before "promoting" existed, every learner was a member being added.
            return cls(frozenset(raw["voters"]), None if old is None else frozenset(old), learners,
                       frozenset(raw.get("promoting", learners)))
        except Exception as exc:
            raise EncodingError(f"malformed cluster configuration: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view for the admin console."""
        return {"voters": sorted(self.voters),
                "oldVoters": None if self.old_voters is None else sorted(self.old_voters),
                "learners": sorted(self.learners), "promoting": sorted(self.promoting), "joint": self.is_joint}


def _majority_value(group: frozenset[str], values: Mapping[str, Q]) -> Q:
    if not group:
        return 0
    ordered = sorted((values.get(member, 0) for member in group), reverse=True)
    return ordered[len(group) // 2]
