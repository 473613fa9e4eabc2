"""Membership changes on the deterministic core: Raft §6 joint consensus, with learners.

Sections are those of the Raft paper (§6 "Cluster membership changes") and of Ongaro's thesis
(thesis §4.2.x: learners that catch up first, removing the leader, disruptive removed servers).
Every test drives cores by hand through :mod:`tests.raft_harness` (no threads, no sleeps), and
the last tests break the core on purpose to show that these tests notice.

Configurations are written ``C("n1 n2 n3", old="n1 n2", learners="n4")``.
"""
from __future__ import annotations

import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from ckite.consensus.candidate import Candidate
from ckite.consensus.configurations import ConfigurationHistory
from ckite.consensus.consensus import Consensus
from ckite.consensus.membership import Configuration
from ckite.consensus.reconfiguration import ChangeState, Reconfiguration
from ckite.errors import MembershipChangeError, MembershipChangeInProgressError, NotLeaderError
from ckite.log.entry import EntryKind
from ckite.messages import AppendEntries, RequestVote, RequestVoteResponse, TimeoutNow
from tests.raft_harness import SETTINGS, Harness

NO_PRE_VOTE = replace(SETTINGS, pre_vote=False)
#: Only the configuration rules stand between a removed member's higher term and the leader.
UNPROTECTED = replace(SETTINGS, pre_vote=False, check_quorum=False)
#: A snapshot keeps no trailing entries: the log after it holds no configuration entry.
COMPACTING = replace(SETTINGS, compaction_threshold=1)


def C(voters: str, old: str | None = None, learners: str = "", promoting: str | None = None) -> Configuration:
    """A configuration; learners are members being added (promoting) unless ``promoting`` says otherwise."""
    return Configuration(frozenset(voters.split()), None if old is None else frozenset(old.split()),
                         frozenset(learners.split()), frozenset((learners if promoting is None else promoting).split()))


def leader_of(size: int = 3, spares: int = 0, settings=SETTINGS) -> Harness:
    """n1 leads term 1; its first entry (the initial configuration, index 1) is committed everywhere."""
    h = Harness(size, settings, spares=spares)
    h.elect("n1", h.ids[:size])
    h.heartbeat()
    h.pump(h.ids[:size])
    assert all(h[m].commit_index == 1 for m in h.ids[:size])
    return h


def collect_votes(h: Harness, candidate: str, voters: list[str], time_out: bool = True) -> bool:
    """Time ``candidate`` out (or let it go on campaigning) and hand its (pre-)vote requests to
    ``voters`` only, in that order, stopping the moment it wins (so no AppendEntries leaves):
    did it become leader?"""
    node = h[candidate]
    if time_out:
        h.advance_to(node.election_deadline)
        node.tick()
    for _ in range(2):   # a pre-vote round, then the real one
        for voter in voters:
            if node.is_leader:
                return True
            h.deliver(candidate, voter)
    return node.is_leader


def replicate(h: Harness, leader: str, follower: str, through: int | None = None) -> None:
    """Round trips from ``leader`` to ``follower`` only, until the leader knows the follower holds
    its log through ``through`` (by default: all of it, including what it appends meanwhile), or
    until the leader lets go of a follower that now holds the configuration removing it."""
    node = h[leader]
    for _ in range(10):
        progress = node.role.progress.get(follower)
        if progress is None:
            assert h[follower].configuration == node.configuration, f"{leader} let go of {follower} too early"
            return
        if progress.match_index >= (node.log.last_index if through is None else through):
            return
        if h.deliver(leader, follower) is None:
            h.heartbeat()
    raise AssertionError(f"{follower} did not catch up with {leader}")


def entry_kinds(node: Consensus) -> list[str]:
    return [entry.kind.name for entry in node.log.slice(node.log.first_index, node.log.last_index + 1)]


