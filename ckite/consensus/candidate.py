"""Candidate: collect votes, first in a pre-vote round, then for real (§5.2, thesis §9.6)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckite.consensus.role import Role
from ckite.messages import AppendEntries, AppendEntriesResponse, Request, RequestVote, RequestVoteResponse

if TYPE_CHECKING:
    from ckite.consensus.consensus import Consensus


class Candidate(Role):
    """Campaigns for leadership.

    With pre-vote on, a candidate first asks "would you vote for me in term T+1?" without
    changing its term; only when a quorum says yes does it increment the term and ask for
    real. A member cut off from the cluster thus cannot inflate its term and depose a
    healthy leader when it comes back.
    """

    name = "Candidate"

    def __init__(self, consensus: Consensus, pre_vote: bool, transfer: bool) -> None:
        super().__init__(consensus)
        self.pre_vote = pre_vote
        self.transfer = transfer
        self.granted: set[str] = set()
        self.requested: set[str] = set()

    def begin(self, now: float) -> None:
        consensus = self.consensus
        consensus.reset_election_deadline(now)
        self.granted = {consensus.member_id}

    @property
    def campaign_term(self) -> int:
        return self.consensus.term + 1 if self.pre_vote else self.consensus.term

    def deadline(self) -> float | None:
        return self.consensus.election_deadline

    def on_tick(self, now: float) -> None:
        if now >= self.consensus.election_deadline:
            self.consensus.become_candidate(now, transfer=False)   # split vote or lost requests: retry

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        # A leader of our term exists (the term check already ran): follow it (§5.2).
        self.consensus.become_follower(now)
        return self.consensus.role.on_append_entries(request, now)

    def next_request(self, peer: str, now: float) -> tuple[Request, Any] | None:
        consensus = self.consensus
        if peer in self.requested or peer not in consensus.configuration.all_voters:
            return None
        self.requested.add(peer)
        log = consensus.log
        return RequestVote(self.campaign_term, consensus.member_id, log.last_index, log.last_term,
                           pre_vote=self.pre_vote, transfer=self.transfer), self

    def on_response(self, peer: str, request: Request, context: Any, response: Any, now: float) -> None:
        if context is not self or not isinstance(response, RequestVoteResponse):
            return   # a reply to an earlier campaign
        if response.granted:
            self.granted.add(peer)
            self.check_won(now)
        elif response.term > self.consensus.term:
            self.consensus.observe_term(response.term, now)

    def check_won(self, now: float) -> None:
        consensus = self.consensus
        if not consensus.configuration.has_quorum(self.granted):
            return
        if self.pre_vote:
            consensus.start_real_election(now, self.transfer)
        else:
            consensus.become_leader(now)

    def status(self, now: float) -> dict[str, Any]:
        return {"preVote": self.pre_vote, "votesGranted": sorted(self.granted)}
