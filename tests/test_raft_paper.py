"""The Raft paper's rules, one test each, on the deterministic core (after etcd's raft_paper_test.go).

Sections are those of Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm"
(§5.x, §8) and of Ongaro's thesis, "Consensus: Bridging Theory and Practice" (thesis §x.y).
"CKite bug N" names a defect of the original Scala CKite that the port must not repeat.
Every test drives cores by hand through :mod:`tests.raft_harness`: no threads, no sleeps.
"""
from __future__ import annotations

import random
from concurrent.futures import Future
from dataclasses import replace

import pytest

from ckite.consensus.candidate import Candidate
from ckite.consensus.election import candidate_log_is_up_to_date, random_election_timeout
from ckite.errors import EntryOverwrittenError, LostLeadershipError, NotLeaderError, StorageError
from ckite.log.entry import EntryKind, LogEntry
from ckite.log.memory_storage import MemoryStorage
from ckite.messages import AppendEntries, AppendEntriesResponse, RequestVote, RequestVoteResponse
from ckite.runtime.pending import PendingWrites
from ckite.sessions.table import Outcome
from tests.raft_harness import SETTINGS, Harness, log_of, terms_of

NO_PRE_VOTE = replace(SETTINGS, pre_vote=False)
NEVER = float("inf")   # a write deadline that does not expire


def commands(count: int) -> list[tuple[EntryKind, bytes]]:
    return [(EntryKind.COMMAND, b"c%d" % i) for i in range(count)]


def leader_of_three(settings=SETTINGS) -> Harness:
    """n1 leads term 1 of a three-member cluster; its first entry is committed everywhere."""
    h = Harness(3, settings)
    h.elect("n1")
    h.heartbeat()                                   # followers learn the commit index with the next heartbeat
    h.pump()
    assert [h[m].commit_index for m in h.ids] == [1, 1, 1]
    return h


def just_elected() -> Harness:
    """n1 has just won term 1 with n2's (pre-)vote: its first entry is in its own log only."""
    h = Harness(3)
    n1 = h["n1"]
    h.advance_to(n1.election_deadline)
    n1.tick()
    h.deliver("n1", "n2")                           # pre-vote
    h.deliver("n1", "n2")                           # vote
    assert n1.is_leader and n1.commit_index == 0
    return h


def vote(term: int, candidate: str, last_index: int = 0, last_term: int = 0, **flags) -> RequestVote:
    return RequestVote(term, candidate, last_index, last_term, **flags)


# --- §5.2 leader election -----------------------------------------------------------------------------


def test_follower_without_leader_campaigns_by_pre_vote_without_changing_term():
    """§5.2 + thesis §9.6: a follower that hears nothing for its election timeout campaigns; with
    pre-vote it first asks whether it *would* win, and its term moves only once a quorum says yes."""
    h = Harness(3)
    n1 = h["n1"]
    h.advance_to(n1.election_deadline - 0.001)
    n1.tick()
    assert n1.status()["state"] == "Follower"

    h.advance_to(n1.election_deadline)
    n1.tick()
    assert isinstance(n1.role, Candidate) and n1.role.pre_vote
    assert (n1.term, n1.voted_for, h.storages["n1"].load().term) == (0, None, 0)
    for _ in range(5):          # unanswered pre-vote rounds never raise the term
        h.advance_to(n1.election_deadline)
        n1.tick()
    assert (n1.term, h.storages["n1"].load().term) == (0, 0)

    request, response = h.deliver("n1", "n2")
    assert request == vote(1, "n1", pre_vote=True)
    assert response == RequestVoteResponse(1, True)
    assert (h["n2"].term, h["n2"].voted_for) == (0, None)     # a pre-vote changes nothing at the voter
    assert isinstance(n1.role, Candidate) and not n1.role.pre_vote
    assert (n1.term, n1.voted_for) == (1, "n1")
    assert h.send("n1", "n3")[0] == vote(1, "n1")


def test_follower_without_leader_and_no_pre_vote_increments_term_and_votes_for_itself():
    """§5.2: "To begin an election, a follower increments its current term and transitions to
    candidate state. It then votes for itself and issues RequestVote RPCs"; the new term and the
    self-vote are durable before any request leaves."""
    h = Harness(3, NO_PRE_VOTE)
    n1 = h["n1"]
    h.advance_to(n1.election_deadline)
    n1.tick()
    assert isinstance(n1.role, Candidate) and not n1.role.pre_vote
    assert (n1.term, n1.voted_for) == (1, "n1")
    stored = h.storages["n1"].load()
    assert (stored.term, stored.voted_for) == (1, "n1")
    assert [h.send("n1", peer)[0] for peer in ("n2", "n3")] == [vote(1, "n1"), vote(1, "n1")]
    assert n1.handle_request(vote(1, "n2")) == RequestVoteResponse(1, False)   # its vote is taken