# --- quorum arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize("configuration, ayes, quorum", [
    (C("a b c"), "a b", True),
    (C("a b c"), "a", False),
    (C("a b c"), "a d e", False),                      # non-members count for nothing
    (C("a b c d"), "a b", False),                      # half is not a majority
    (C("a b c d"), "a b c", True),
    # Adding d: C_old,new = {a b c d} and {a b c}.
    (C("a b c d", old="a b c"), "a b", False),         # a majority of C_old only
    (C("a b c d", old="a b c"), "a b d", True),
    # Replacing a b by d e: C_new = {c d e}, C_old = {a b c}.
    (C("c d e", old="a b c"), "c d e", False),         # a majority of C_new only
    (C("c d e", old="a b c"), "a b c", False),         # a majority of C_old only
    (C("c d e", old="a b c"), "a c d", True),
    (C("c d e", old="a b c"), "b c e", True),
    # Learners count toward nothing, simple or joint.
    (C("a b c", learners="d e"), "a d e", False),
    (C("a b c", learners="d e"), "a b", True),
    (C("a b c d", old="a b c", learners="e"), "a d e", False),
    (C("a b c d", old="a b c", learners="e"), "a b d", True),
])
def test_a_quorum_is_a_majority_of_every_voter_group_in_force(configuration, ayes, quorum):
    """§6: "Agreement (for elections and entry commitment) requires separate majorities from both
    the old and new configurations"; thesis §4.2.1: learners ("non-voting members") do not count."""
    assert configuration.has_quorum(ayes.split()) is quorum


@pytest.mark.parametrize("configuration, values, expected", [
    (C("a b c"), {"a": 5, "b": 3, "c": 1}, 3),
    (C("a b c"), {"a": 7}, 0),                                              # silent voters hold 0
    (C("a b c d"), {"a": 9, "b": 8, "c": 2, "d": 1}, 2),
    (C("c d e", old="a b c"), {"a": 9, "b": 9, "c": 4, "d": 2, "e": 1}, 2),  # C_new lags
    (C("c d e", old="a b c"), {"a": 1, "b": 1, "c": 4, "d": 9, "e": 9}, 1),  # C_old lags
    (C("a b c", learners="d e"), {"a": 5, "b": 1, "d": 9, "e": 9}, 1),     # learners ignored
])
def test_the_quorum_value_is_what_a_majority_of_every_group_has_reached(configuration, values, expected):
    """The commit index (and a read's confirmation round) is the largest value a quorum holds:
    while joint, the smaller of the two groups' majority values."""
    assert configuration.quorum_value(values) == expected


def test_a_configuration_survives_its_log_encoding():
    for configuration in (C("a b c"), C("c d e", old="a b c", learners="f"), C("a", learners="b")):
        decoded = Configuration.decode(configuration.encode())
        assert decoded == configuration and decoded.is_joint == configuration.is_joint
    assert C("c d", old="a c", learners="e").members == {"a", "c", "d", "e"}
    assert C("c d", old="a c", learners="e").all_voters == {"a", "c", "d"}


# --- §6 while joint, every decision needs both majorities --------------------------------------------

JOINT = C("n3 n4 n5", old="n1 n2 n3")   # replacing n1 n2 by n4 n5; n3 belongs to both


@pytest.mark.parametrize("first, then", [(["n4", "n5"], "n1"), (["n1", "n2"], "n4")],
                         ids=["C_new-majority-first", "C_old-majority-first"])
def test_while_joint_a_candidate_needs_a_majority_of_both_groups(first, then):
    """§6: during joint consensus a candidate wins only with a majority of C_old *and* of C_new:
    n3 with the votes of n4 and n5 holds all of C_new but one of three in C_old, and the
    reverse; one more vote from the group it lacks elects it."""
    h = Harness(5, NO_PRE_VOTE, configuration=JOINT)
    n3 = h["n3"]
    assert not collect_votes(h, "n3", first), "elected on one group's majority alone"
    assert isinstance(n3.role, Candidate) and n3.role.granted == {"n3", *first}
    h.deliver("n3", then)
    assert n3.is_leader


@pytest.mark.parametrize("first, then", [(["n4", "n5"], "n1"), (["n1", "n2"], "n4")],
                         ids=["C_new-majority-first", "C_old-majority-first"])
def test_while_joint_an_entry_needs_a_majority_of_both_groups_to_commit(first, then):
    """§6: an entry is committed only once stored on a majority of C_old and of C_new."""
    h = Harness(5, NO_PRE_VOTE, configuration=JOINT)
    assert collect_votes(h, "n3", ["n1", "n4", "n2", "n5"])
    n3 = h["n3"]
    assert n3.log.last_index == 1 and n3.configuration == JOINT   # its first entry: the joint configuration
    for follower in first:
        replicate(h, "n3", follower)
    assert n3.commit_index == 0, "committed on one group's majority alone"
    replicate(h, "n3", then)
    assert n3.commit_index >= 1


