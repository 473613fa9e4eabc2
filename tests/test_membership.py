"""Membership changes and leadership transfer on real members (threads, in-process network).

Joint consensus itself (quorums of both configurations, rollback on truncation) is checked
in the simulation (tests/test_simulation.py) and the paper tests; here: the API, learners,
joining, removal of a follower and of the leader, failure and waiting, transfer, restart.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ckite import CKite, CKiteBuilder
from ckite.consensus.reconfiguration import ChangeState
from ckite.errors import LeaderTimeoutError, MembershipChangeError
from ckite.messages import JoinMember
from ckite.rpc.local import LocalNetwork
from ckite.rpc.transport import CallPipeline
from ckite.runtime.joiner import RETRY_PAUSE
from tests.kv_example import Get, KVStore, Put
from tests.waiting import wait_for

BINDINGS = [f"localhost:{9091 + i}" for i in range(5)]
NEW = BINDINGS[3]


class Members:
    """Members built on one in-process network; every one is stopped at the end."""

    def __init__(self) -> None:
        self.network = LocalNetwork()
        self.members: dict[str, CKite] = {}
        self.transports: dict[str, _RecordingTransport] = {}

    def start(self, binding: str, members: list[str] | None = None, join: list[str] | None = None,
              data_dir: Path | None = None, threshold: int = 10_000) -> CKite:
        builder = (CKiteBuilder().with_local_binding(binding)
                   .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
                   .with_transport(self._transport(binding)).with_state_machine(KVStore())
                   .with_compaction_threshold(threshold).with_membership_timeout(5000).without_admin())
        builder.with_data_dir(data_dir) if data_dir else builder.with_in_memory_storage()
        builder.with_join(join) if join else builder.with_members_bindings(members or [])
        member = builder.build()
        member.start()
        self.members[binding] = member
        return member

    def _transport(self, binding: str) -> _RecordingTransport:
        self.transports[binding] = _RecordingTransport(self.network.transport(binding))
        return self.transports[binding]

    def start_cluster(self, bindings: list[str], **options) -> list[CKite]:
        return [self.start(b, [o for o in bindings if o != b], **options) for b in bindings]

    def leader(self, among: list[str] | None = None) -> CKite:
        def find() -> CKite | None:
            leaders = [m for b, m in self.members.items() if (among is None or b in among)
                       and m.status()["state"] == "Leader"]
            return leaders[0] if len(leaders) == 1 else None
        return wait_for(find, 10, "a single leader")

    def stop(self, binding: str) -> None:
        self.members.pop(binding).stop()

    def stop_all(self) -> None:
        for binding in list(self.members):
            self.stop(binding)


@pytest.fixture
def members():
    made = Members()
    yield made
    made.stop_all()


def test_a_joining_member_is_added_as_a_learner_then_a_voter(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    leader.write(Put("before", "join"))
    joiner = members.start(NEW, join=[BINDINGS[1]])
    assert joiner.status()["state"] in ("Joiner", "Follower")
    wait_for(lambda: NEW in leader.status()["configuration"]["voters"]
             and not leader.status()["configuration"]["joint"], 10, "the join")
    assert leader.status()["configuration"]["voters"] == sorted(BINDINGS[:4])
    wait_for(lambda: joiner.read_local(Get("before")) == "join", 10, "the new member to catch up")
    assert joiner.status()["term"] == leader.status()["term"]   # it never stood for election
    leader.write(Put("after", "join"))
    wait_for(lambda: joiner.read_local(Get("after")) == "join", 10, "replication to the new member")


def test_add_member_as_in_ckites_walk_through_waits_for_the_new_member_to_start(members):
    """/changecluster first, then start member four with the others as its members."""
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    with ThreadPoolExecutor(1) as background:
        added = background.submit(members.members[BINDINGS[0]].add_member, NEW)
        wait_for(lambda: NEW in leader.status()["configuration"]["learners"], 10, "the learner step")
        members.start(NEW, BINDINGS[:3])
        assert added.result(timeout=10) is True
    assert leader.members == frozenset(BINDINGS[:4])


def test_a_member_added_before_it_starts_waits_as_a_learner_past_the_call_and_its_addition_can_be_cancelled(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    with pytest.raises(MembershipChangeError, match="not finished \\(catching-up\\): it goes on"):
        leader.add_member(NEW, timeout=1)
    assert leader.write(Put("still", "writable")) == "writable"   # a learner counts toward nothing
    follower = next(m for b, m in members.members.items() if m is not leader)
    wait_for(lambda: follower.membership_change is not None, 10, "the follower to see the change")
    assert follower.membership_change.to_json() == {"members": sorted(BINDINGS[:4]), "added": [NEW], "removed": [],
                                                    "state": "catching-up", "cancelled": [], "learners": []}
    assert leader.membership_change.state is ChangeState.CATCHING_UP
    change = follower.change_membership(remove=[NEW], wait=5)   # cancels (forwarded to the leader)
    assert change.state is ChangeState.DONE and change.cancelled == (NEW,)
    assert leader.members == frozenset(BINDINGS[:3]) and leader.membership_change is None


def test_a_member_added_before_it_starts_becomes_a_voter_once_started_however_late(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    assert leader.change_membership(add=[NEW], wait=0).state is ChangeState.CATCHING_UP
    assert leader.change_membership(add=[NEW], wait=0).state is ChangeState.CATCHING_UP   # asking again joins it
    members.start(NEW, BINDINGS[:3])
    assert leader.add_member(NEW, timeout=10) is True
    assert leader.members == frozenset(BINDINGS[:4]) and leader.membership_change is None


def test_a_removed_follower_stops_taking_part_and_says_so(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    removed_id = next(b for b in BINDINGS[:3] if b != leader.id)
    removed = members.members[removed_id]
    replicator = f"ckite-{leader.id.rsplit(':', 1)[1]}-replicate-{removed_id.rsplit(':', 1)[1]}"
    assert any(thread.name == replicator for thread in threading.enumerate())
    assert removed.remove_member(removed_id) is True   # asked on the member itself: forwarded
    assert leader.members == frozenset(BINDINGS[:3]) - {removed_id}
    # the leader's thread for the removed peer ends and closes its pipeline without waiting for stop()
    wait_for(lambda: not any(thread.name == replicator for thread in threading.enumerate()), 10,
             "the removed peer's replicator to end")
    assert members.transports[leader.id].closed_pipelines == [removed_id]
    wait_for(lambda: removed.status()["state"] == "Removed", 10, "the removed member to notice")
    term = removed.status()["term"]
    members.network.isolate(removed_id)   # cut off, a voter would time out and campaign
    threading.Event().wait(1.5)           # several election timeouts: nothing may happen (not a race)
    assert removed.status()["term"] == term and removed.status()["state"] == "Removed"
    assert leader.write(Put("two", "voters")) == "voters"


def test_a_leader_that_removes_itself_hands_over_and_steps_down(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    others = [b for b in BINDINGS[:3] if b != leader.id]
    assert leader.remove_member(leader.id) is True
    new_leader = members.leader(among=others)
    assert new_leader.members == frozenset(others)
    wait_for(lambda: leader.status()["state"] == "Removed", 10, "the old leader to step down")
    assert new_leader.write(Put("new", "leader")) == "leader"


def test_a_second_change_waits_for_the_first(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    members.start(BINDINGS[3], BINDINGS[:3])
    members.start(BINDINGS[4], BINDINGS[:3])
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda b: leader.add_member(b, timeout=15), BINDINGS[3:5]))
    assert results == [True, True]
    assert leader.members == frozenset(BINDINGS)


def test_grow_three_to_five_and_back_while_writing(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    written = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key = f"k{i}"
            members.members[BINDINGS[0]].write(Put(key, "v"), timeout=10)
            written.append(key)
            i += 1
    def writes_go_on(after: str) -> None:
        count = len(written)
        wait_for(lambda: writing.done() or len(written) >= count + 3, 10, f"writes to go on after {after}")
    with ThreadPoolExecutor(1) as background:
        writing = background.submit(writer)
        for binding in BINDINGS[3:]:
            members.start(binding, BINDINGS[:3])
            leader.add_member(binding)
            writes_go_on(f"adding {binding}")
        for binding in BINDINGS[3:]:
            members.members[BINDINGS[0]].remove_member(binding)
            writes_go_on(f"removing {binding}")
        stop.set()
        writing.result(timeout=20)   # no write failed meanwhile
    final = members.leader(among=BINDINGS[:3])
    assert final.members == frozenset(BINDINGS[:3])
    assert all(final.read(Get(key)) == "v" for key in written)   # no acknowledged write lost


def test_a_member_added_after_compaction_catches_up_through_a_snapshot(members):
    members.start_cluster(BINDINGS[:3], threshold=20)
    leader = members.leader()
    for future in [leader.write_async(Put(f"key{i}", f"value{i}")) for i in range(200)]:
        future.result(timeout=10)
    wait_for(lambda: leader.status()["log"]["firstIndex"] > 20, 10, "the leader to compact")
    members.start(NEW, join=[leader.id], threshold=20)
    wait_for(lambda: NEW in leader.status()["configuration"]["voters"], 10, "the new member to become a voter")
    new = members.members[NEW]
    wait_for(lambda: new.read_local(Get("key199")) == "value199", 10, "the new member's state")
    assert new.status()["metrics"]["snapshotsInstalled"] >= 1


def test_the_configuration_survives_a_restart(members, tmp_path):
    for binding in BINDINGS[:3]:
        members.start(binding, [b for b in BINDINGS[:3] if b != binding], data_dir=tmp_path / binding)
    leader = members.leader()
    members.start(NEW, join=[leader.id], data_dir=tmp_path / NEW)
    wait_for(lambda: NEW in leader.status()["configuration"]["voters"], 10, "the join")
    for binding in list(members.members):
        members.stop(binding)
    # Restarted with the builder's original three-member list: the log's configuration wins.
    restarted = [members.start(b, [o for o in BINDINGS[:3] if o != b], data_dir=tmp_path / b)
                 for b in BINDINGS[:3]]
    assert all(member.members == frozenset(BINDINGS[:4]) for member in restarted)


def test_leadership_transfer_moves_the_leader_and_writes_wait_through_it(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    target = next(b for b in BINDINGS[:3] if b != leader.id)
    with ThreadPoolExecutor(1) as background:
        writing = background.submit(lambda: [leader.write(Put(f"w{i}", "v"), timeout=10) for i in range(50)])
        assert members.members[target].transfer_leadership(target) is True   # asked on the target: forwarded
        writing.result(timeout=20)
    assert members.leader().id == target


def test_transfer_to_a_member_that_is_not_a_voter_is_refused(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    with pytest.raises(MembershipChangeError, match="not a voter"):
        leader.transfer_leadership("localhost:9999")


def test_transfer_to_an_unreachable_member_fails_and_the_leader_serves_again(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    target = next(b for b in BINDINGS[:3] if b != leader.id)
    members.network.isolate(target)
    with pytest.raises(LeaderTimeoutError):
        leader.transfer_leadership(target, timeout=3)
    assert leader.write(Put("served", "again")) == "again"


class _RecordingTransport:
    """A member's transport that counts the JoinMember requests it sends and records which
    peers' pipelines were closed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.joins = 0
        self.closed_pipelines: list[str] = []

    def serve(self, binding, handler) -> None:
        self.inner.serve(binding, handler)

    def call(self, address, request, timeout):
        if isinstance(request, JoinMember):
            self.joins += 1
        return self.inner.call(address, request, timeout)

    def open_pipeline(self, address, timeout) -> CallPipeline:
        return _RecordedPipeline(self, address, timeout)

    def close(self) -> None:
        self.inner.close()