def test_election_timeouts_are_randomized_within_min_max():
    """§5.2: "election timeouts are chosen randomly from a fixed interval" [min, max), so that
    split votes are rare; each member draws its own."""
    class Extreme(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__(0)
            self.value = value

        def random(self) -> float:
            return self.value

    assert random_election_timeout(Extreme(0.0), 1.0, 2.0) == 1.0
    assert random_election_timeout(Extreme(0.999999), 1.0, 2.0) < 2.0
    rng = random.Random(7)
    draws = [random_election_timeout(rng, 1.0, 2.0) for _ in range(1000)]
    assert all(1.0 <= d < 2.0 for d in draws)
    assert min(draws) < 1.05 and max(draws) > 1.95     # the whole interval is used

    h = Harness(5)
    timeouts = [h[m].election_deadline - h.now for m in h.ids]
    assert all(SETTINGS.min_election_timeout <= t < SETTINGS.max_election_timeout for t in timeouts)
    assert len(set(timeouts)) == 5
    h.advance(0.5)
    with h["n1"]._step():                            # a step, as an AppendEntries would be
        h["n1"].heard_from_leader("n2", h.now)       # each wait for a leader draws anew
    assert h["n1"].election_deadline - h.now not in timeouts


def test_each_member_grants_at_most_one_vote_per_term_and_stores_it_before_replying():
    """§5.2: "Each server will vote for at most one candidate in a given term, on a first-come-first-
    served basis"; Figure 2: currentTerm and votedFor are persistent state, "updated on stable
    storage before responding to RPCs"."""
    h = Harness(3, NO_PRE_VOTE)
    n1, storage = h["n1"], h.storages["n1"]
    assert n1.handle_request(vote(1, "n2")) == RequestVoteResponse(1, True)
    assert (storage.load().term, storage.load().voted_for) == (1, "n2")
    assert n1.handle_request(vote(1, "n3", 5, 1)) == RequestVoteResponse(1, False)   # even with a better log
    assert n1.handle_request(vote(1, "n2")) == RequestVoteResponse(1, True)          # a retransmission
    assert n1.handle_request(vote(2, "n3")) == RequestVoteResponse(2, True)          # a new term, a new vote
    assert (storage.load().term, storage.load().voted_for) == (2, "n3")


def test_vote_is_not_granted_when_it_cannot_be_stored():
    """Figure 2 ("updated on stable storage before responding"): a vote whose write failed is never
    granted — the RPC fails instead."""
    class FailingStorage(MemoryStorage):
        def save_term_and_vote(self, term, voted_for):
            raise StorageError("disk full")

    h = Harness(3, NO_PRE_VOTE)
    h.storages["n1"] = FailingStorage()
    n1 = h.restart("n1")
    with pytest.raises(StorageError):
        n1.handle_request(vote(1, "n2"))


@pytest.mark.parametrize("last_term, last_index, granted", [
    pytest.param(3, 2, True, id="higher-last-term-shorter-log-wins (CKite bug 8)"),
    pytest.param(1, 9, False, id="lower-last-term-longer-log-loses"),
    pytest.param(2, 5, True, id="same-last-term-same-length-wins"),
    pytest.param(2, 6, True, id="same-last-term-longer-wins"),
    pytest.param(2, 4, False, id="same-last-term-shorter-loses"),
])
@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
def test_vote_goes_only_to_a_candidate_whose_log_is_at_least_as_up_to_date(last_term, last_index, granted,
                                                                           pre_vote):
    """§5.4.1: "If the logs have last entries with different terms, then the log with the later term
    is more up-to-date. If the logs end with the same term, then whichever log is longer is more
    up-to-date." CKite also required a candidate's last index >= the voter's ("CKite bug 8")."""
    assert candidate_log_is_up_to_date(last_term, last_index, 2, 5) is granted
    h = Harness(3, logs={"n1": [1, 1, 1, 1, 2]})
    n1 = h["n1"]
    h.advance(SETTINGS.min_election_timeout)        # past the vote refusal of a member restarted with a term
    response = n1.handle_request(vote(4, "n2", last_index, last_term, pre_vote=pre_vote))
    assert response.granted is granted
    assert n1.voted_for == ("n2" if granted and not pre_vote else None)


# --- §5.3 log replication -----------------------------------------------------------------------------


@pytest.mark.parametrize("prev_index, prev_term, conflict_term, conflict_index", [
    pytest.param(4, 3, 2, 3, id="prev-entry-of-another-term"),
    pytest.param(7, 3, 0, 6, id="prev-entry-missing"),
])
def test_append_entries_with_mismatched_prev_entry_is_rejected_with_conflict_hints(
        prev_index, prev_term, conflict_term, conflict_index):
    """§5.3: "If a follower's log does not contain an entry at prevLogIndex whose term matches
    prevLogTerm", it rejects; with the optimisation of §5.3 it names the conflicting term and the
    first index it holds for that term (or its log length + 1), and keeps its log."""
    h = Harness(3, logs={"n2": [1, 1, 2, 2, 2]})
    response = h["n2"].handle_request(AppendEntries(3, "n1", prev_index, prev_term, log_of([3]), 0))
    assert response == AppendEntriesResponse(3, False, conflict_index=conflict_index, conflict_term=conflict_term)
    assert terms_of(h["n2"]) == [1, 1, 2, 2, 2]


@pytest.mark.parametrize("leader_log, follower_log", [
    pytest.param([1] * 3 + [2] * 10 + [4] * 2, [1] * 3 + [2] * 50 + [3] * 50, id="leader-shares-the-old-term"),
    pytest.param([1] * 3 + [2] * 2 + [4], [1] * 3 + [3] * 100, id="long-run-of-one-unknown-term"),
    pytest.param([1] * 3 + [2] * 100 + [4], [1] * 3, id="follower-far-behind"),
])
def test_leader_skips_a_whole_conflicting_term_per_round_trip(leader_log, follower_log):
    """§5.3: "the leader can decrement nextIndex to bypass all of the conflicting entries in that
    term; one AppendEntries RPC will be required for each term with conflicting entries, rather
    than one RPC per entry." Here a follower diverging by 100 entries catches up in 2 round trips."""
    h = Harness(3, logs={"n1": leader_log, "n2": leader_log, "n3": follower_log})
    h.elect("n1", ["n1", "n2"])
    round_trips = 0
    while h.deliver("n1", "n3") is not None:
        round_trips += 1
    assert round_trips == 2
    assert terms_of(h["n3"]) == terms_of(h["n1"]) == leader_log + [h["n1"].term]
    assert h.storages["n3"].load().entries == h.storages["n1"].load().entries


def test_delayed_duplicate_append_entries_is_acknowledged_and_truncates_nothing():
    """§5.3 (Figure 2, AppendEntries step 3: only a *conflicting* entry is deleted): an older,
    shorter AppendEntries arriving after a newer one is a success that keeps the newer entries.
    CKite never acknowledged such a duplicate ("CKite bug 6"), so its leader retried forever."""
    h = Harness(3)
    follower = h["n2"]
    entries = log_of([1, 1, 1])
    newer = AppendEntries(1, "n1", 0, 0, entries, 0)
    older = AppendEntries(1, "n1", 0, 0, entries[:1], 0)
    for request, match_index in [(newer, 3), (older, 1), (newer, 3)]:
        assert follower.handle_request(request) == AppendEntriesResponse(1, True, match_index=match_index)
        assert follower.log.slice(1, 10) == h.storages["n2"].load().entries == entries


def test_leader_ignores_a_late_acknowledgement_of_an_older_append():
    """§5.3: matchIndex "increases monotonically": a reply to an older request, arriving after a
    newer one was acknowledged, does not move the leader's view of the follower backwards."""
    h = leader_of_three()
    n1 = h["n1"]
    n1.propose(commands(2))
    first = h.send("n1", "n2")
    h.answer("n1", "n2", *first)
    n1.propose(commands(1))
    h.deliver("n1", "n2")
    h.answer("n1", "n2", *first)                   # the network duplicated the first request
    assert n1.status()["stateInfo"]["followers"]["n2"]["matchIndex"] == 4
    assert n1.commit_index == 4


def test_conflicting_uncommitted_suffix_is_truncated_and_replaced():
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms), delete
    the existing entry and all that follow it"; durably, so the old entries never come back."""
    h = Harness(3, logs={"n2": [1, 1, 2, 2]})
    response = h["n2"].handle_request(AppendEntries(3, "n1", 2, 1, log_of([3], first_index=3), 0))
    assert response == AppendEntriesResponse(3, True, match_index=3)
    assert terms_of(h["n2"]) == [e.term for e in h.storages["n2"].load().entries] == [1, 1, 3]


