"""Linearizable reads on followers (thesis §6.4): a follower asks the leader for a read index (one
request for all the reads waiting on it), applies up to it, and answers from its own state."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ckite.errors import ReadTimeoutError, RpcError
from ckite.runtime.follower_reads import ReadIndexRounds
from tests.cluster_fixture import TestCluster
from tests.kv_example import Get, Put
from tests.waiting import wait_for


class GatedLeader:
    """A fake leader whose answers wait until the test releases them; counts the requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.asked = threading.Semaphore(0)
        self.answers: list[threading.Event] = []
        self.commit_index = 10

    def fetch(self, timeout: float) -> int:
        self.requests += 1
        index = self.commit_index          # the read index is what the leader holds when asked
        release = threading.Event()
        self.answers.append(release)
        self.asked.release()
        assert release.wait(10)
        return index


def test_reads_that_arrive_while_a_request_is_in_flight_share_the_next_one():
    leader = GatedLeader()
    rounds = ReadIndexRounds(leader.fetch, clock=lambda: 0.0)
    with ThreadPoolExecutor(8) as readers:
        first = readers.submit(rounds.read_index, 1.0)
        assert leader.asked.acquire(timeout=5)   # the first read's request is in flight
        leader.commit_index = 20                  # a write committed after the first read was asked
        later = [readers.submit(rounds.read_index, 1.0) for _ in range(6)]
        wait_for(lambda: rounds._open is not None, 5, "the later reads to gather in the next round")
        leader.answers[0].set()
        assert first.result(5) == 10
        assert leader.asked.acquire(timeout=5)   # one request for all six
        leader.answers[1].set()
        assert [read.result(5) for read in later] == [20] * 6   # never the index of the round in flight
    assert leader.requests == 2


def test_a_failed_request_fails_its_round_and_a_read_past_its_deadline_gives_up():
    def unreachable(timeout: float) -> int:
        raise RpcError("leader unreachable")
    with pytest.raises(RpcError):
        ReadIndexRounds(unreachable, clock=lambda: 0.0).read_index(1.0)
    leader = GatedLeader()
    now = [0.0]
    rounds = ReadIndexRounds(leader.fetch, clock=lambda: now[0])
    with ThreadPoolExecutor(2) as readers:
        first = readers.submit(rounds.read_index, 1.0)
        assert leader.asked.acquire(timeout=5)
        now[0] = 2.0                              # the second reader's deadline has passed
        with pytest.raises(ReadTimeoutError):
            rounds.read_index(1.0)
        leader.answers[0].set()
        assert first.result(5) == 10


@pytest.mark.parametrize("transport", ["local", "thrift"])
def test_a_follower_answers_a_linearizable_read_from_its_own_state_machine(transport):
    cluster = TestCluster(transport, 3).start_all()
    try:
        leader = cluster.leader()
        follower = cluster.followers()[0]
        served: list[object] = []
        machine = cluster.state_machines[follower.id]
        apply = machine.apply
        machine.apply = lambda command: (served.append(command), apply(command))[1]
        for i in range(20):
            assert leader.write(Put("k", f"v{i}")) == f"v{i}"
            assert follower.read(Get("k")) == f"v{i}"   # every acknowledged write, at once
        assert sum(isinstance(command, Get) for command in served) == 20
    finally:
        cluster.stop_all()