def test_adding_a_voter_commits_nothing_on_the_old_majority_alone():
    """§6 with a real change: once n1 has appended C_old,new (n4 added), the old cluster's majority
    n1+n2 (two of three) is only half of C_new, so a write it stores is not committed until n4
    or n3 has it too."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    h.pump(["n1", "n2", "n3"])           # the learner configuration commits
    replicate(h, "n1", "n4", through=2)  # n4 catches up: n1 appends the joint configuration
    assert n1.configuration == C("n1 n2 n3 n4", old="n1 n2 n3") and n1.configuration_index == 3
    index, _ = n1.propose([(EntryKind.COMMAND, b"x")])
    replicate(h, "n1", "n2")
    assert n1.commit_index == 2, "committed on C_old's majority alone"
    replicate(h, "n1", "n4")
    assert n1.commit_index >= index


# --- §6 a configuration takes effect when appended ---------------------------------------------------


def test_a_new_learner_is_replicated_to_as_soon_as_its_configuration_is_appended():
    """§6: "a server always uses the latest configuration in its log, regardless of whether the
    entry is committed". Adding n4 appends C(n1 n2 n3, learners n4); before anyone has
    acknowledged it, n1 already replicates to n4, and n4 catches up as a learner whose
    acknowledgements count toward nothing."""
    h = leader_of(3, spares=1)
    n1, n4 = h["n1"], h["n4"]
    assert h.send("n1", "n4") is None and n4.is_joining
    n1.request_membership_change(add=["n4"])
    assert n1.configuration == C("n1 n2 n3", learners="n4")
    assert n1.configuration_index == 2 and n1.commit_index == 1
    assert "n4" in n1.peers
    request, _ = h.deliver("n1", "n4")
    assert isinstance(request, AppendEntries)
    replicate(h, "n1", "n4")
    assert entry_kinds(n4) == ["CONFIGURATION", "CONFIGURATION"]
    assert n4.configuration == n1.configuration and n4.is_joining   # a learner still: it must not campaign
    assert n1.commit_index == 1, "a learner's acknowledgement counted toward the commit"


def test_the_leader_appends_the_next_configuration_only_once_the_previous_is_committed():
    """§6 / thesis §4.2.1: one configuration entry in flight at a time. n4 catching up as a learner
    makes it ready for C_old,new, yet n1 waits until C(learners n4) is committed; C_new likewise
    waits for C_old,new; the change completes with C_new committed."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    done = n1.request_membership_change(add=["n4"])
    replicate(h, "n1", "n4")
    assert n1.log.last_index == 2 and n1.configuration == C("n1 n2 n3", learners="n4"), \
        "C_old,new appended before C(learners n4) was committed"
    replicate(h, "n1", "n2", through=2)  # the learner configuration commits: the joint one follows
    assert n1.commit_index == 2
    assert n1.configuration == C("n1 n2 n3 n4", old="n1 n2 n3") and n1.configuration_index == 3
    replicate(h, "n1", "n4")
    assert n1.configuration_index == 3 and n1.commit_index == 2, "C_new appended before C_old,new committed"
    replicate(h, "n1", "n2")             # C_old,new commits (n1 n2 of C_old; n1 n2 n4 of C_new): C_new follows
    assert n1.commit_index == 3 and n1.configuration == C("n1 n2 n3 n4") and n1.configuration_index == 4
    assert not done.done()
    replicate(h, "n1", "n3")
    assert n1.commit_index == 4 and done.result(0).state is ChangeState.DONE


def test_a_follower_campaigns_under_the_joint_configuration_it_appended():
    """§6: a follower that holds C_old,new, uncommitted, uses it for its own election: with n1
    gone, n2 needs n4 (a voter of C_new only) besides n3."""
    h = leader_of(3, spares=1)
    n1, n2 = h["n1"], h["n2"]
    n1.request_membership_change(add=["n4"])
    h.pump(["n1", "n2", "n3"])
    replicate(h, "n1", "n4")
    joint = C("n1 n2 n3 n4", old="n1 n2 n3")
    request, _ = h.send("n1", "n2")
    h["n2"].handle_request(request)      # n2 stores C_old,new; n1 never hears back, then crashes
    assert n2.configuration == joint and n2.commit_index < n2.configuration_index
    h.advance(SETTINGS.max_election_timeout)
    assert not collect_votes(h, "n2", ["n3"]), "won (the pre-vote) on C_old's majority alone"
    assert n2.role.pre_vote and n2.role.granted == {"n2", "n3"}
    assert collect_votes(h, "n2", ["n3", "n4"], time_out=False)