def test_deposed_leaders_uncommitted_entries_are_overwritten_by_the_new_leader():
    """§5.3 (Figure 7): a leader cut off from the cluster appends entries it can never commit;
    the next leader's log replaces them once the old leader is reconnected."""
    h = leader_of_three()
    h["n1"].propose(commands(3))                       # n1 is partitioned away: only it holds these
    n2 = h.elect("n2", ["n2", "n3"])
    n2.propose(commands(1))
    h.pump(["n2", "n3"])
    h.pump()
    h.heartbeat()
    h.pump()
    assert not h["n1"].is_leader
    assert terms_of(h["n1"]) == terms_of(n2) == [1, 2, 2]
    assert h.storages["n1"].load().entries == h.storages["n2"].load().entries
    assert [h[m].commit_index for m in h.ids] == [3, 3, 3]


# --- §5.4.2 committing entries from previous terms (Figure 8) ---------------------------------------------

FIGURE8 = replace(SETTINGS, pre_vote=False, check_quorum=False, max_entries_per_append=1)
S1, S2, S3, S4, S5 = "n1", "n2", "n3", "n4", "n5"


def figure8_c() -> Harness:
    """Figure 8 (c): S1 leads term 4 and has replicated (index 2, term 2) to S2 and S3 — a
    majority — while its own entry (index 3, term 4) is on S1 alone. S5 holds (2, term 3)."""
    h = Harness(5, FIGURE8, logs={S1: [1, 2], S2: [1], S3: [1], S4: [1], S5: [1, 3]},
                terms={S1: 3, S2: 3, S3: 3, S4: 3, S5: 3}, votes={S3: S5, S4: S5, S5: S5})
    s1 = h[S1]
    h.advance_to(s1.election_deadline)
    s1.tick()
    h.deliver(S1, S2)
    h.deliver(S1, S3)
    assert s1.is_leader and s1.term == 4 and terms_of(s1) == [1, 2, 4]
    for follower in (S2, S3):
        h.deliver(S1, follower)                     # rejected: the follower lacks index 2
        request, response = h.deliver(S1, follower)
        assert [(e.index, e.term) for e in request.entries] == [(2, 2)] and response.success
    assert [terms_of(h[m]) for m in h.ids] == [[1, 2, 4], [1, 2], [1, 2], [1], [1, 3]]
    return h


