"""What a member says about itself: the document ``Consensus.status()`` returns (under its lock).

Plain values only, so that building it under the lock costs microseconds; the admin console
decodes and formats it (``ckite.admin.status_view``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckite.consensus.follower import Follower
from ckite.log.entry import data_size, is_loaded

if TYPE_CHECKING:
    from ckite.consensus.consensus import Consensus


def state_name(consensus: Consensus) -> str:
    """The role, or "Removed" for a member the configuration no longer includes."""
    if type(consensus.role) is Follower and consensus.member_id not in consensus.configuration.members:
        return "Removed"
    return consensus.role.name


def member_status(consensus: Consensus, now: float) -> dict[str, Any]:
    """Term, role, leader, configuration and log indexes; the caller holds the lock (the
    metrics are added without it, ``Consensus.status``)."""
    log = consensus.log
    last = log.last_index
    last_entry = log.entry(last) if len(log) else None
    change = consensus.membership_change()
    return {
        "id": consensus.member_id,
        "term": consensus.term,
        "state": state_name(consensus),
        "leader": consensus.leader_id,
        "votedFor": consensus.voted_for,
        "stateInfo": consensus.role.status(now),
        "configuration": consensus.configuration.describe(),
        "membershipChange": None if change is None else change.to_json(),
        "log": {"length": len(log), "firstIndex": log.first_index, "lastIndex": last, "lastTerm": log.last_term,
                "durableIndex": log.durable_index, "commitIndex": consensus.commit_index,
                "lastApplied": consensus.applied_index,
                "snapshot": consensus.snapshot.describe() if consensus.snapshot else None,
                "lastEntry": None if last_entry is None else {"kind": last_entry.kind.name,
                                                              "data": last_entry.data if is_loaded(last_entry) else b"",
                                                              "bytes": data_size(last_entry)}},
    }