def test_a_joiner_never_campaigns_and_follows_once_a_configuration_makes_it_a_voter():
    """CKite's Joiner: built with an empty configuration it waits, however long, to be added; as a
    learner it still never campaigns; C_old,new makes it a voter and thus a Follower."""
    h = leader_of(3, spares=1)
    n1, n4 = h["n1"], h["n4"]
    for _ in range(10):
        h.advance(SETTINGS.max_election_timeout)
        n4.tick()
    assert n4.is_joining and n4.term == 0 and h.send("n4", "n1") is None
    n1.request_membership_change(add=["n4"])
    replicate(h, "n1", "n4")
    assert n4.is_joining and n4.status()["state"] == "Joiner"
    replicate(h, "n1", "n2")             # commits the learner configuration: n1 appends C_old,new
    replicate(h, "n1", "n4", through=3)
    assert n4.configuration.is_joint and n4.status()["state"] == "Follower"


# --- §6 rollback: an overwritten configuration entry is undone ---------------------------------------


@pytest.mark.parametrize("snapshot", [False, True], ids=["previous-in-log", "snapshot"])
def test_a_follower_reverts_to_the_previous_configuration_when_a_new_leader_overwrites_one(snapshot):
    """§6 + §5.3: n1 appends C_old,new (promoting n6) and only n2 stores it; a new leader, n3,
    overwrites it, and n2 falls back to the configuration before it — the earlier entry in its
    log, or, once that was compacted, its snapshot's configuration."""
    h = leader_of(5, spares=1, settings=COMPACTING)
    n1, n2, n3 = h["n1"], h["n2"], h["n3"]
    learner = C("n1 n2 n3 n4 n5", learners="n6")
    n1.request_membership_change(add=["n6"])
    h.pump(h.ids[:5])
    h.heartbeat()
    h.pump(h.ids[:5])                    # everyone knows the learner configuration is committed
    assert n2.commit_index == 2 and n2.configuration == learner
    if snapshot:
        n2.set_applied(2)
        n2.take_snapshot(2, b"state")
        assert n2.log.first_index == 3 and n2.configuration_index == 2   # no configuration entry left
    replicate(h, "n1", "n6")             # n6 caught up: n1 appends C_old,new at index 3
    assert n1.configuration.is_joint and n1.configuration_index == 3
    replicate(h, "n1", "n2")
    assert n2.configuration == n1.configuration and n2.configuration_index == 3

    h.advance(SETTINGS.max_election_timeout)   # n1 and n2 are cut off; the others' lease on n1 lapses
    assert collect_votes(h, "n3", ["n4", "n5"])
    assert n3.configuration == learner and entry_kinds(n3)[-1] == "NOOP"
    for _ in range(5):                   # just what it takes to overwrite index 3 at n2
        if n2.log.term_at(3) == n3.term:
            break
        h.deliver("n3", "n2")
    assert n2.log.term_at(3) == n3.term
    assert n2.configuration == learner and n2.configuration_index == 2, "the overwritten configuration stayed"
    if snapshot:
        assert n2.snapshot is not None and Configuration.decode(n2.snapshot.configuration) == learner


# --- restart -------------------------------------------------------------------------------------------