def test_leader_never_commits_a_previous_term_entry_by_counting_replicas():
    """§5.4.2 (Figure 8 c-d): "Raft never commits log entries from previous terms by counting
    replicas." (2, term 2) is on three of five members, yet S1 must not commit it: when S1 crashes,
    S5 is elected with the votes of S2, S3 and S4 and overwrites it with (2, term 3)."""
    h = figure8_c()
    assert [h[m].commit_index for m in h.ids] == [0] * 5
    others = [S2, S3, S4, S5]                        # S1 crashed
    s5 = h.elect(S5, others)
    h.pump(others)
    assert [terms_of(h[m]) for m in others] == [[1, 3, s5.term]] * 4
    assert s5.commit_index == 3


def test_previous_term_entry_commits_once_an_entry_of_the_leaders_term_is_on_a_majority():
    """§5.4.2 (Figure 8 e): "once an entry from the current term has been committed in this way,
    then all prior entries are committed indirectly". With (3, term 4) on a majority, S1 commits
    1..3, and S5 can no longer be elected: S2 and S3 refuse it (§5.4.1)."""
    h = figure8_c()
    h.deliver(S1, S2)
    assert h[S1].commit_index == 0
    h.deliver(S1, S3)
    assert h[S1].commit_index == 3
    others = [S2, S3, S4, S5]                        # now S1 crashes
    assert not any(h.campaign(S5, others) for _ in range(5))
    assert [terms_of(h[m]) for m in (S2, S3)] == [[1, 2, 4]] * 2


# --- batching and the new leader's first entry ---------------------------------------------------------


