"""The Thrift wire: thrift_codec's mapping, and ThriftTransport on loopback (errors, hostile peers,
timeouts, concurrency, shutdown), plus the IDL's presence in the wheel."""
from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from thriftpy2.protocol.cybin import TCyBinaryProtocol, TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport.framed import TCyFramedTransportFactory
from thriftpy2.transport.memory import TCyMemoryBuffer

from ckite.errors import (
    CommandError,
    EncodingError,
    NotLeaderError,
    RpcError,
    StoppedError,
    UnreachableError,
    WriteTimeoutError,
)
from ckite.log.entry import EntryKind, LogEntry
from ckite.messages import AppendEntries, ForwardKind, ForwardRequest, TimeoutNow
from ckite.rpc.idl import CKiteService
from ckite.rpc.idl import ckite_thrift as T
from ckite.rpc.thrift_codec import (
    METHODS,
    decode_request,
    decode_response,
    encode_request,
    error_from_thrift,
    error_to_thrift,
    from_thrift,
    to_thrift,
)
from ckite.rpc.thrift_transport import ThriftTransport, split_address
from tests.netutil import SAMPLE_REQUESTS, SAMPLE_RESPONSES, FakeHandler, answer, entries_of_every_kind, free_port
from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
TRANSPORT_LOGGER = "ckite.rpc.thrift_transport"
HEARTBEAT = AppendEntries(1, "caller:1", 0, 0)


def over_the_wire(value):
    """``value`` written and read back with thriftpy2's Cython binary protocol (bytes stay bytes)."""
    if isinstance(value, bytes):
        return value
    out = TCyMemoryBuffer()
    TCyBinaryProtocol(out).write_struct(value)
    back = type(value)()
    TCyBinaryProtocol(TCyMemoryBuffer(out.getvalue())).read_struct(back)
    return back


def method_answering(response) -> str:
    return next(method for method, (_, response_type) in METHODS.items() if response_type is type(response))


# --- thrift_codec -----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_", SAMPLE_REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_survives_the_codec_and_the_binary_protocol(request_):
    method, argument = encode_request(request_)
    decoded = decode_request(method, over_the_wire(argument))
    assert decoded == request_
    for entry in getattr(decoded, "entries", []):
        assert type(entry.kind) is EntryKind


@pytest.mark.parametrize("response", SAMPLE_RESPONSES, ids=lambda r: type(r).__name__)
def test_every_response_survives_the_codec_and_the_binary_protocol(response):
    assert decode_response(method_answering(response), over_the_wire(to_thrift(response))) == response


