"""Limits and validation where requests enter a member (ckite.rpc.validation, frame_check's element
budget, the transport's connection limit): each violation is refused with a clear error and a log
line, never reaches the consensus core (so nothing changes), and the member serves on."""
from __future__ import annotations

import logging
import socket
import struct

import msgpack
import pytest
from thriftpy2.protocol.cybin import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport.framed import TCyFramedTransportFactory

from ckite import CKiteBuilder
from ckite.codec import encode_command
from ckite.errors import EncodingError
from ckite.log.entry import EntryKind, LogEntry
from ckite.messages import (
    AppendEntries,
    ForwardKind,
    ForwardRequest,
    InstallSnapshot,
    JoinMember,
    RequestVote,
    TimeoutNow,
)
from ckite.rpc.frame_check import MalformedFrame, check_frame
from ckite.rpc.idl import CKiteService
from ckite.rpc.idl import ckite_thrift as T
from ckite.rpc.thrift_transport import ThriftTransport, split_address
from ckite.rpc.validation import MAX_POSITION, MAX_TIMEOUT_MS, RequestLimits, validate_request
from tests.frames import call_frame, exchange, fingerprint
from tests.kv_example import KVStore, Put
from tests.netutil import CONFIGURATION, FakeHandler, answer, free_port
from tests.waiting import wait_for

TRANSPORT_LOGGER = "ckite.rpc.thrift_transport"
LIMITS = RequestLimits(max_entries_per_append=100, max_append_bytes=1000)


def entries(first: int, terms: list[int], size: int = 1) -> list[LogEntry]:
    return [LogEntry(first + offset, term, b"x" * size) for offset, term in enumerate(terms)]