@pytest.mark.parametrize("sizes, batches", [
    pytest.param([10] * 12, [5, 5, 2], id="bounded-by-max-entries"),
    pytest.param([30] * 5, [3, 2], id="bounded-by-max-bytes"),
    pytest.param([500, 10, 10], [1, 2], id="oversized-entry-travels-alone"),
])
def test_one_append_entries_carries_a_batch_bounded_by_count_and_bytes(sizes, batches):
    """§5.3 ("may send more than one for efficiency"): one AppendEntries carries consecutive
    entries, at most max_entries_per_append of them and max_bytes_per_append of data — but always
    at least one, even an entry larger than the byte limit."""
    h = leader_of_three(replace(SETTINGS, max_entries_per_append=5, max_bytes_per_append=100))
    n1 = h["n1"]
    first, _ = n1.propose([(EntryKind.COMMAND, b"x" * size) for size in sizes])
    sent = []
    while (exchange := h.deliver("n1", "n2")) is not None:
        sent.append([entry.index for entry in exchange[0].entries])
    assert [len(batch) for batch in sent] == batches
    assert sum(sent, []) == list(range(first, first + len(sizes)))


def test_the_leader_pipelines_only_full_batches_within_its_window():
    """Up to max_inflight_appends requests go out before the first reply, but a request other
    than the first goes only when it is full: a partial batch waits for a reply and then carries
    whatever was appended meanwhile (fewer, larger batches)."""
    h = leader_of_three(replace(SETTINGS, max_entries_per_append=5, max_inflight_appends=3))
    n1 = h["n1"]
    first, _ = n1.propose([(EntryKind.COMMAND, b"x")] * 17)
    taken = []
    while (request := h.send("n1", "n2")) is not None:
        taken.append(request)
    assert [len(request.entries) for request, _ in taken] == [5, 5, 5]        # the window is full
    h.answer("n1", "n2", *taken[0])
    assert h.send("n1", "n2") is None            # 2 entries left: not a full batch, 2 still in flight
    n1.propose([(EntryKind.COMMAND, b"y")] * 3)
    fourth = h.send("n1", "n2")                  # 5 left now: a full batch goes at once
    assert fourth is not None and len(fourth[0].entries) == 5
    for request in taken[1:] + [fourth]:
        h.answer("n1", "n2", *request)
    assert h["n2"].log.last_index == first + 19


def test_new_leader_appends_an_entry_of_its_own_term_at_once():
    """§5.4.2 / §8: "each leader commit a blank no-op entry into the log at the start of its term"
    (the very first leader writes the cluster configuration instead), before sending anything."""
    h = just_elected()
    n1 = h["n1"]
    assert [(e.index, e.term, e.kind) for e in n1.log.slice(1, 10)] == [(1, 1, EntryKind.CONFIGURATION)]
    h.pump()
    n2 = h.elect("n2", ["n2", "n3"])
    assert [(e.index, e.term, e.kind) for e in n2.log.slice(2, 10)] == [(2, 2, EntryKind.NOOP)]


# --- check-quorum, leader lease and pre-vote (thesis §6.2, §4.2.3, §9.6) --------------------------------


@pytest.mark.parametrize("reachable, stays_leader", [
    pytest.param(["n1", "n2"], True, id="hears-from-a-majority"),
    pytest.param([], False, id="hears-from-no-one"),
])
def test_check_quorum_leader_steps_down_without_a_majority(reachable, stays_leader):
    """Thesis §6.2: "a leader steps down if an election timeout elapses without a successful round
    of heartbeats to a majority of its cluster". A leader that hears from a majority stays."""
    h = leader_of_three()
    h.run_for(3 * SETTINGS.max_election_timeout, reachable)
    assert h["n1"].is_leader is stays_leader
    assert h["n1"].term == 1


def test_partitioned_member_rejoining_does_not_raise_the_term_or_depose_the_leader():
    """Thesis §9.6 (pre-vote) and §4.2.3: a member cut off for many election timeouts does not
    inflate its term, so when it comes back the healthy cluster keeps its leader and term."""
    h = leader_of_three()
    h.run_for(10 * SETTINGS.max_election_timeout, ["n1", "n2"])
    assert h["n3"].term == 1
    h.run_for(SETTINGS.max_election_timeout)
    assert h["n1"].is_leader
    assert [(h[m].term, h[m].leader_id) for m in h.ids] == [(1, "n1")] * 3