class _RecordedPipeline(CallPipeline):
    def __init__(self, transport: _RecordingTransport, address: str, timeout: float) -> None:
        super().__init__(transport, address, timeout)
        self._closed = transport.closed_pipelines
        self._peer = address

    def close(self) -> None:
        self._closed.append(self._peer)


def test_a_joiner_the_seeds_already_added_asks_again_only_after_a_pause(members):
    """A voter whose disk was replaced restarts empty with --join; the seed answers at once (it is
    already a voter), and until the leader's entries reach it (here: cut off from the leader) the
    joiner must retry at RETRY_PAUSE, not spin. Seen over real processes too: a joiner sent
    JoinMember seven times in 20 ms between C_new's commit and its own copy of C_new."""
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    seed = next(b for b in BINDINGS[:3] if b != leader.id)
    members.start(NEW, join=[seed])
    wait_for(lambda: NEW in leader.status()["configuration"]["voters"]
             and not leader.status()["configuration"]["joint"], 10, "the join")
    members.stop(NEW)
    members.network.cut(leader.id, NEW)   # the leader's entries no longer reach the new member
    members.network.cut(NEW, leader.id)
    counting = _RecordingTransport(members.network.transport(NEW))
    rejoined = (CKiteBuilder().with_local_binding(NEW).with_join([seed])
                .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
                .with_transport(counting).with_state_machine(KVStore()).with_in_memory_storage()
                .with_membership_timeout(5000).without_admin().build())
    rejoined.start()
    members.members[NEW] = rejoined   # stopped by the fixture
    threading.Event().wait(1.0)       # a measurement window: how often it asks in one second
    assert rejoined.status()["state"] == "Joiner"
    assert counting.joins <= 1 + 1.0 / RETRY_PAUSE + 1, f"{counting.joins} JoinMember requests in 1 s"


