"""Exactly-once writes (Raft thesis §6.3): client sessions, idempotency keys, and failures that
say whether a write applied. The client table on its own; the simulation with duplicated and
delayed requests, leader changes between append and reply, restarts from snapshots and session
expiry; real members where a reply is lost or the member stops with writes in flight."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from ckite.codec import encode_command
from ckite.errors import (
    IdempotencyKeyReusedError,
    NotAppliedError,
    OutcomeUnknownError,
    SessionExpiredError,
    StoppedError,
    WriteInterruptedError,
    WriteTimeoutError,
)
from ckite.sessions.client import RETRY_WINDOW, Call, Session
from ckite.sessions.request import ClientRequest
from ckite.sessions.table import ClientTable
from kvstore.store import Get, Increment, KVStore, Put
from tests.cluster_fixture import TestCluster
from tests.simulation.sessions import run_session_schedule
from tests.waiting import wait_for

HOUR = 3600 * 1000


def opened(table: ClientTable, index: int = 1, stamp: int = 0) -> int:
    return table.admit(index, stamp, ClientRequest(0, 0, 0, b"")).outcome.result


# --- the client table ----------------------------------------------------------------------------------

def test_a_request_sent_again_is_answered_from_its_first_outcome_not_applied_again():
    table = ClientTable()
    session = opened(table)
    first = table.admit(2, 0, ClientRequest(session, 1, 1, b"incr"))
    assert first.apply
    first.outcome.result = "1"
    again = table.admit(3, 0, ClientRequest(session, 1, 1, b"incr"))
    assert not again.apply and again.outcome.result == "1"


def test_a_retry_in_the_same_batch_shares_the_outcome_the_first_will_get():
    table = ClientTable()
    session = opened(table)
    first, again = (table.admit(i, 0, ClientRequest(session, 1, 1, b"x")) for i in (2, 3))
    assert first.apply and not again.apply and again.outcome is first.outcome


def test_outcomes_the_client_acknowledged_are_forgotten():
    table = ClientTable()
    session = opened(table)
    for seq in (1, 2, 3):
        table.admit(1 + seq, 0, ClientRequest(session, seq, 1, b"w")).outcome.result = seq
    table.admit(5, 0, ClientRequest(session, 4, 3, b"w"))   # "I have the results below 3"
    assert sorted(table._sessions[session].outcomes) == [3, 4]
    late = table.admit(6, 0, ClientRequest(session, 1, 3, b"w"))   # a duplicate of an acknowledged one
    assert not late.apply and late.outcome.error is not None


def test_a_session_expires_by_the_logs_time_and_its_requests_are_refused():
    table = ClientTable(session_timeout_ms=1000)
    session = opened(table, stamp=10_000)
    assert table.admit(2, 10_900, ClientRequest(session, 1, 1, b"a")).apply
    other = opened(table, 3, 12_000)                       # the log's clock moves past the timeout...
    assert table.expired == [(3, session)]                 # ...and expires the first session, at this entry
    refused = table.admit(4, 12_001, ClientRequest(session, 2, 2, b"b"))
    assert not refused.apply and isinstance(refused.outcome.error, SessionExpiredError)
    assert table.admit(5, 11_000, ClientRequest(other, 1, 1, b"c")).apply   # an older leader's clock: time stays


def test_an_idempotency_key_answers_every_client_and_refuses_another_request():
    table = ClientTable()
    a, b = opened(table, 1), opened(table, 2)
    first = table.admit(3, 0, ClientRequest(a, 1, 1, b"incr", "key-1", "fp"))
    first.outcome.result = "42"
    same = table.admit(4, 0, ClientRequest(b, 1, 1, b"incr", "key-1", "fp"))
    assert not same.apply and same.outcome.result == "42"
    other = table.admit(5, 0, ClientRequest(b, 2, 1, b"put", "key-1", "another fp"))
    assert not other.apply and isinstance(other.outcome.error, IdempotencyKeyReusedError)


def test_the_table_survives_a_snapshot_and_deduplicates_as_before():
    table = ClientTable()
    session = opened(table)
    table.admit(2, 5, ClientRequest(session, 1, 1, b"x", "k", "fp")).outcome.result = {"value": "1"}
    restored = ClientTable()
    restored.restore(table.encode())
    assert restored.admit(3, 6, ClientRequest(session, 1, 1, b"x")).outcome.result == {"value": "1"}
    assert restored.admit(4, 6, ClientRequest(session, 2, 1, b"y", "k", "fp")).outcome.result == {"value": "1"}
    assert restored.now == 6


# --- the simulation ------------------------------------------------------------------------------------

SEEDS = range(8)


def test_session_schedules_apply_every_request_exactly_once_through_the_faults():
    runs = [run_session_schedule(seed, 20.0) for seed in SEEDS]
    assert sum(run.duplicates_sent for run in runs) > 300          # requests really were sent again
    assert sum(len(run.acknowledged) for run in runs) > 1000
    assert sum(run.sleeper.refused > 0 for run in runs) >= len(runs) // 2   # sessions really expired
    assert sum(run.cluster.snapshots_restored for run in runs) > 10       # tables really came from snapshots


def test_the_session_checker_catches_a_table_that_applies_retries(monkeypatch):
    admit = ClientTable.admit

    def forgetful(self, index, stamp, request):
        decision = admit(self, index, stamp, request)
        if request.session and not decision.apply and decision.outcome.error is None:
            self._sessions[request.session].outcomes.pop(request.seq, None)   # forget: apply the retry again
            return admit(self, index, stamp, request)
        return decision
    monkeypatch.setattr(ClientTable, "admit", forgetful)
    with pytest.raises(AssertionError, match="a second time|twice"):
        for seed in SEEDS:
            run_session_schedule(seed, 20.0)


# --- real members ------------------------------------------------------------------------------------


@pytest.fixture
def cluster():
    made = TestCluster("local", 3, new_state_machine=KVStore).start_all()   # the kvstore's: it counts
    yield made
    made.stop_all()


def test_a_write_whose_reply_is_lost_is_retried_and_applies_once(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    session = follower.session()
    session.write(Increment("counter", 1))   # opens the session, and counts 1
    cluster.network.cut(leader.id, follower.id)   # the leader's replies to the follower are lost from now on
    done: list[object] = []

    def write() -> None:
        done.append(session.write(Increment("counter", 1), timeout=10))
    writer = threading.Thread(target=write)
    writer.start()
    wait_for(lambda: leader.read_local(Get("counter")) == "2", 10, "the leader to apply the increment")
    cluster.network.heal_all()                    # the retries get through now
    writer.join(10)
    assert done == [{"value": "2"}]               # the first outcome, not a second increment
    wait_for(lambda: all(m.read_local(Get("counter")) == "2" for m in cluster.running()), 10, "every member")


def test_an_unknown_outcome_can_be_sent_again_and_still_applies_once(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    session = follower.session()
    session.write(Increment("counter", 1))
    cluster.network.cut(leader.id, follower.id)
    with pytest.raises(OutcomeUnknownError) as unknown:
        session.write(Increment("counter", 1), timeout=0.5)
    wait_for(lambda: leader.read_local(Get("counter")) == "2", 10, "the leader to apply it meanwhile")
    cluster.network.heal_all()
    assert unknown.value.retry(timeout=10) == {"value": "2"}
    assert leader.read(Get("counter")) == "2"


def test_a_stopped_member_says_which_writes_did_not_apply_and_which_may_have(cluster):
    leader = cluster.leader()
    for follower in cluster.followers():
        cluster.network.isolate(follower.id)           # nothing commits: the write stays in flight
    in_flight = leader.write_async(Increment("counter", 1), timeout=30)
    wait_for(lambda: leader.status()["log"]["lastIndex"] > leader.status()["log"]["commitIndex"], 10,
             "the write to be in the leader's log")
    cluster.stop(leader.id)
    error = in_flight.exception(timeout=10)
    assert isinstance(error, (WriteInterruptedError, OutcomeUnknownError)) and error.outcome == "unknown"
    with pytest.raises(StoppedError) as refused:
        leader.write(Increment("counter", 1))
    assert isinstance(refused.value, NotAppliedError) and refused.value.outcome == "not-applied"


def test_writes_issued_before_the_session_opened_open_it_once_and_results_received_are_forgotten(cluster):
    """The first writes of a fresh member all wait for its session to open: one opening entry,
    not one per write (each extra session would be held by every member until it expired)."""
    leader = cluster.leader()
    session = leader.session()
    futures = [session.write_async(Increment("counter", 1)) for _ in range(20)]
    for future in futures:
        future.result(timeout=10)
    assert leader.read(Get("counter")) == "20"
    table = leader._node.applier.state.table
    assert len(table) == 1, f"{len(table)} sessions opened"
    for future in [session.write_async(Increment("counter", 1)) for _ in range(20)]:   # the session is open now
        future.result(timeout=10)
    session.write(Increment("counter", 1))   # tells the members every earlier result arrived
    assert list(table._sessions[session.id].outcomes) == [41]   # so they keep only this one's


def test_the_outcome_kept_for_a_retry_of_a_put_does_not_hold_the_value(cluster):
    """An outcome is kept in every member's table and in every snapshot until the client
    acknowledges it, and under an Idempotency-Key for a day: a put's value held there was a
    second copy of the state in every snapshot (the large-state benchmark's data dir showed it)."""
    leader = cluster.leader()
    value = "v" * 200_000
    assert leader.write(Put("big", value), idempotency_key="put-big") is None
    assert leader.write(Put("big", value), idempotency_key="put-big") is None   # answered from the table
    assert leader.read(Get("big")) == value
    assert len(leader._node.applier.state.table.encode()) < 1_000


def test_a_request_of_an_expired_session_keeps_its_id_after_the_session_is_reopened(cluster):
    """After an expiry the next write opens a new session numbered from 1 again; a request made
    in the old one must still name the old one, or its retry would be answered with the new
    session's outcome of the same number."""
    session = cluster.leader().session()
    session.write(Increment("counter", 1))
    old = session._session._current
    late = Call(old, encode_command(Increment("counter", 1)), None, None)
    session._session.reopen()                     # what an expiry leads to
    session.write(Increment("counter", 1))        # opens the new session
    assert session.id is not None and session.id != old.id
    assert ClientRequest.decode(late.payload(0.0)).session == old.id


class _UnansweringNode:
    """What a Session sends through, answering every request with an unknown outcome."""

    id = "fake"
    write_timeout = 1.0

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[ClientRequest] = []

    def clock(self) -> float:
        return self.now

    def send_client_request_async(self, payload: bytes, timeout: float, indexed: bool = False,
                                  future: Future | None = None) -> Future:
        self.sent.append(ClientRequest.decode(payload))
        future = future if future is not None else Future()   # as the leader: the session's own future
        future.set_exception(WriteTimeoutError("no answer"))
        return future


def test_an_unknown_outcome_stays_open_for_its_retry_only_within_the_retry_window():
    """The members keep a request's outcome while its client may still retry it; a request whose
    retry never comes must not make them keep every later outcome of the session for ever."""
    node = _UnansweringNode()
    session = Session(node)   # type: ignore[arg-type]
    session._current.id = 7   # opened
    unknown = session.write_async(b"cmd", 1.0).exception()
    session.write_async(b"cmd", 1.0)
    assert [request.acked for request in node.sent] == [1, 1]   # request 1 is still open
    node.now += RETRY_WINDOW + 1
    session.write_async(b"cmd", 1.0)
    assert node.sent[-1].acked == 3   # both given up: the members may forget them
    with pytest.raises(OutcomeUnknownError, match="not retried within"):
        unknown.retry()
    assert len(node.sent) == 3   # the late retry sent nothing