@pytest.mark.parametrize("elapsed, transfer, granted", [
    pytest.param(0.5, False, False, id="within-lease-refused"),
    pytest.param(0.5, True, True, id="leadership-transfer-overrides-lease"),
    pytest.param(1.01, False, True, id="after-min-election-timeout-granted"),
])
def test_follower_that_heard_from_its_leader_ignores_a_disruptive_candidate(elapsed, transfer, granted):
    """Thesis §4.2.3: "if a server receives a RequestVote request within the minimum election
    timeout of hearing from a current leader, it does not update its term or grant its vote"
    (a leadership transfer, thesis §3.10, is exempt)."""
    h = leader_of_three()
    h.advance(elapsed * SETTINGS.min_election_timeout)
    n2 = h["n2"]
    response = n2.handle_request(vote(7, "n3", 9, 1, transfer=transfer))
    assert response == (RequestVoteResponse(7, True) if granted else RequestVoteResponse(1, False))
    assert (n2.term, h.storages["n2"].load().term) == ((7, 7) if granted else (1, 1))


# --- ReadIndex (thesis §6.4) ---------------------------------------------------------------------------


def test_read_index_waits_for_a_heartbeat_round_started_after_the_read():
    """Thesis §6.4 step 3: the leader "sends a new round of heartbeats and waits for their
    acknowledgments from a majority"; an acknowledgement of a heartbeat sent *before* the read
    cannot prove the leader was still leading when the read arrived."""
    h = leader_of_three()
    n1 = h["n1"]
    h.heartbeat()
    earlier = h.send("n1", "n2")
    read = n1.request_read()
    h.answer("n1", "n2", *earlier)
    assert not read.done()
    h.deliver("n1", "n2")
    assert read.result(timeout=0) == n1.commit_index == 1


def test_read_index_waits_for_the_leader_to_commit_an_entry_of_its_term():
    """Thesis §6.4 step 1: "If the leader has not yet marked an entry from its current term
    committed, it waits until it has done so" — only then is its commit index the cluster's."""
    h = just_elected()
    n1 = h["n1"]
    read = n1.request_read()
    h.deliver("n1", "n2")                           # commits the leader's first entry...
    assert n1.commit_index == 1 and not read.done()
    h.deliver("n1", "n2")                           # ...and a later round confirms leadership
    assert read.result(timeout=0) == 1


def test_reads_arriving_before_the_next_heartbeat_share_its_round():
    """Thesis §6.4.1 (batching): reads that arrive before the next heartbeat leaves all wait on that
    one round, so one acknowledgement from a majority releases them all; a read arriving while a
    round is in flight waits for the next one."""
    h = leader_of_three()
    first = h["n1"].request_read()
    in_flight = h.send("n1", "n2")
    later = [h["n1"].request_read() for _ in range(3)]
    h.answer("n1", "n2", *in_flight)
    assert first.result(timeout=0) == 1 and not any(read.done() for read in later)
    h.deliver("n1", "n2")
    assert [read.result(timeout=0) for read in later] == [1, 1, 1]


@pytest.mark.parametrize("depose", [
    pytest.param(lambda h: h.run_for(3 * SETTINGS.max_election_timeout, []), id="check-quorum"),
    pytest.param(lambda h: h["n1"].handle_request(AppendEntries(2, "n2", 0, 0, [], 0)), id="newer-term"),
])
def test_leader_that_steps_down_fails_its_pending_reads(depose):
    """Thesis §6.4: a read is served only by a leader that confirmed its leadership; one that loses
    it first fails the read (LostLeadershipError) so that the client retries elsewhere."""
    h = leader_of_three()
    read = h["n1"].request_read()
    depose(h)
    assert not h["n1"].is_leader
    assert isinstance(read.exception(timeout=0), LostLeadershipError)


def test_read_on_a_follower_raises_not_leader_with_the_leaders_id():
    """Thesis §6.4: only the leader serves ReadIndex; a follower names the leader to retry at."""
    h = leader_of_three()
    with pytest.raises(NotLeaderError) as raised:
        h["n2"].request_read()
    assert raised.value.leader == "n1"


# --- client results keyed by (index, term) ---------------------------------------------------------------