def test_thousands_of_entries_keep_their_order_and_kinds():
    entries = [LogEntry(i, 1 + i // 1000, b"x" * (i % 7), EntryKind(i % 3)) for i in range(1, 5001)]
    request = AppendEntries(5, "l", 0, 0, entries, 4000)
    assert decode_request(*encode_request(request)).entries == entries


def entry_st(**fields):
    return T.LogEntryST(**{"term": 1, "index": 1, "command": b"", "kind": 0, **fields})


def append_st(**fields):
    return T.AppendEntriesST(**{"term": 1, "leaderId": "l", "commitIndex": 0, "prevLogIndex": 0, "prevLogTerm": 0,
                                "entries": [], **fields})


@pytest.mark.parametrize("struct_, complaint", [
    (append_st(term=-1), "AppendEntriesST.term is negative"),
    (append_st(prevLogIndex=-1), "AppendEntriesST.prevLogIndex is negative"),    # CKite's old "absent" value
    (append_st(leaderId=None), "AppendEntriesST.leaderId is missing"),
    (append_st(leaderId=b"\xff\xfe"), "AppendEntriesST.leaderId is not UTF-8 text"),
    (append_st(entries=[entry_st(kind=7)]), "kind 7 at index 1 is unknown"),
    (append_st(entries=[entry_st(index=-3)]), "AppendEntriesST.entries.index is negative"),
    (append_st(entries=[entry_st(term=None)]), "AppendEntriesST.entries.term is missing"),
    (append_st(entries=[entry_st(command=None)]), "AppendEntriesST.entries.command is missing"),
    (append_st(entries=[entry_st(command="text")]), "AppendEntriesST.entries.command is not binary"),
    (T.RequestVoteST(memberId="c", term=1, lastLogIndex=None, lastLogTerm=0), "lastLogIndex is missing"),
    (T.RequestVoteST(memberId="c", term=1, lastLogIndex=0, lastLogTerm=0, preVote=None), "preVote is missing"),
    (T.ForwardRequestST(kind="delete", payload=b"", timeoutMs=1),
     "'delete' is not one of write, client_request, write_indexed"),
    (T.ForwardRequestST(kind="write", payload=b"", timeoutMs=-1), "timeoutMs is negative"),
    (T.InstallSnapshotST(term=1, leaderId="l", lastIndex=1, lastTerm=1, configuration=b"", offset=0, data=None,
                         done=True), "InstallSnapshotST.data is missing"),
    (T.JoinMemberST(memberId=None), "JoinMemberST.memberId is missing"),
    (None, "the message is missing"),
])
def test_malformed_structs_from_the_network_raise_encoding_error(struct_, complaint):
    with pytest.raises(EncodingError, match=complaint.replace("(", r"\(")):
        from_thrift(struct_)


def test_a_reply_of_the_wrong_kind_is_malformed():
    with pytest.raises(EncodingError, match="sendRequestVote carried TimeoutNowResponse"):
        decode_response("sendRequestVote", T.TimeoutNowResponseST(term=1, accepted=True))


@pytest.mark.parametrize("error", [NotLeaderError("not the leader", leader="x:1"), NotLeaderError(),
                                   CommandError("boom", "ValueError"), WriteTimeoutError("too slow"),
                                   UnreachableError("down")], ids=repr)
def test_errors_keep_their_class_message_and_details(error):
    back = error_from_thrift(over_the_wire(error_to_thrift(error)))
    assert (type(back), str(back)) == (type(error), str(error))
    assert getattr(back, "leader", None) == getattr(error, "leader", None)
    assert getattr(back, "error_type", None) == getattr(error, "error_type", None)


def test_an_unknown_error_class_becomes_rpc_error():
    back = error_from_thrift(T.CKiteErrorST(errorClass="SystemExit", message="bye"))
    assert type(back) is RpcError and "SystemExit" in str(back) and "bye" in str(back)


def test_split_address():
    assert split_address("localhost:9091") == ("localhost", 9091)
    assert split_address("[::1]:9091") == ("::1", 9091)
    for bad in ["localhost", "host:port", "host:99999", ""]:
        with pytest.raises(ValueError):
            split_address(bad)


# --- ThriftTransport on loopback ---------------------------------------------------------------------

@pytest.fixture
def handler():
    return FakeHandler()


@pytest.fixture
def serve(request):
    """Start a ThriftTransport serving a handler on a kernel-chosen loopback port; closed at teardown."""
    transports = []

    def start(handler, **options) -> ThriftTransport:
        transport = ThriftTransport(**options)
        transport.serve("127.0.0.1:0", handler)
        transports.append(transport)
        return transport
    yield start
    for transport in transports:
        transport.close()


@pytest.fixture
def server(serve, handler):
    return serve(handler)


@pytest.fixture
def client():
    transport = ThriftTransport(connect_timeout=1.0)
    yield transport
    transport.close()


@pytest.mark.parametrize("request_", SAMPLE_REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_type_is_answered_over_loopback(server, client, handler, request_):
    assert client.call(server.address, request_, timeout=5) == answer(request_)
    assert handler.received == [request_]


def test_not_leader_error_reaches_the_caller_with_the_leader(serve, client):
    def refuse(request):
        raise NotLeaderError("not the leader", leader="x:1")
    server = serve(FakeHandler(refuse))
    with pytest.raises(NotLeaderError) as raised:
        client.call(server.address, HEARTBEAT, timeout=5)
    assert raised.value.leader == "x:1"
    assert str(raised.value) == "not the leader (leader: x:1)"


def test_command_error_reaches_the_caller_with_its_error_type(serve, client):
    def fail(request):
        if isinstance(request, ForwardRequest):
            raise CommandError("division by zero", "ZeroDivisionError")
        return answer(request)
    server = serve(FakeHandler(fail))
    with pytest.raises(CommandError) as raised:
        client.call(server.address, ForwardRequest(ForwardKind.WRITE, b"cmd", 100), timeout=5)
    assert raised.value.error_type == "ZeroDivisionError"
    assert str(raised.value) == "ZeroDivisionError: division by zero"
    assert client.call(server.address, HEARTBEAT, timeout=5)   # the connection is still usable afterwards


def test_a_handler_bug_is_logged_and_the_caller_gets_rpc_error(serve, client, caplog):
    def crash(request):
        raise KeyError("oops")
    server = serve(FakeHandler(crash))
    with pytest.raises(RpcError, match="KeyError") as raised:
        client.call(server.address, TimeoutNow(1, "l"), timeout=5)
    assert type(raised.value) is RpcError
    logged = [r for r in caplog.records if r.name == TRANSPORT_LOGGER and r.levelno == logging.ERROR]
    assert logged and logged[0].exc_info is not None   # with its traceback


def test_a_plain_thrift_client_interoperates_and_gets_encoding_error_for_a_malformed_argument(server, handler):
    host, port = split_address(server.address)
    plain = make_client(CKiteService, host, port, proto_factory=TCyBinaryProtocolFactory(),
                        trans_factory=TCyFramedTransportFactory(), timeout=5000)
    try:
        reply = plain.sendRequestVote(T.RequestVoteST(memberId="c", term=3, lastLogIndex=0, lastLogTerm=0))
        assert (reply.currentTerm, reply.granted) == (3, True)
        with pytest.raises(T.CKiteErrorST) as raised:
            plain.sendRequestVote(T.RequestVoteST(memberId="c", term=-3, lastLogIndex=0, lastLogTerm=0))
        assert raised.value.errorClass == "EncodingError" and "term is negative" in raised.value.message
    finally:
        plain.close()
    assert len(handler.received) == 1   # the malformed request never reached the handler


def test_connection_refused_fails_fast_with_rpc_error(client):
    started = time.monotonic()
    with pytest.raises(RpcError, match=r"cannot connect to 127\.0\.0\.1"):
        client.call(f"127.0.0.1:{free_port()}", HEARTBEAT, timeout=10)
    assert time.monotonic() - started < 2


# --- hostile peers -------------------------------------------------------------------------------

def send_raw(address: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and return all the server sends back before closing it
    (an unanswered connection that stays open fails the test after ``timeout``)."""
    host, port = split_address(address)
    received = []
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(data)
        try:
            while chunk := raw.recv(65536):
                received.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(received)


def wait_for_log(caplog, level: int, text: str) -> logging.LogRecord:
    def found():
        return next((r for r in caplog.records
                     if r.name == TRANSPORT_LOGGER and r.levelno == level and text in r.getMessage()), None)
    return wait_for(found, 5, f"a log record containing {text!r}")


@pytest.mark.parametrize("length", [2 ** 31 - 1, 0, -5])
def test_a_frame_length_out_of_bounds_closes_only_that_connection(server, client, caplog, length):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    assert send_raw(server.address, struct.pack(">i", length)) == b""
    record = wait_for_log(caplog, logging.WARNING, f"frame length {length} is outside")
    assert "127.0.0.1:" in record.getMessage()   # names the peer
    assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


def test_a_frame_just_over_max_frame_bytes_is_rejected(serve, client, handler, caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    server = serve(handler, max_frame_bytes=4096)
    assert send_raw(server.address, struct.pack(">i", 4097) + b"\x00" * 4097) == b""
    wait_for_log(caplog, logging.WARNING, "frame length 4097 is outside 1..4096")
    big = ForwardRequest(ForwardKind.WRITE, b"x" * 4096, 100)   # its frame is a little over 4096 bytes
    with pytest.raises(RpcError):
        client.call(server.address, big, timeout=5)
    small = ForwardRequest(ForwardKind.WRITE, b"x" * 3900, 100)
    assert client.call(server.address, small, timeout=5) == answer(small)


@pytest.mark.parametrize("seed", range(5))
def test_garbage_bytes_close_the_connection_and_the_server_keeps_serving(server, client, handler, caplog, seed):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    garbage = random.Random(seed).randbytes(300)
    framed = struct.pack(">i", len(garbage)) + garbage
    assert send_raw(server.address, framed) == b""
    wait_for_log(caplog, logging.ERROR, "malformed frame")
    assert send_raw(server.address, b"\xde\xad" + garbage) == b""   # unframed: the "length" is negative
    wait_for_log(caplog, logging.WARNING, "is outside")
    assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)
    assert handler.received == [HEARTBEAT]


def call_frame_of(message: bytes) -> bytes:
    return struct.pack(">i", len(message)) + message


def call_frame(method: bytes, arguments: bytes) -> bytes:
    """A framed binary-protocol CALL of ``method`` whose argument struct holds ``arguments``."""
    return call_frame_of(struct.pack(">iI", -0x7FFEFFFF, len(method)) + method + struct.pack(">i", 0)   # seqid 0
                         + arguments + b"\x00")


def list_header(field_id: int, item_type: int, count: int) -> bytes:
    return struct.pack(">bhbi", 15, field_id, item_type, count)


NESTED = b"".join(struct.pack(">bh", 12, 1) for _ in range(100)) + b"\x00" * 100


@pytest.mark.parametrize("arguments, complaint", [
    # entries: list<LogEntryST> claiming 2**31-1 structs, then the frame ends. From a TCyMemoryBuffer
    # (which reads zeros past its end) thriftpy2 would build two billion empty structs.
    (struct.pack(">bh", 12, 1) + list_header(6, 12, 2 ** 31 - 1), "more than the frame holds"),
    # 2**31-1 elements of a type that takes no bytes: thriftpy2's skip loop would hold the GIL ~4 s.
    (struct.pack(">bh", 12, 1) + list_header(6, 0, 2 ** 31 - 1) + b"\x00", "unknown element type (0,)"),
    (struct.pack(">bh", 12, 1) + list_header(99, 7, 2 ** 31 - 1) + b"\x00", "unknown element type (7,)"),
    (struct.pack(">bh", 12, 1) + struct.pack(">bhbbi", 13, 99, 0, 1, 2 ** 31 - 1) + b"\x00",
     "unknown element type (0, 1)"),
    # ... and a list of 1000 such lists, which would multiply it.
    (struct.pack(">bh", 12, 1) + list_header(99, 15, 1000) + struct.pack(">bi", 0, 2 ** 31 - 1) * 1000 + b"\x00",
     "unknown element type (0,)"),
    (struct.pack(">bh", 12, 1) + NESTED, "nested deeper than 64"),
    (struct.pack(">bh", 12, 1) + struct.pack(">bhi", 11, 2, 10 ** 6) + b"\x00", "ends in the middle of a value"),
], ids=["lying-length", "zero-width", "unknown-type", "zero-width-map", "nested-lists", "deep", "truncated"])
def test_a_frame_whose_structure_would_stall_the_decoder_is_refused_at_once(server, client, caplog, arguments,
                                                                              complaint):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    started = time.monotonic()
    assert send_raw(server.address, call_frame(b"sendAppendEntries", arguments)) == b""
    wait_for_log(caplog, logging.ERROR, complaint)
    assert time.monotonic() - started < 1
    assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


def test_entries_in_another_valid_layout_are_still_accepted(server, handler):
    """A client that omits LogEntryST.kind (optional, default 0) takes the checker's general walk."""
    host, port = split_address(server.address)
    plain = make_client(CKiteService, host, port, proto_factory=TCyBinaryProtocolFactory(),
                        trans_factory=TCyFramedTransportFactory(), timeout=5000)
    try:
        entries = [T.LogEntryST(term=1, index=1, command=b"a", kind=None), T.LogEntryST(term=1, index=2, command=b"b")]
        reply = plain.sendAppendEntries(T.AppendEntriesST(term=1, leaderId="l", commitIndex=0, prevLogIndex=0,
                                                          prevLogTerm=0, entries=entries))
    finally:
        plain.close()
    assert (reply.success, reply.matchIndex) == (True, 2)
    assert handler.received[0].entries == [LogEntry(1, 1, b"a", EntryKind.COMMAND), LogEntry(2, 1, b"b")]


def test_random_mutations_of_a_valid_call_never_stall_the_server(server, client):
    """Each mutated call (its length kept) is answered or refused at once; the server serves on."""
    method, argument = encode_request(AppendEntries(5, "l:1", 10, 4, entries_of_every_kind(11, 20, size=8), 9))
    arguments = getattr(CKiteService, f"{method}_args")(argument)
    out = TCyMemoryBuffer()
    protocol = TCyBinaryProtocol(out)
    protocol.write_message_begin(method, 1, 0)
    arguments.write(protocol)
    valid = call_frame_of(out.getvalue())
    rng = random.Random(20240601)
    host, port = split_address(server.address)
    for _ in range(300):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)   # never the frame length
        started = time.monotonic()
        with socket.create_connection((host, port), timeout=2) as raw:
            raw.sendall(mutated)
            try:
                raw.recv(1)   # a reply, or b"" when the server closed the connection
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < 1
    assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


# --- time, concurrency, shutdown ------------------------------------------------------------------

def test_a_slow_handler_makes_the_call_fail_after_its_timeout(serve, client):
    release = threading.Event()

    def stall(request):
        release.wait(10)
        return answer(request)
    server = serve(FakeHandler(stall))
    started = time.monotonic()
    try:
        with pytest.raises(RpcError, match="no answer to sendAppendEntries within 0.300s"):
            client.call(server.address, HEARTBEAT, timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 1.5
    finally:
        release.set()
    assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


def test_concurrent_calls_from_eight_threads_all_succeed(server, client, handler):
    def calls(worker: int) -> list:
        requests = [AppendEntries(worker + 1, f"w{worker}", i, 1, [LogEntry(i + 1, 1, b"%d" % worker)], i)
                    for i in range(50)]
        return [(client.call(server.address, request, timeout=5), answer(request)) for request in requests]
    with ThreadPoolExecutor(8) as pool:
        results = [pair for result in pool.map(calls, range(8)) for pair in result]
    assert len(results) == 400 and all(got == expected for got, expected in results)
    assert len(handler.received) == 400


def test_a_restarted_peer_is_reached_through_a_fresh_connection(client, handler):
    binding = f"127.0.0.1:{free_port()}"
    for _ in range(2):   # the second call finds the pooled connection closed by the first server
        server = ThriftTransport()
        server.serve(binding, handler)
        try:
            assert client.call(binding, HEARTBEAT, timeout=5) == answer(HEARTBEAT)
        finally:
            server.close()


def ckite_threads(excluding=()) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ckite-") and t not in excluding]


def test_threads_are_named_and_close_stops_them_all(handler):
    before = set(threading.enumerate())
    server, client = ThriftTransport(), ThriftTransport()
    server.serve("127.0.0.1:0", handler)
    port = server.address.rpartition(":")[2]
    release = threading.Event()
    handler.behaviour = lambda request: (release.wait(10), answer(request))[1]
    failures = []

    def call_in_flight():
        try:
            client.call(server.address, HEARTBEAT, 10)
        except RpcError as exc:
            failures.append(exc)
    in_flight = threading.Thread(target=call_in_flight)
    in_flight.start()
    with socket.create_connection(split_address(server.address)):   # a connection that never sends anything
        wait_for(lambda: handler.received and len(ckite_threads(before)) == 3, 5,
                 "a call in the handler, the accept thread and two connection threads")
        assert sorted(ckite_threads(before)) == [f"ckite-{port}-rpc-accept", f"ckite-{port}-rpc-conn-1",
                                                 f"ckite-{port}-rpc-conn-2"]
        client.close()   # wakes the call in flight, which fails with RpcError
        in_flight.join(5)
        assert not in_flight.is_alive() and len(failures) == 1
        release.set()
        server.close()
        assert ckite_threads(before) == []
    server.close()   # idempotent
    client.close()
    with pytest.raises(RpcError, match="closed"):
        client.call(f"127.0.0.1:{port}", HEARTBEAT, 1)
    with pytest.raises(StoppedError):
        server.serve("127.0.0.1:0", handler)


def test_serving_a_busy_port_raises(server, handler):
    with pytest.raises(OSError):
        ThriftTransport().serve(server.address, handler)


# --- packaging ------------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_the_idl_ships_in_the_wheel(tmp_path):
    """Build a wheel offline from a copy of the tree, and load the IDL from the unzipped wheel only."""
    source, dist, unpacked, elsewhere = (tmp_path / name for name in ("src", "dist", "unpacked", "elsewhere"))
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "artifacts"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--quiet", "-w", str(dist), str(source)], capture_output=True, text=True, timeout=25)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("ckite-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        mode = archive.getinfo("ckite/rpc/ckite.thrift").external_attr >> 16
        assert mode == 0 or stat.S_ISREG(mode), oct(mode)   # not stored as a symlink
        assert "ckite/admin/static/console.html" in archive.namelist()   # the admin console ships too
        archive.extractall(unpacked)
    idl = unpacked / "ckite" / "rpc" / "ckite.thrift"
    assert idl.is_file() and not idl.is_symlink()
    elsewhere.mkdir()
    check = ("import sys, ckite.rpc.idl as idl; assert idl.__file__.startswith(sys.argv[1]), idl.__file__; "
             "print(sorted(idl.CKiteService.thrift_services))")
    loaded = subprocess.run([sys.executable, "-c", check, str(unpacked)], cwd=elsewhere, capture_output=True,
                            text=True, timeout=20, env={**os.environ, "PYTHONPATH": str(unpacked)})
    assert loaded.returncode == 0, loaded.stderr
    assert "sendTimeoutNow" in loaded.stdout