# --- validate_request -----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_, complaint", [
    (AppendEntries(MAX_POSITION + 1, "l:1", 0, 0), f"term {MAX_POSITION + 1} is larger than {MAX_POSITION}"),
    (AppendEntries(2 ** 63 - 1, "l:1", 0, 0), "is larger than"),
    (AppendEntries(1, "l:1", 2 ** 62 + 5, 1), "prev_log_index"),
    (AppendEntries(1, "l:1", 0, 0, leader_commit=2 ** 63 - 1), "leader_commit"),
    (AppendEntries(3, "l:1", 0, 4), "prev_log_term 4 is after the term 3"),
    (AppendEntries(3, "l:1", 4, 2, entries(6, [2, 2])), "entry index 6 where 5 was expected"),
    (AppendEntries(3, "l:1", 4, 2, entries(5, [2, 2]) + entries(8, [2])), "entry index 8 where 7 was expected"),
    (AppendEntries(3, "l:1", 4, 2, entries(5, [3, 2])), "entry 6 has term 2, outside 3..3"),
    (AppendEntries(3, "l:1", 4, 2, entries(5, [1])), "entry 5 has term 1, outside 2..3"),
    (AppendEntries(3, "l:1", 4, 2, entries(5, [4])), "entry 5 has term 4, outside 2..3"),
    (AppendEntries(3, "l:1", 0, 0, entries(1, [0])), "entry 1 has term 0, outside 1..3"),
    (AppendEntries(3, "l:1", 0, 0, entries(1, [1] * 101)), "101 entries, more than the limit of 100"),
    (AppendEntries(3, "l:1", 0, 0, entries(1, [1] * 3, size=400)), "1200 bytes of entries, more than the limit"),
    (AppendEntries(3, "", 0, 0), "leader_id must be 1..1024 printable characters"),
    (AppendEntries(3, "l\n:1", 0, 0), "leader_id must be"),
    (AppendEntries(3, "l" * 1025, 0, 0), "leader_id must be"),
    (RequestVote(2, "c:1", 9, 3), "last_log_term 3 is after the term 2"),
    (RequestVote(2, "c:1", MAX_POSITION + 1, 1), "last_log_index"),
    (InstallSnapshot(2, "l:1", 10, 3, CONFIGURATION, 0, b"", True), "last_term 3 is after the term 2"),
    (InstallSnapshot(2, "l:1", 10, 1, CONFIGURATION, MAX_POSITION + 1, b"", True), "offset"),
    # A configuration the core could not decode would be stored first, and then fail every restart.
    (InstallSnapshot(2, "l:1", 10, 1, b"", 0, b"", True), "configuration: malformed cluster configuration"),
    (InstallSnapshot(2, "l:1", 10, 1, CONFIGURATION, 8, b"abc", False, size=10), "goes past the snapshot's 10 bytes"),
    (InstallSnapshot(2, "l:1", 10, 1, b"\x93\x01", 0, b"", True), "malformed cluster configuration"),
    (AppendEntries(3, "l:1", 0, 0, [LogEntry(1, 3, b"\xc1", EntryKind.CONFIGURATION)]),
     "entry 1: malformed cluster configuration"),
    (AppendEntries(3, "l:1", 0, 0, [LogEntry(1, 3, b"\x81\xa6voters\x01", EntryKind.CONFIGURATION)]),
     "malformed cluster configuration"),
    (AppendEntries(3, "l:1", 0, 0, [LogEntry(1, 3, msgpack.packb({"voters": [1, 2], "old_voters": None}),
                                             EntryKind.CONFIGURATION)]), "member ids are non-empty text"),
    (AppendEntries(3, "l:1", 0, 0, [LogEntry(1, 3, msgpack.packb({"voters": [], "old_voters": None}),
                                             EntryKind.CONFIGURATION)]), "a configuration needs voters"),
    (TimeoutNow(MAX_POSITION + 1, "l:1"), "term"),
    (ForwardRequest(ForwardKind.WRITE, b"", MAX_TIMEOUT_MS + 1), "timeout_ms"),
    (JoinMember("new:1", 2 ** 62), "timeout_ms"),
    (JoinMember("\x00", 1), "member_id must be"),
    (ForwardRequest(ForwardKind.TRANSFER_LEADERSHIP, b"\x92\x01", 10), "transfer_leadership payload is not UTF-8"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, b"\xc1", 10), "change_members payload: malformed"),
    (ForwardRequest(ForwardKind.READ_INDEX, b"x", 10), "carries no payload"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": ["a:1"]}), 10), "must be {"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": ["a\nb:1"], "remove": []}), 10),
     "change_members id must be"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": [], "remove": [7]}), 10),
     "change_members id must be"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": [], "remove": [], "learners": [7]}), 10),
     "change_members id must be"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": [], "remove": [], "voters": []}), 10),
     "must be {"),
    (ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": [f"m:{i}" for i in range(101)], "remove": []}),
                    10), "more than 100 members"),
], ids=lambda value: value if isinstance(value, str) else type(value).__name__)
def test_requests_that_break_raft_invariants_or_limits_are_invalid(request_, complaint):
    with pytest.raises(EncodingError, match=complaint.replace("(", r"\(")):
        validate_request(request_, LIMITS)


@pytest.mark.parametrize("request_", [
    AppendEntries(3, "l:1", 4, 2, entries(5, [2, 2, 3, 3])),
    AppendEntries(3, "l:1", 0, 0, entries(1, [1] * 100, size=10)),   # exactly at both limits
    AppendEntries(MAX_POSITION, "l:1", MAX_POSITION - 1, MAX_POSITION, entries(MAX_POSITION, [MAX_POSITION])),
    AppendEntries(1, "10.0.0.1:9091", 0, 0),
    RequestVote(5, "c:1", 9, 5, pre_vote=True),
    InstallSnapshot(2, "l:1", 10, 2, CONFIGURATION, 0, b"", True),
    InstallSnapshot(2, "l:1", 10, 2, CONFIGURATION, 7, b"abc", True, size=10, checksum=1),   # the last chunk
    AppendEntries(3, "l:1", 0, 0, [LogEntry(1, 3, CONFIGURATION, EntryKind.CONFIGURATION)]),
    ForwardRequest(ForwardKind.READ_INDEX, b"", MAX_TIMEOUT_MS),
    ForwardRequest(ForwardKind.WRITE, b"\xff\xfe", 10),   # commands are checked by the command codec
    ForwardRequest(ForwardKind.TRANSFER_LEADERSHIP, b"", 10),
    ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": ["m\u00e9:1"], "remove": ["n:2"]}), 10),
    ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": [], "remove": [], "learners": ["l:3"]}), 10),
    JoinMember("new:9095", 0),
], ids=lambda value: type(value).__name__)
def test_requests_a_healthy_leader_sends_are_valid(request_):
    validate_request(request_, LIMITS)