def test_a_restarted_member_uses_the_latest_configuration_in_its_log_even_uncommitted():
    """§6: the configuration in force is the log's latest, committed or not, after a crash too:
    rebuilt from the same storage, n2 holds C(n1..n4) and then an uncommitted C_old,new removing n4."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    for _ in range(4):
        h.pump()
        h.heartbeat()
    grown = C("n1 n2 n3 n4")
    assert n1.configuration == grown and n1.commit_index == n1.configuration_index
    assert h.restart("n2").configuration == grown
    assert h.restart("n4").configuration == grown and h["n4"].status()["state"] == "Follower"

    n1.request_membership_change(remove=["n4"])
    replicate(h, "n1", "n2")
    shrinking = C("n1 n2 n3", old="n1 n2 n3 n4")
    n2 = h.restart("n2")
    assert n2.configuration == shrinking and n2.configuration_index > n2.commit_index


def test_a_restarted_member_takes_its_configuration_from_its_snapshot_then_from_the_log_after_it():
    """§7: a snapshot stores the configuration as of its last index; a member whose log after the
    snapshot holds no configuration entry restarts with that one (not the one it was first built
    with), and a configuration entry after the snapshot takes precedence over it."""
    h = leader_of(3, spares=1, settings=COMPACTING)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    for _ in range(4):
        h.pump()
        h.heartbeat()
    grown = C("n1 n2 n3 n4")
    n2 = h["n2"]
    assert n2.configuration == grown and n2.commit_index == n2.configuration_index == 4
    n2.set_applied(4)
    n2.take_snapshot(4, b"state")
    n2 = h.restart("n2")
    assert n2.configuration == grown and n2.configuration_index == 4 and len(n2.log) == 0
    assert h.configuration == C("n1 n2 n3")       # what n2 was built with: overridden by the snapshot

    n1.request_membership_change(remove=["n3"])
    replicate(h, "n1", "n2")
    n2 = h.restart("n2")
    assert n2.configuration == C("n1 n2 n4", old="n1 n2 n3 n4") and n2.configuration_index == 5
    assert n2.configuration_at(4) == grown


# --- thesis §4.2.2 removing the leader ---------------------------------------------------------------


def test_a_leader_that_removes_itself_commits_without_itself_hands_over_and_stays_silent():
    """Thesis §4.2.2: the leader of C_old,new → C_new replicates C_new without counting itself (it is
    not a voter of C_new); once C_new is committed it stops taking writes, sends TimeoutNow to
    the most up-to-date voter and steps down. Removed, it never campaigns again."""
    h = leader_of(3)
    n1 = h["n1"]
    done = n1.request_membership_change(remove=["n1"])
    assert n1.configuration == C("n2 n3", old="n1 n2 n3")
    replicate(h, "n1", "n2")
    assert n1.commit_index == 1                   # C_old,new needs all of C_new {n2 n3}
    replicate(h, "n1", "n3")                      # C_old,new commits; C_new follows and reaches n3
    assert n1.configuration == C("n2 n3") and n1.configuration_index == 3
    assert n1.commit_index == 2, "C_new committed on n1's own entry and n3's: n1 is not a voter of C_new"
    replicate(h, "n1", "n2")
    assert n1.commit_index == 3 and done.result(0).state is ChangeState.DONE
    assert n1.is_leader
    with pytest.raises(NotLeaderError):
        n1.propose([(EntryKind.COMMAND, b"x")])   # handing over

    target = n1.role.transfer.target
    request, response = h.deliver("n1", target)
    assert isinstance(request, TimeoutNow) and response.accepted
    assert not n1.is_leader and n1.status()["state"] == "Removed"
    h.pump(["n2", "n3"])
    assert h[target].is_leader and h[target].configuration == C("n2 n3")

    term = n1.term
    for _ in range(20):
        h.advance(SETTINGS.max_election_timeout)
        n1.tick()
        assert all(h.send("n1", peer) is None for peer in ("n2", "n3"))
    assert n1.term == term and n1.status()["state"] == "Removed"


# --- a new leader finishes the change ---------------------------------------------------------------


def test_a_new_leader_finishes_a_joint_configuration_once_it_is_committed():
    """§6: a leader that finds C_old,new in its log appends C_new, but only after C_old,new (with an
    entry of its own term) is committed under both majorities. n1 appended C_old,new (adding n4)
    and crashed before it was acknowledged; n2 wins, commits it with n3 and n4, then appends C_new."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    h.pump(["n1", "n2", "n3"])
    replicate(h, "n1", "n4", through=2)
    joint = C("n1 n2 n3 n4", old="n1 n2 n3")
    assert n1.configuration == joint and n1.configuration_index == 3
    for follower in ("n2", "n3", "n4"):    # every follower stores it; the replies are lost
        request, _ = h.send("n1", follower)
        h[follower].handle_request(request)
        assert h[follower].configuration == joint

    h.advance(SETTINGS.max_election_timeout)
    assert collect_votes(h, "n2", ["n3", "n4"])
    n2 = h["n2"]
    assert n2.configuration == joint and entry_kinds(n2)[3:] == ["NOOP"] and n2.commit_index < 3
    replicate(h, "n2", "n3")
    assert n2.commit_index < 3 and n2.log.last_index == 4, "committed on C_old's majority alone"
    replicate(h, "n2", "n4")
    assert n2.commit_index == 4
    assert n2.configuration == C("n1 n2 n3 n4") and n2.configuration_index == 5
    h.heartbeat()
    h.pump(["n2", "n3", "n4"])
    assert n2.commit_index == 5


