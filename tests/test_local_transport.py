"""The in-process transport: calls go straight to the target's handler, through the wire's conversions,
and the fault switches (isolate, heal, cut) fail exactly the traffic they name."""
from __future__ import annotations

import logging

import pytest

from ckite.errors import CommandError, EncodingError, NotLeaderError, RpcError, StoppedError
from ckite.log.entry import LogEntry
from ckite.messages import AppendEntries, RequestVote, TimeoutNow
from ckite.rpc.local import LocalNetwork
from tests.netutil import SAMPLE_REQUESTS, FakeHandler, answer

A, B, C = "a:1", "b:2", "c:3"
PING = TimeoutNow(1, "x")


@pytest.fixture
def network():
    return LocalNetwork()


@pytest.fixture
def members(network):
    """Three members, each serving a FakeHandler through its own transport."""
    transports, handlers = {}, {}
    for address in (A, B, C):
        handlers[address] = FakeHandler()
        transports[address] = network.transport(address)
        transports[address].serve(address, handlers[address])
    yield transports, handlers
    for transport in transports.values():
        transport.close()


def reaches(transports, source, target) -> bool:
    try:
        transports[source].call(target, PING, 1)
        return True
    except RpcError:
        return False


@pytest.mark.parametrize("request_", SAMPLE_REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_reaches_the_handler_and_its_answer_comes_back(members, request_):
    transports, handlers = members
    assert transports[A].call(B, request_, 1) == answer(request_)
    assert handlers[B].received == [request_]
    assert handlers[B].received[0] is not request_   # it crossed the codec, like over the wire


def test_isolate_fails_all_traffic_to_and_from_a_member_until_heal(members, network):
    transports, handlers = members
    network.isolate(B)
    assert not reaches(transports, A, B) and not reaches(transports, B, A) and not reaches(transports, B, C)
    assert reaches(transports, A, C) and reaches(transports, C, A)
    assert handlers[B].received == []
    network.heal(B)
    assert reaches(transports, A, B) and reaches(transports, B, C)


def test_cut_is_one_way(members, network):
    transports, handlers = members
    network.cut(A, B)
    with pytest.raises(RpcError, match="a:1 -> b:2: link down"):
        transports[A].call(B, PING, 1)
    assert handlers[B].received == []          # the request never arrived
    with pytest.raises(RpcError, match="reply to sendTimeoutNow was lost"):
        transports[B].call(A, PING, 1)
    assert handlers[A].received == [PING]      # B's request arrived; only A's reply was lost
    assert reaches(transports, A, C) and reaches(transports, C, B)
    network.heal(A)                            # heal() undoes isolation, not cuts
    assert not reaches(transports, A, B)
    network.heal_all()
    assert reaches(transports, A, B) and reaches(transports, B, A)


def test_a_member_that_is_not_serving_is_unreachable(members, network):
    transports, _ = members
    with pytest.raises(RpcError, match="d:4 is not serving"):
        transports[A].call("d:4", PING, 1)
    transports[B].close()
    with pytest.raises(RpcError, match="b:2 is not serving"):
        transports[A].call(B, PING, 1)
    with pytest.raises(RpcError, match="closed"):
        transports[B].call(A, PING, 1)
    with pytest.raises(StoppedError):
        transports[B].serve(B, FakeHandler())


def test_a_restarted_member_serves_again_on_a_new_transport(members, network):
    transports, _ = members
    transports[B].close()
    restarted = FakeHandler()
    network.transport(B).serve(B, restarted)
    assert transports[A].call(B, PING, 1) == answer(PING)
    assert restarted.received == [PING]


def test_two_live_members_cannot_serve_one_address(members, network):
    with pytest.raises(RpcError, match="already served"):
        network.transport(B).serve(B, FakeHandler())


def test_errors_cross_as_they_would_over_thrift(network, caplog):
    def behave(request):
        if isinstance(request, RequestVote):
            raise NotLeaderError(leader="c:3")
        if isinstance(request, TimeoutNow):
            raise CommandError("bad", "ValueError")
        raise ZeroDivisionError("a bug")
    network.transport(B).serve(B, FakeHandler(behave))
    caller = network.transport(A)
    with pytest.raises(NotLeaderError) as raised:
        caller.call(B, RequestVote(1, A, 0, 0), 1)
    assert raised.value.leader == "c:3"
    with pytest.raises(CommandError) as raised:
        caller.call(B, PING, 1)
    assert raised.value.error_type == "ValueError"
    with pytest.raises(RpcError, match="ZeroDivisionError: a bug"):   # not the handler's own exception
        caller.call(B, AppendEntries(1, A, 0, 0), 1)
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("request_, complaint", [
    (AppendEntries(-1, A, 0, 0), "term is negative"),
    (AppendEntries(1, A, 0, 0, [LogEntry(1, 1, "text, not bytes")]), "command is not binary"),
    (RequestVote(1, None, 0, 0), "memberId is missing"),
])
def test_a_message_that_could_not_cross_the_wire_fails_here_too(members, request_, complaint):
    transports, handlers = members
    with pytest.raises(EncodingError, match=complaint):
        transports[A].call(B, request_, 1)
    assert handlers[B].received == []