# --- the element budget of frame_check --------------------------------------------------------------

def test_a_frame_with_more_entries_than_the_budget_is_refused_before_decoding():
    frame = call_frame(AppendEntries(1, "l:1", 0, 0, entries(1, [1] * 50)))
    check_frame(frame, max_items=50)
    with pytest.raises(MalformedFrame, match="hold more than 49 elements"):
        check_frame(frame, max_items=49)


def test_a_million_empty_structs_in_a_small_frame_are_refused():
    """An empty struct takes one byte: 1 MB would otherwise decode to a million LogEntryST objects."""
    count = 1_000_000
    arguments = struct.pack(">bh", 12, 1) + struct.pack(">bhbi", 15, 6, 12, count) + b"\x00" * count + b"\x00"
    message = struct.pack(">iI", -0x7FFEFFFF, 17) + b"sendAppendEntries" + struct.pack(">i", 0) + arguments + b"\x00"
    with pytest.raises(MalformedFrame, match="hold more than 10000 elements"):
        check_frame(struct.pack(">i", len(message)) + message)


# --- over the wire ------------------------------------------------------------------------------------

@pytest.fixture
def handler():
    return FakeHandler()


@pytest.fixture
def server(handler):
    transport = ThriftTransport(limits=LIMITS, max_frame_bytes=1 << 20)
    transport.serve("127.0.0.1:0", handler)
    yield transport
    transport.close()


@pytest.fixture
def plain_client(server):
    host, port = split_address(server.address)
    client = make_client(CKiteService, host, port, proto_factory=TCyBinaryProtocolFactory(),
                         trans_factory=TCyFramedTransportFactory(), timeout=5000)
    yield client
    client.close()