def test_write_result_completes_only_for_its_own_term_at_its_index():
    """§8 / Figure 7: a deposed leader's entry at index i may be replaced by another leader's entry
    at i. CKite completed the first client's future with the other entry's result ("CKite bug 4");
    a waiter on (5, term 2) must fail when (5, term 3) is applied, and complete on (5, term 2)."""
    pending = PendingWrites()
    replaced, kept = Future(), Future()
    pending.register(5, 2, [(replaced, False)], NEVER)
    pending.complete([LogEntry(5, 3, b"other")], [Outcome("other's result")])
    assert isinstance(replaced.exception(timeout=0), EntryOverwrittenError)
    pending.register(5, 2, [(kept, False)], NEVER)
    pending.complete([LogEntry(5, 2, b"mine")], [Outcome("mine")])
    assert kept.result(timeout=0) == "mine"
    assert len(pending) == 0


def test_a_write_whose_entry_this_leader_lost_waits_for_what_is_applied_at_its_index():
    """§5.4.2 / Figure 8: an entry truncated from one member's log may still be committed by a
    later leader that holds it, so losing it proves nothing. The core does not fail its waiter at
    truncation; the waiter learns its fate when its index is applied (its own entry: the result;
    another: certainly not applied) or when its timeout passes (outcome unknown)."""
    h = Harness(3)
    n1 = h.elect("n1")
    h.heartbeat()
    h.pump()
    n1.propose([(EntryKind.COMMAND, b"lost")])            # appended on n1 only: n2 and n3 never get it
    index = n1.log.last_index
    h.advance_to(max(h["n2"].election_deadline, h["n3"].election_deadline))
    h.elect("n2", ["n2", "n3"])
    h.run_for(0.5)                                         # n2's log replaces n1's entry at `index`
    assert n1.log.entry(index).data != b"lost" and n1.commit_index >= index
    pending = PendingWrites()                              # as n1's runtime registered it
    future = Future()
    pending.register(index, 1, [(future, False)], NEVER)
    assert not future.done()                               # the truncation failed nothing
    pending.complete([n1.log.entry(index)], [Outcome()])
    assert isinstance(future.exception(timeout=0), EntryOverwrittenError)


# --- persistence (Figure 2: persistent state on all servers) ----------------------------------------------


def test_member_rebuilt_from_storage_recovers_term_vote_and_log_and_does_not_vote_twice():
    """Figure 2: currentTerm, votedFor and log[] are persistent; a member that crashes after voting
    must not vote for another candidate in the same term when it comes back (§5.2)."""
    h = leader_of_three(NO_PRE_VOTE)
    h["n1"].propose(commands(3))
    h.pump()
    h.advance(SETTINGS.max_election_timeout)       # past n3's leader lease
    assert h["n3"].handle_request(vote(2, "n2", 4, 1)) == RequestVoteResponse(2, True)
    before = (h["n3"].term, h["n3"].voted_for, h["n3"].log.slice(1, 10))
    n3 = h.restart("n3")
    assert (n3.term, n3.voted_for, n3.log.slice(1, 10)) == before == (2, "n2", h["n1"].log.slice(1, 10))
    assert n3.handle_request(vote(2, "n1", 4, 1)) == RequestVoteResponse(2, False)
    assert n3.handle_request(vote(2, "n2", 4, 1)) == RequestVoteResponse(2, True)


def test_a_batch_capped_by_bytes_is_full_and_is_pipelined():
    """Large entries fill a batch by bytes long before max_entries_per_append entries wait."""
    h = leader_of_three(replace(SETTINGS, max_entries_per_append=5, max_bytes_per_append=100,
                                max_inflight_appends=3))
    n1 = h["n1"]
    n1.propose([(EntryKind.COMMAND, b"x" * 60)] * 3)
    first = h.send("n1", "n2")
    second = h.send("n1", "n2")           # one 60-byte entry each: both capped by bytes, so both full
    third = h.send("n1", "n2")            # the last entry alone takes everything waiting: it waits
    assert [len(taken[0].entries) for taken in (first, second)] == [1, 1] and third is None


def test_no_heartbeat_deadline_while_a_request_is_in_flight():
    """The replicator waits for the reply (bounded by the RPC timeout) rather than for a heartbeat
    it could not send anyway: a deadline that passed while a request is in flight would make it
    wake again and again until the reply came."""
    h = leader_of_three()
    n1 = h["n1"]
    h.heartbeat()
    taken = h.send("n1", "n2")
    assert taken is not None and n1.peer_deadline("n2") is None
    h.advance(SETTINGS.heartbeat_interval * 3)
    assert n1.next_request("n2") is None and n1.peer_deadline("n2") is None
    h.answer("n1", "n2", *taken)
    assert n1.peer_deadline("n2") is not None
