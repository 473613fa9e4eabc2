"""Follower (and Joiner): accept the leader's entries, and start an election when it goes quiet."""
from __future__ import annotations

import logging
from typing import Any

from ckite.consensus.role import Role
from ckite.errors import ProtocolError
from ckite.messages import AppendEntries, AppendEntriesResponse, InstallSnapshot, TimeoutNow

logger = logging.getLogger(__name__)


class Follower(Role):
    """§5.2: passive; replicates the leader's log and times out into a (pre-)candidate."""

    name = "Follower"

    def begin(self, now: float) -> None:
        self.consensus.reset_election_deadline(now)

    def deadline(self) -> float | None:
        return self.consensus.election_deadline

    def on_tick(self, now: float) -> None:
        consensus = self.consensus
        if now < consensus.election_deadline:
            return
        if consensus.member_id not in consensus.configuration.all_voters:
            # A learner, or a member removed from the cluster: it must never disrupt the voters.
            consensus.reset_election_deadline(now)
            return
        contact = consensus.last_leader_contact
        logger.info("%s: election timeout in term %d (%s); campaigning", consensus.member_id, consensus.term,
                    "no leader heard yet" if contact is None
                    else f"last heard from {consensus.leader_id} {now - contact:.2f} s ago")
        consensus.become_candidate(now, transfer=False)

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        consensus = self.consensus
        consensus.heard_from_leader(request.leader_id, now)
        log = consensus.log
        term = consensus.term
        prev_index = request.prev_log_index
        if prev_index > log.last_index:
            return AppendEntriesResponse(term, False, conflict_index=log.last_index + 1, conflict_term=0)
        entries = request.entries
        if prev_index <= log.base_index:
            # The prefix up to our log's base is committed (compacted) and so matches the leader's.
            entries = entries[log.base_index - prev_index:]
            prev_index = log.base_index
        else:
            local_term = log.term_at(prev_index)
            assert local_term is not None   # base_index < prev_index <= last_index: the log holds it
            if local_term != request.prev_log_term:
                return AppendEntriesResponse(term, False, conflict_term=local_term,
                                             conflict_index=log.first_index_of_term(local_term, prev_index))
        try:
            truncated_from, added = log.merge_from_leader(prev_index, entries, consensus.commit_index)
        except ValueError as exc:
            logger.error("%s: refusing AppendEntries from %s: %s", consensus.member_id, request.leader_id, exc)
            raise ProtocolError(str(exc)) from exc
        if truncated_from is not None:
            consensus.on_truncated(truncated_from)
        consensus.on_entries_stored(added)
        match_index = prev_index + len(entries)
        consensus.advance_commit(min(request.leader_commit, match_index))
        return AppendEntriesResponse(term, True, match_index=match_index)

    def on_install_snapshot(self, request: InstallSnapshot, now: float) -> None:
        """The leader of our term sends its snapshot: heed it. The chunk goes to its file without
        the lock (:class:`~ckite.log.snapshot_receiver.SnapshotReceiver`), which also answers."""
        self.consensus.heard_from_leader(request.leader_id, now)

    def on_timeout_now(self, request: TimeoutNow, now: float) -> bool:
        consensus = self.consensus
        if consensus.member_id not in consensus.configuration.voters:
            return False
        consensus.become_candidate(now, transfer=True)
        return True

    def status(self, now: float) -> dict[str, Any]:
        consensus = self.consensus
        return {"following": consensus.leader_id,
                "lastLeaderContactMs": None if consensus.last_leader_contact is None
                else round((now - consensus.last_leader_contact) * 1000)}


class Joiner(Follower):
    """CKite's Joiner: a new member waiting to be added; it never starts an election."""

    name = "Joiner"

    def deadline(self) -> float | None:
        return None

    def on_tick(self, now: float) -> None:
        return