def _configuration(member: CKite) -> dict:
    return member.status()["configuration"]


def test_a_learner_added_through_a_follower_gets_the_log_but_never_votes_or_counts(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    follower = next(m for b, m in members.members.items() if m is not leader)
    leader.write(Put("before", "learner"))
    assert follower.add_learner(NEW, timeout=10) is True   # forwarded to the leader; NEW not started yet
    configuration = _configuration(leader)
    assert NEW in configuration["learners"] and NEW not in configuration["promoting"]
    assert configuration["voters"] == sorted(BINDINGS[:3])
    learner = members.start(NEW, BINDINGS[:3])
    wait_for(lambda: learner.read_local(Get("before")) == "learner", 10, "the learner to catch up")
    assert learner.read(Get("before")) == "learner"        # a linearizable read on the learner too
    assert NEW in _configuration(leader)["learners"]        # caught up, and still a learner
    for binding in BINDINGS[:3]:
        if members.members[binding] is not leader:
            members.stop(binding)                         # the leader and the learner: no majority of voters
    with pytest.raises(Exception) as refused:
        leader.write(Put("without", "quorum"), timeout=1.0)
    assert refused.value.outcome in ("unknown", "not-applied")
    assert learner.status()["term"] == leader.status()["term"]   # it never stood for election


def test_a_learner_is_promoted_to_voter_and_a_learner_can_be_removed(members):
    members.start_cluster(BINDINGS[:3])
    leader = members.leader()
    assert leader.add_learner(NEW, timeout=10) and leader.add_learner(BINDINGS[4], timeout=10)
    members.start(NEW, BINDINGS[:3])
    with pytest.raises(MembershipChangeError, match="not a learner"):
        leader.promote(BINDINGS[0])
    assert leader.promote(NEW, timeout=10) is True
    configuration = _configuration(leader)
    assert NEW in configuration["voters"] and NEW not in configuration["learners"]
    assert leader.remove_member(BINDINGS[4], timeout=10) is True   # a learner that never started
    assert BINDINGS[4] not in leader.members
    assert _configuration(leader)["learners"] == []