def test_a_new_leader_that_c_new_leaves_out_finishes_the_change_then_hands_over():
    """§6 + thesis §4.2.2: n1 committed C_old,new removing n3 and crashed before anyone received
    C_new. n3, a voter of C_old only, may win (a majority of both groups votes for it); it
    commits C_old,new, appends and commits C_new without counting itself, then hands over."""
    h = leader_of(4)
    n1 = h["n1"]
    n1.request_membership_change(remove=["n3"])
    taken = {follower: h.send("n1", follower) for follower in ("n2", "n3", "n4")}   # C_old,new to each
    for follower, (request, context) in taken.items():
        h.answer("n1", follower, request, context)
    assert n1.commit_index == 2 and n1.configuration == C("n1 n2 n4")   # C_new: never sent

    h.advance(SETTINGS.max_election_timeout)
    assert collect_votes(h, "n3", ["n2", "n4"])
    n3 = h["n3"]
    assert n3.configuration == C("n1 n2 n4", old="n1 n2 n3 n4") and entry_kinds(n3)[-1] == "NOOP"
    replicate(h, "n3", "n2")
    replicate(h, "n3", "n4")
    assert n3.commit_index == 3 and n3.configuration == C("n1 n2 n4") and n3.configuration_index == 4
    assert n3.is_leader                  # C_new is not committed yet: n3 still leads
    h.heartbeat()
    h.pump(["n2", "n3", "n4"])
    leaders = [m for m in ("n2", "n4") if h[m].is_leader]
    assert len(leaders) == 1 and h[leaders[0]].term == n3.term + 1
    assert n3.status()["state"] == "Removed"
    assert h[leaders[0]].configuration == C("n1 n2 n4")


