"""Leader leases (thesis §6.4.1) on the deterministic core: reads without a quorum round.

A follower that accepted the leader's AppendEntries refuses votes for ``min_election_timeout``
(thesis §4.2.3, with check-quorum); so once a quorum answered requests the leader built at time
``t``, no other leader can exist before ``t + lease_duration`` (90% of that timeout, for clock
rates that differ), and the leader may answer reads from its commit index alone. The tests also
show each rule that turns the lease off, and the restart window that keeps the followers' side
of the bargain across a crash. Every test drives cores by hand through :mod:`tests.raft_harness`.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from ckite.consensus.consensus import Consensus
from ckite.consensus.membership import Configuration
from ckite.consensus.settings import RaftSettings
from ckite.log.entry import EntryKind
from ckite.messages import AppendEntries, RequestVote, RequestVoteResponse, TimeoutNow
from tests.raft_harness import SETTINGS, Harness

LEASE = replace(SETTINGS, lease_reads=True)
DURATION = LEASE.lease_duration   # 0.9 s: 90% of the minimum election timeout


def vote(term: int, candidate: str, last_index: int = 1, last_term: int = 1, **flags) -> RequestVote:
    return RequestVote(term, candidate, last_index, last_term, **flags)


def leased_leader(size: int = 3, settings: RaftSettings = LEASE, **harness) -> Harness:
    """n1 leads, its first entry committed and known everywhere."""
    h = Harness(size, settings, **harness)
    h.elect("n1")
    for _ in range(2):                                                # followers learn the commit index
        h.heartbeat()
        h.pump()
    assert {h[m].commit_index for m in h["n1"].configuration.members} == {h["n1"].commit_index}
    return h


def last_ack(h: Harness, peer: str) -> float:
    return h["n1"].role.progress[peer].acked_sent_at


def lease_status(member: Consensus) -> dict:
    """What ``/status`` says of reads under ``stateInfo``."""
    info = member.status()["stateInfo"]
    return {key: info[key] for key in ("reads", "leaseRemainingMs", "leaseRevoked") if key in info}


# --- the lease and what it answers ---------------------------------------------------------------------


def test_a_quorum_acknowledgement_lets_the_leader_read_without_a_round():
    """Thesis §6.4.1: "the leader would use the normal heartbeat mechanism to maintain a lease";
    while it holds, a read takes the commit index at once: no read round opens, nothing is sent."""
    h = leased_leader()
    n1 = h["n1"]
    rounds = n1.role.reads.current_round
    assert n1.lease_read_index() == 1
    assert n1.role.reads.current_round == rounds
    assert h.send("n1", "n2") is None and h.send("n1", "n3") is None   # no heartbeat due, no round to carry
    index, _ = n1.propose([(EntryKind.COMMAND, b"x")])
    h.deliver("n1", "n2")                                             # committed by n1 and n2
    assert n1.commit_index == index and n1.lease_read_index() == index


def test_the_lease_lasts_lease_duration_from_when_the_acknowledged_request_was_built():
    """The lease runs from when the leader *built* the request a quorum answered (no later than
    the follower received it, when its own vote refusal starts), not from when the answer came."""
    h = leased_leader()
    n1 = h["n1"]
    h.heartbeat()
    sent = h.now
    taken = h.send("n1", "n2")
    h.advance(0.3)                                                    # a slow round trip
    h.answer("n1", "n2", *taken)
    assert last_ack(h, "n2") == sent and n1.role.lease.until == sent + DURATION
    assert lease_status(n1) == {"reads": "lease", "leaseRemainingMs": round((DURATION - 0.3) * 1000),
                                "leaseRevoked": False}
    h.advance_to(sent + DURATION - 1e-6)
    assert n1.lease_read_index() == 1
    h.advance_to(sent + DURATION)
    assert n1.lease_read_index() is None
    assert lease_status(n1)["leaseRemainingMs"] == 0
    assert n1.is_leader                                               # still leader: reads take ReadIndex
    read = n1.request_read()
    h.deliver("n1", "n3")
    assert read.result(timeout=0) == 1
    assert n1.lease_read_index() == 1                                 # and that round renewed the lease


def test_one_follower_alone_is_not_a_quorum_of_five():
    """The lease is the time a *quorum* acknowledged: in five members the leader needs two
    followers; the older of their acknowledgements bounds it."""
    h = leased_leader(5)
    n1 = h["n1"]
    h.advance(DURATION)
    assert n1.lease_read_index() is None
    h.heartbeat()
    h.deliver("n1", "n2")
    assert n1.lease_read_index() is None
    first = h.now
    h.advance(0.2)
    h.deliver("n1", "n3")
    assert n1.role.lease.until == first + DURATION                    # n2's ack (the older) bounds it
    assert n1.lease_read_index() == 1


def test_a_rejection_in_the_leaders_term_acknowledges_it_too_but_no_read_before_the_first_commit():
    """A follower that rejects an AppendEntries for a log mismatch still accepted the term and
    refuses votes from then on: it counts for the lease. Reads still wait for the leader to
    commit an entry of its term (thesis §6.4 step 1): before that, its commit index (0 after a
    restart) may miss entries an earlier leader committed."""
    h = Harness(3, LEASE, logs={"n1": [1, 1], "n2": [1, 1], "n3": [1]})
    n1 = h["n1"]
    h.advance_to(n1.election_deadline)
    n1.tick()
    h.deliver("n1", "n3")                                             # pre-vote
    h.deliver("n1", "n3")                                             # vote: n1 leads term 2
    assert n1.is_leader and n1.commit_index == 0
    request, response = h.deliver("n1", "n3")                         # prev index 2: n3 lacks it
    assert isinstance(request, AppendEntries) and not response.success
    assert n1.role.lease.holds(h.now)
    assert n1.lease_read_index() is None                              # entries 1-2 may be committed
    h.deliver("n1", "n3")                                             # backtracked: n3 takes 2 and 3
    assert n1.commit_index == 3 and n1.lease_read_index() == 3


def test_lease_reads_off_never_answer_from_a_lease():
    h = leased_leader(settings=SETTINGS)
    assert not h["n1"].role.lease.holds(h.now)
    assert h["n1"].lease_read_index() is None
    assert lease_status(h["n1"]) == {"reads": "readIndex"}


def test_lease_reads_need_check_quorum():
    with pytest.raises(ValueError, match="check_quorum"):
        replace(LEASE, check_quorum=False)


def test_only_the_leader_has_a_lease():
    h = leased_leader()
    assert h["n2"].lease_read_index() is None


# --- leadership transfer revokes it ----------------------------------------------------------------------


def test_timeout_now_revokes_the_lease_for_good_even_when_the_transfer_fails():
    """Thesis §3.10: voters grant a transfer candidate's votes despite a live leader. Once this
    leader has sent TimeoutNow, the target may win at any time with such votes, even after the
    leader gave the transfer up: the lease is gone for the rest of this leadership."""
    h = leased_leader()
    n1 = h["n1"]
    transfer = n1.request_leadership_transfer("n2")
    assert n1.lease_read_index() == 1                                 # nothing sent yet: still good
    timeout_now = h.send("n1", "n2")
    assert isinstance(timeout_now[0], TimeoutNow)
    assert n1.lease_read_index() is None
    assert lease_status(n1) == {"reads": "lease", "leaseRemainingMs": 0, "leaseRevoked": True}
    h.advance(SETTINGS.max_election_timeout)                          # lost: the transfer expires
    n1.tick()
    assert transfer.exception(timeout=0) is not None and n1.is_leader
    h.run_for(0.5)                                                    # fresh acknowledgements from both
    assert last_ack(h, "n2") > h.now - 0.2
    assert n1.lease_read_index() is None

    h.answer("n1", "n2", *timeout_now)                                # the TimeoutNow arrives after all
    h.deliver("n2", "n3")                                             # n3 heard from n1 just now, yet...
    assert h["n2"].is_leader and h["n2"].term == 2                    # ...grants the transfer vote
    assert n1.is_leader and n1.term == 1                              # n1 has not heard: a lease would lie


# --- the followers' side: refusing votes ---------------------------------------------------------------


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
@pytest.mark.parametrize("elapsed, transfer, granted", [
    pytest.param(0.0, False, False, id="just-restarted-refuses"),
    pytest.param(0.99, False, False, id="still-in-window-refuses"),
    pytest.param(0.99, True, True, id="transfer-granted"),
    pytest.param(1.0, False, True, id="after-min-election-timeout-granted"),
])
def test_a_restarted_member_with_a_term_refuses_votes_for_a_min_election_timeout(elapsed, transfer, granted,
                                                                                 pre_vote):
    """A member forgets when it last heard from the leader when it restarts; the leader may hold a
    lease counting on it. So a member that has a term (it may have acknowledged someone) refuses
    (pre-)votes for min_election_timeout after it starts, as if it had just heard from a leader."""
    h = leased_leader()
    h.advance(5.0)
    n2 = h.restart("n2")
    h.advance(elapsed * SETTINGS.min_election_timeout)
    response = n2.handle_request(vote(2, "n3", transfer=transfer, pre_vote=pre_vote))
    assert response.granted is granted
    assert n2.term == (2 if granted and not pre_vote else 1)


@pytest.mark.parametrize("settings", [
    pytest.param(SETTINGS, id="brand-new-member"),
    pytest.param(replace(SETTINGS, check_quorum=False), id="check-quorum-off"),
])
def test_no_restart_window_without_a_term_or_without_check_quorum(settings):
    """A member that never had a term acknowledged no one; without check-quorum nobody refuses
    votes for a live leader anyway (and lease reads are refused)."""
    h = Harness(3, settings, terms={"n2": 0 if settings.check_quorum else 1})
    response = h["n2"].handle_request(vote(2, "n3", 0, 0, pre_vote=True))
    assert response.granted


def lease_outlives_a_restarted_voter(h: Harness) -> bool:
    """n3 is cut off from n1 and campaigns; n1 keeps its lease through n2, which restarts. Does
    n3 win while n1 still holds the lease (two members who would answer reads)?"""
    n1 = h["n1"]
    h.run_for(3.0, ["n1", "n2"])                                      # n3 campaigns in vain meanwhile
    assert n1.lease_read_index() == 1
    h.restart("n2")
    h.deliver("n3", "n2")                                             # pre-vote (if n3 is a pre-candidate)
    h.deliver("n3", "n2")                                             # vote
    return h["n3"].is_leader and n1.lease_read_index() is not None


def test_a_restarted_voter_cannot_elect_a_new_leader_while_the_old_lease_holds():
    h = leased_leader()
    assert not lease_outlives_a_restarted_voter(h)
    assert not h["n3"].is_leader


def test_without_the_restart_window_a_restarted_voter_breaks_the_lease(monkeypatch):
    """The test above fails on a core that forgets the window: the scenario is not vacuous."""
    start = Consensus.start

    def forgetful_start(self):
        start(self)
        self.votes_refused_until = float("-inf")

    monkeypatch.setattr(Consensus, "start", forgetful_start)
    assert lease_outlives_a_restarted_voter(leased_leader())


def test_a_follower_that_adopts_a_newer_term_from_a_stray_reply_still_refuses_votes():
    """A late reply to a request of an earlier candidacy can carry a newer term: the follower
    adopts it and forgets its leader, but the leader's lease still counts on it. The refusal
    depends on when it last heard from a leader, not on whether it still knows one."""
    h = leased_leader()
    n2 = h["n2"]
    stray = RequestVote(2, "n2", 1, 1, pre_vote=True)
    n2.handle_response("n3", stray, None, RequestVoteResponse(2, False))
    assert n2.term == 2 and n2.leader_id is None
    assert not n2.handle_request(vote(2, "n3")).granted          # the adopted term itself: no vote given yet
    assert not n2.handle_request(vote(3, "n3", pre_vote=True)).granted
    assert not n2.handle_request(vote(3, "n3")).granted
    h.advance(SETTINGS.min_election_timeout + 1e-6)
    assert n2.handle_request(vote(3, "n3")).granted


# --- joint consensus --------------------------------------------------------------------------------------


def test_while_joint_the_lease_needs_a_quorum_of_both_groups():
    """Thesis §4.3 / §6: while joint, a new leader needs majorities of both C_old and C_new, so the
    lease lasts until the time up to which *both* majorities acknowledged (quorum_value)."""
    h = leased_leader(3, spares=1)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    for _ in range(10):                                               # n4 catches up as a learner...
        if n1.configuration.is_joint:
            break
        if h.deliver("n1", "n2") is None and h.deliver("n1", "n4") is None:
            h.heartbeat()
    assert n1.configuration == Configuration(frozenset({"n1", "n2", "n3", "n4"}), frozenset({"n1", "n2", "n3"}))
    h.advance(DURATION)                                               # ...then the joint configuration is in
    assert n1.lease_read_index() is None
    h.heartbeat()
    h.deliver("n1", "n2")                                             # a majority of C_old {n1 n2 n3}...
    assert n1.configuration.is_joint and n1.lease_read_index() is None  # ...but 2 of the 4 of C_new
    h.deliver("n1", "n4")
    assert n1.lease_read_index() == n1.commit_index


def test_a_new_configuration_recomputes_the_lease_at_once():
    """A configuration takes effect when appended (§6): a voter added by it has acknowledged
    nothing, so a joint configuration whose new group lacks a majority of acknowledgements
    ends the lease before any reply arrives."""
    h = leased_leader(3, spares=2)
    n1 = h["n1"]
    assert n1.lease_read_index() == 1
    joint = Configuration(frozenset({"n1", "n4", "n5"}), frozenset({"n1", "n2", "n3"}))
    with n1._step():                                                  # the leader's own change, appended
        n1.append_configuration(joint)
    assert n1.lease_read_index() is None