def test_an_invalid_request_gets_encoding_error_and_a_log_line_and_never_reaches_the_handler(
        server, plain_client, handler, caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    hostile = T.AppendEntriesST(term=1, leaderId="l:1", commitIndex=0, prevLogIndex=0, prevLogTerm=0,
                                entries=[T.LogEntryST(term=1, index=1, command=b"a"),
                                         T.LogEntryST(term=1, index=3, command=b"b")])
    with pytest.raises(T.CKiteErrorST) as raised:
        plain_client.sendAppendEntries(hostile)
    assert raised.value.errorClass == "EncodingError"
    assert "entry index 3 where 2 was expected" in raised.value.message
    assert any("refused sendAppendEntries" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records if r.name == TRANSPORT_LOGGER)
    reply = plain_client.sendRequestVote(T.RequestVoteST(memberId="c:1", term=3, lastLogIndex=0, lastLogTerm=0))
    assert reply.currentTerm == 3   # the same connection serves on
    assert [type(request).__name__ for request in handler.received] == ["RequestVote"]


@pytest.mark.parametrize("struct_, complaint", [
    (T.AppendEntriesST(term=1, leaderId="l:1", commitIndex=0, prevLogIndex=0, prevLogTerm=0,
                       entries=[T.LogEntryST(term=1, index=1, command=b"", kind=9)]), "kind 9 at index 1 is unknown"),
    (T.AppendEntriesST(term=1, leaderId="l:1", commitIndex=0, prevLogIndex=0, prevLogTerm=0,
                       entries=[T.LogEntryST(term=1, index=1, command=b"", kind=-1)]), "kind -1"),
    (T.RequestVoteST(memberId="c:1", term=2 ** 63 - 1, lastLogIndex=0, lastLogTerm=0), "is larger than"),
    (T.RequestVoteST(memberId="c:1", term=-1, lastLogIndex=0, lastLogTerm=0), "term is negative"),
], ids=["unknown-entry-kind", "negative-entry-kind", "absurd-term", "negative-term"])
def test_unknown_enum_values_and_absurd_numbers_are_refused_over_the_wire(server, plain_client, handler, struct_,
                                                                          complaint):
    method = "sendAppendEntries" if isinstance(struct_, T.AppendEntriesST) else "sendRequestVote"
    with pytest.raises(T.CKiteErrorST) as raised:
        getattr(plain_client, method)(struct_)
    assert complaint in raised.value.message
    assert handler.received == []


def test_an_unknown_forward_kind_is_refused_over_the_wire(server, plain_client, handler):
    with pytest.raises(T.CKiteErrorST) as raised:
        plain_client.sendCommand(T.ForwardRequestST(kind="drop_table", payload=b"", timeoutMs=10))
    assert "'drop_table' is not one of" in raised.value.message
    assert handler.received == []


def test_too_many_entries_close_the_connection_before_decoding(server, handler, caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    assert exchange(server.address, call_frame(AppendEntries(1, "l:1", 0, 0, entries(1, [1] * 101)))) == b""
    wait_for(lambda: any("hold more than 100 elements" in r.getMessage() for r in caplog.records), 5,
             "the refusal in the log")
    assert handler.received == []


def test_the_connection_limit_refuses_extra_connections_and_recovers(handler, caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    server = ThriftTransport(max_connections=2)
    server.serve("127.0.0.1:0", handler)
    client = ThriftTransport()
    try:
        address = split_address(server.address)
        idle = [socket.create_connection(address, timeout=5) for _ in range(2)]
        extra = socket.create_connection(address, timeout=5)
        assert extra.recv(1) == b""   # closed at once
        extra.close()
        wait_for(lambda: any("already serving 2 connections" in r.getMessage() for r in caplog.records), 5,
                 "the refusal in the log")
        for connection in idle:
            connection.close()
        wait_for(lambda: _answers(client, server.address), 5, "the server to take connections again")
    finally:
        client.close()
        server.close()


def _answers(client: ThriftTransport, address: str) -> bool:
    try:
        return client.call(address, AppendEntries(1, "l:1", 0, 0), timeout=1) == answer(AppendEntries(1, "l:1", 0, 0))
    except Exception:
        return False


# --- a real member ------------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_hostile_requests_change_nothing_on_a_real_member():
    transport = ThriftTransport()
    member = (CKiteBuilder().with_local_binding(f"127.0.0.1:{free_port()}")
              .with_min_election_timeout(150).with_max_election_timeout(300).with_heartbeats_interval(50)
              .with_in_memory_storage().with_state_machine(KVStore()).with_transport(transport)
              .without_admin().build())
    member.start()
    try:
        wait_for(lambda: member.is_leader(), 10, "the single member to lead")
        member.write(Put("k", "v"), timeout=5)
        before = fingerprint(member)
        term = before["term"]
        hostile = [
            AppendEntries(MAX_POSITION + 1, "evil:1", 0, 0),                                 # would depose it
            AppendEntries(term + 1, "evil:1", 0, 0, entries(1, [term + 1, term])),          # terms going back
            AppendEntries(term + 1, "evil:1", 0, 0, entries(2, [term + 1])),               # a hole at 1
            AppendEntries(term + 1, "evil:1", 0, term + 2),                                  # prev term ahead
            RequestVote(2 ** 62 + 1, "evil:1", 10 ** 6, 1),
            TimeoutNow(2 ** 63 - 1, "evil:1"),
            ForwardRequest(ForwardKind.WRITE, encode_command(Put("k", "w")), 10 ** 12),   # a 31-year wait
        ]
        for request in hostile:
            with pytest.raises(EncodingError):
                transport.call(member.id, request, timeout=5)
        assert exchange(member.id, call_frame(AppendEntries(term + 1, "evil:1", 0, 0, entries(1, [term + 1] * 20_000)))
                        ) == b""   # over the element budget: closed unread
        assert fingerprint(member) == before
        assert member.write(Put("k", "still serving"), timeout=5) == "still serving"
    finally:
        member.stop()