def test_a_new_leader_promotes_a_caught_up_learner_it_finds_in_its_log():
    """Thesis §4.2.1: a learner is promoted by whichever leader sees it caught up. n1 committed
    C(learners n4) and crashed before n4 caught up; n2 wins, replicates to n4, and carries the
    change through C_old,new to C_new."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    n1.request_membership_change(add=["n4"])
    h.pump(["n1", "n2", "n3"])
    h.heartbeat()
    h.pump(["n1", "n2", "n3"])
    assert h["n2"].commit_index == 2 and h["n4"].log.last_index == 0

    h.advance(SETTINGS.max_election_timeout)
    n2 = h.elect("n2", ["n2", "n3"])
    assert n2.configuration == C("n1 n2 n3", learners="n4") and n2.commit_index == 3
    replicate(h, "n2", "n4", through=3)
    assert n2.configuration == C("n1 n2 n3 n4", old="n1 n2 n3")
    for _ in range(3):
        h.heartbeat()
        h.pump(["n2", "n3", "n4"])
    assert n2.configuration == C("n1 n2 n3 n4") and n2.commit_index == n2.configuration_index
    assert h["n4"].status()["state"] == "Follower"


def test_one_change_at_a_time_an_added_member_waits_as_a_learner_until_cancelled():
    """A second request fails at once while a change runs, and the same request again joins it; a
    member that does not catch up stays a learner however long it takes (no deadline) until its
    addition is cancelled by removing it; the next change waits until that configuration is
    committed. A cluster cannot remove its last voter."""
    h = leader_of(3, spares=1)
    n1 = h["n1"]
    add = n1.request_membership_change(add=["n4"])
    assert n1.request_membership_change(add=["n4"]) is add   # a retry joins the change
    with pytest.raises(MembershipChangeInProgressError):
        n1.request_membership_change(remove=["n3"])
    h.pump(["n1", "n2", "n3"])           # n4 never answers
    assert n1.configuration == C("n1 n2 n3", learners="n4") and n1.commit_index == 2
    for _ in range(100):                 # ten seconds: no deadline runs out
        h.heartbeat()
        h.tick_all(["n1", "n2", "n3"])
        h.pump(["n1", "n2", "n3"])
    assert n1.is_leader and not add.done()
    assert n1.membership_change().to_json() == {"members": ["n1", "n2", "n3", "n4"], "added": ["n4"], "removed": [],
                                                "state": "catching-up", "cancelled": [], "learners": []}

    assert n1.request_membership_change(remove=["n4"]) is add   # cancels the addition
    assert n1.configuration == C("n1 n2 n3") and n1.configuration_index == 3
    remove_blocked = pytest.raises(MembershipChangeInProgressError)
    with remove_blocked:
        n1.request_membership_change(remove=["n3"])   # until the cancellation is committed
    h.heartbeat()
    h.pump(["n1", "n2", "n3"])
    assert add.result(0).state is ChangeState.DONE and add.result(0).cancelled == ("n4",)
    assert n1.membership_change() is None

    remove = n1.request_membership_change(remove=["n3"])
    for _ in range(3):
        h.heartbeat()
        h.pump(["n1", "n2", "n3"])
    assert remove.result(0).state is ChangeState.DONE and n1.configuration == C("n1 n2")

    single = Harness(1)
    single.elect("n1")
    with pytest.raises(MembershipChangeError):
        single["n1"].request_membership_change(remove=["n1"])


# --- thesis §4.2.3 disruptive removed servers -------------------------------------------------------


def test_a_removed_member_that_missed_its_removal_cannot_depose_the_leader():
    """Thesis §4.2.3: n3 is cut off while n1 removes it; still believing itself a voter, it times out
    again and again and campaigns with ever higher terms. Without pre-vote or leader leases, only
    the configuration protects the cluster: n1 and n2 refuse a candidate that is not a voter of
    theirs, without adopting its term, and n1 keeps leading."""
    h = leader_of(3, settings=UNPROTECTED)
    n1, n2, n3 = h["n1"], h["n2"], h["n3"]
    n1.request_membership_change(remove=["n3"])
    replicate(h, "n1", "n2")             # C_old,new commits on n1 n2, then C_new
    assert n1.configuration == C("n1 n2") and n1.commit_index == n1.configuration_index
    assert n3.configuration == C("n1 n2 n3")

    for _ in range(3):
        h.advance_to(n3.election_deadline)
        n3.tick()
    assert isinstance(n3.role, Candidate) and n3.term == 4
    for voter in ("n1", "n2"):
        request, response = h.deliver("n3", voter)
        assert isinstance(request, RequestVote) and request.term == 4
        assert response == RequestVoteResponse(1, False), "the removed member's term was adopted"
    assert (n1.term, n2.term, n2.voted_for) == (1, 1, "n1")
    assert n1.is_leader
    index, _ = n1.propose([(EntryKind.COMMAND, b"x")])
    replicate(h, "n1", "n2")
    assert n1.commit_index == index


def test_a_removed_member_that_missed_its_removal_learns_it_when_the_leader_reaches_it():
    """Thesis §4.2.3 + pre-vote: cut off during its removal, n3's pre-votes are refused so its term
    stays put; once reachable, n1 (which keeps replicating to it until it holds the configuration
    that removed it) tells it, and n3 reports "Removed" and stays silent."""
    h = leader_of(3)
    n1, n3 = h["n1"], h["n3"]
    n1.request_membership_change(remove=["n3"])
    replicate(h, "n1", "n2")
    assert n1.configuration == C("n1 n2") and n1.commit_index == 3
    assert "n3" in n1.peers              # n1 keeps n3 until n3 holds C_new
    for _ in range(5):
        h.advance_to(n3.election_deadline)
        n3.tick()
        request, response = h.deliver("n3", "n1")
        assert request.pre_vote and not response.granted
    assert n3.term == 1 and n1.is_leader and n1.term == 1
    h.heartbeat()
    h.pump(["n1", "n3"])
    assert n3.configuration == C("n1 n2") and n3.status()["state"] == "Removed"
    assert "n3" not in n1.peers
    term = n3.term
    for _ in range(10):
        h.advance(SETTINGS.max_election_timeout)
        n3.tick()
    assert n3.term == term and h.send("n3", "n1") is None


def test_a_voter_that_missed_two_additions_still_votes_for_an_up_to_date_new_member():
    """Thesis §4.1: "servers process incoming RPC requests without consulting their current
    configurations ... a server also grants its vote to a candidate that is not part of the
    server's latest configuration (if the candidate has a sufficiently up-to-date log and a
    current term)". n3 is cut off while n4 and then n5 are added (each change commits on
    n1 n2 and the newcomers); then n1 and n2 crash. n3, n4 and n5 are a majority of the committed
    C(n1..n5), connected, yet n3 still holds only C(n1 n2 n3): it cannot win (its log is
    behind) and it refuses n4 and n5 as non-members, so no leader is ever elected."""
    h = leader_of(3, spares=2)
    n1 = h["n1"]
    for new, reachable in (("n4", ["n1", "n2", "n4"]), ("n5", ["n1", "n2", "n4", "n5"])):
        done = n1.request_membership_change(add=[new])
        for _ in range(10):
            h.heartbeat()
            h.pump(reachable)
        assert done.result(0).state is ChangeState.DONE
    assert n1.configuration == C("n1 n2 n3 n4 n5") and n1.commit_index == n1.configuration_index
    assert h["n3"].configuration == C("n1 n2 n3")

    alive = ["n3", "n4", "n5"]           # n1 and n2 crash
    for _ in range(100):                 # ten seconds: several election timeouts each
        h.heartbeat()
        h.tick_all(alive)
        h.pump(alive)
    assert [m for m in alive if h[m].is_leader], "no leader among a connected majority of C(n1..n5)"


# --- the tests catch a broken core --------------------------------------------------------------------


def count_only_new_voters(monkeypatch) -> None:
    """Break §6: while joint, decide on C_new's majority alone."""
    monkeypatch.setattr(Configuration, "_groups", lambda self: (self.voters,))


