"""The library calls of issue 16: apply (a write's index), barrier, verify_leader, wait_for_leader,
on_leader_change, the typed status; on in-process clusters over the local transport."""
from __future__ import annotations

import threading
import warnings

import pytest

from ckite import MemberStatus, WriteResult
from ckite.codec import encode_command
from ckite.errors import LeaderTimeoutError, NotLeaderError
from ckite.sessions.client import Call
from ckite.sessions.table import Outcome
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, Put
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster():
    cluster = TestCluster("local", 3).start_all()
    yield cluster
    cluster.stop_all()


def test_apply_returns_the_result_with_the_index_and_term_it_was_applied_at(cluster):
    leader, follower = cluster.leader(), cluster.followers()[0]
    first = leader.apply(Put("apply-1", "a"))
    second = follower.apply(Put("apply-2", "b"))   # forwarded: the index crosses the wire
    assert isinstance(first, WriteResult) and first.result == "a" and second.result == "b"
    assert second.index > first.index and first.term == second.term == leader.status().term
    assert follower.barrier() >= second.index
    assert follower.read_local(Get("apply-2")) == "b"
    # write and write_async keep returning the result alone
    assert leader.write(Put("apply-3", "c")) == "c" and leader.write_async(Put("apply-4", "d")).result(5) == "d"
    third = leader.apply_async(Put("apply-5", "e")).result(5)
    fourth = follower.apply_async(Put("apply-6", "f")).result(5)
    assert third.result == "e" and fourth.result == "f" and fourth.index > third.index > second.index


def test_a_retried_session_write_reports_the_index_of_its_first_apply(cluster):
    """§6.3: a retry is answered from the client table; the index is where the command took effect."""
    leader = cluster.leader()
    session = leader.session()
    first = session.apply(Put("retry", "1"))
    # Send the very same request twice, as a retry after a lost reply would.
    call = Call(session._session._current, encode_command(Put("retry", "2")), None, None)
    once = leader._node.send_client_request(call.payload(0.0), 5, True)
    again = leader._node.send_client_request(call.payload(0.0), 5, True)
    assert once == again and once.index > first.index
    assert leader.status().commit_index > once.index   # the retry did take an entry of its own


def test_an_outcome_keeps_its_index_in_a_snapshot_and_old_snapshots_still_read():
    assert Outcome.decode(Outcome("r", None, 7, 2).encode()).index == 7
    assert Outcome.decode(["r"]).result == "r" and Outcome.decode(["r"]).index == 0   # before the index
    old_error = Outcome.decode([None, "CommandError", "ValueError: boom", "ValueError"])
    assert old_error.index == 0 and "boom" in str(old_error.error)


def test_barrier_on_a_follower_sees_every_write_committed_before_it(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[1]
    written = leader.apply(Put("barrier", "x"))
    assert follower.barrier(timeout=5) >= written.index
    assert follower.status().applied_index >= written.index
    assert follower.read_local(Get("barrier")) == "x"


def test_verify_leader_raises_not_leader_with_the_leader_on_a_follower(cluster):
    leader = cluster.leader()
    leader.verify_leader(timeout=5)
    assert leader.is_leader(timeout=5)
    with pytest.raises(NotLeaderError) as refused:
        cluster.followers()[0].verify_leader(timeout=5)
    assert refused.value.leader == leader.id
    assert cluster.followers()[0].wait_for_leader(timeout=5) == leader.id


def test_status_is_a_frozen_dataclass_and_still_reads_as_the_document(cluster):
    leader = cluster.leader()
    status = leader.status()
    assert isinstance(status, MemberStatus) and status.role == "Leader" and status.leader == leader.id
    assert status.configuration.voters == frozenset(cluster.bindings) and not status.configuration.joint
    assert set(status.replication) == set(cluster.bindings) - {leader.id}
    assert status.applied_index <= status.commit_index <= status.last_index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert status["term"] == status.term and status["log"]["commitIndex"] == status.commit_index
    assert status.to_json()["state"] == "Leader" and dict(status) == status.to_json()
    with pytest.raises(AttributeError):
        status.term = 99   # type: ignore[misc]
    follower = cluster.followers()[0].status()
    assert follower.replication == {} and follower.last_contact is not None and follower.last_contact < 5


def test_on_leader_change_tells_the_new_leader_after_a_transfer_from_its_own_thread():
    cluster = TestCluster("local", 3).start_all()
    try:
        leader = cluster.leader()
        watcher = cluster.followers()[0]
        seen: list[str | None] = []
        threads: set[str] = set()

        def remember(new_leader: str | None) -> None:
            threads.add(threading.current_thread().name)
            seen.append(new_leader)
        unsubscribe = watcher.on_leader_change(remember)
        wait_for(lambda: seen, 5, "the current leader")
        assert seen[0] == leader.id
        target = cluster.followers()[1]
        leader.transfer_leadership(target.id, timeout=5)
        wait_for(lambda: seen[-1] == target.id, 5, "the new leader")
        assert threads == {f"ckite-{watcher.id.rsplit(':', 1)[-1]}-leader"}
        assert all(a != b for a, b in zip(seen, seen[1:], strict=False))   # never the same one twice in a row
        unsubscribe()
    finally:
        cluster.stop_all()


def test_wait_for_leader_raises_leader_timeout_without_a_quorum():
    cluster = TestCluster("local", 3)
    alone = cluster.start(cluster.bindings[0])
    try:
        with pytest.raises(LeaderTimeoutError):
            alone.wait_for_leader(timeout=0.3)
        with pytest.raises(LeaderTimeoutError):
            alone.verify_leader(timeout=0.3)
    finally:
        cluster.stop_all()


def test_snapshot_now_stores_a_snapshot_at_the_applied_index_and_compacts(cluster):
    follower = cluster.followers()[0]
    last = cluster.leader().apply(Put("snap", "1")).index
    follower.barrier(timeout=5)
    index = follower.snapshot_now(timeout=10)
    assert index >= last
    assert follower.status()["log"]["snapshot"]["index"] == index
    assert follower.snapshot_now(timeout=10) == index   # nothing applied since: the same one, at once
    assert follower.read_local(Get("snap")) == "1"