class _SeesEveryConfigurationCommitted:
    """A view of a consensus whose latest configuration always looks committed."""

    configuration_index = 0

    def __init__(self, consensus: Consensus) -> None:
        self._consensus = consensus

    def __getattr__(self, name):
        return getattr(self._consensus, name)


def append_before_commit(monkeypatch) -> None:
    """Break the one-change-at-a-time rule: the leader's driver appends the next configuration
    without waiting for the previous one to be committed."""
    step = Reconfiguration._step

    def eager_step(self):
        leader = self.leader
        self.leader = SimpleNamespace(consensus=_SeesEveryConfigurationCommitted(leader.consensus),
                                      progress=leader.progress)
        try:
            step(self)
        finally:
            self.leader = leader

    monkeypatch.setattr(Reconfiguration, "_step", eager_step)


def vote_like_for_a_member(monkeypatch) -> None:
    """Break thesis §4.2.3 as implemented: judge a non-voter's RequestVote as any other (a member
    that sees no voter in its configuration applies no membership rule)."""
    judge = Consensus._on_request_vote

    def unaware(self, request, now):
        if request.candidate_id in self.configuration.all_voters:
            return judge(self, request, now)
        saved = self.configurations
        self.configurations = ConfigurationHistory(Configuration.of([]), 0)
        try:
            return judge(self, request, now)
        finally:
            self.configurations = saved

    monkeypatch.setattr(Consensus, "_on_request_vote", unaware)


def keep_overwritten_configurations(monkeypatch) -> None:
    """Break §6 rollback: a truncated configuration entry stays in force."""
    monkeypatch.setattr(Consensus, "on_truncated", lambda self, from_index: None)


@pytest.mark.parametrize("break_core, scenario, failure", [
    (count_only_new_voters, lambda: test_while_joint_a_candidate_needs_a_majority_of_both_groups(["n4", "n5"], "n1"),
     "elected on one group's majority alone"),
    (count_only_new_voters,
     lambda: test_while_joint_an_entry_needs_a_majority_of_both_groups_to_commit(["n4", "n5"], "n1"),
     "committed on one group's majority alone"),
    (append_before_commit, test_the_leader_appends_the_next_configuration_only_once_the_previous_is_committed,
     "C_old,new appended before C(learners n4) was committed"),
    (keep_overwritten_configurations,
     lambda: test_a_follower_reverts_to_the_previous_configuration_when_a_new_leader_overwrites_one(False),
     "the overwritten configuration stayed"),
    (keep_overwritten_configurations,
     lambda: test_a_follower_reverts_to_the_previous_configuration_when_a_new_leader_overwrites_one(True),
     "the overwritten configuration stayed"),
    (vote_like_for_a_member, test_a_removed_member_that_missed_its_removal_cannot_depose_the_leader,
     "the removed member's term was adopted"),
], ids=["new-only-quorum/election", "new-only-quorum/commit", "append-before-commit", "no-rollback/log",
        "no-rollback/snapshot", "removed-member-votes"])
def test_the_scenarios_fail_on_a_broken_core(monkeypatch, break_core, scenario, failure):
    """These tests are only worth their green runs if they go red on a broken core: each mutation
    of the membership rules makes the scenario above that checks the rule fail, at the very
    assertion that states the rule (not somewhere incidental)."""
    break_core(monkeypatch)
    with pytest.raises(AssertionError, match=re.escape(failure)):
        scenario()
