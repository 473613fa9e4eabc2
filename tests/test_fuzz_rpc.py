"""Fuzzing a running member's Thrift port (hypothesis): random bytes, random requests and mutated
valid frames. The member never crashes and never hangs (every exchange ends within a bounded
time, and the member answers a probe after each one); an input it refuses changes nothing
(term, vote, role, leader and log compared before and after); and well-formed writes sent
through the same port alongside the hostile traffic all succeed.

The member listens on plain TCP, where any peer is trusted to speak Raft: an *accepted* frame
may legitimately change its state (a higher term, a fake leader's entries), so only refused
input is held to "changes nothing". Join requests, forwarded additions of a member and valid
configurations are not generated: without TLS a stranger may join or reconfigure the cluster,
which is what TLS is for.
"""
from __future__ import annotations

import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from thriftpy2.protocol.cybin import TCyBinaryProtocol
from thriftpy2.transport.memory import TCyMemoryBuffer

from ckite import CKite, CKiteBuilder
from ckite.codec import decode_value, encode_command
from ckite.log.entry import EntryKind, LogEntry
from ckite.messages import (
    AppendEntries,
    ForwardKind,
    ForwardRequest,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ckite.rpc.idl import CKiteService
from ckite.rpc.thrift_transport import ThriftTransport
from ckite.rpc.validation import MAX_POSITION
from tests.frames import call_frame, exchange, fingerprint
from tests.kv_example import Get, KVStore, Put
from tests.netutil import free_port
from tests.waiting import wait_for

#: Bounds every exchange: a member that neither answers nor closes within it is hung.
EXCHANGE_TIMEOUT = 3.0
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_REPLY, _EXCEPTION = 2, 3


# --- the member -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def member():
    member = (CKiteBuilder().with_local_binding(f"127.0.0.1:{free_port()}")
              .with_min_election_timeout(150).with_max_election_timeout(300).with_heartbeats_interval(50)
              .with_in_memory_storage().with_state_machine(KVStore()).with_write_timeout(5000)
              .with_read_timeout(5000).with_leader_timeout(5000).without_admin().build())
    member.start()
    wait_for(member.is_leader, 10, "the single member to lead")
    member.write(Put("seed", "value"), timeout=5)
    yield member
    member.stop()


@pytest.fixture(scope="module")
def prober():
    transport = ThriftTransport(connect_timeout=EXCHANGE_TIMEOUT)
    yield transport
    transport.close()


def settled(member: CKite) -> dict:
    """Wait until the member leads with everything applied (a leader of one changes nothing by itself
    then), and return its fingerprint."""
    def quiet():
        status = fingerprint(member)
        log = status["log"]
        return status if (status["state"] == "Leader" and log["commitIndex"] == log["lastIndex"]
                          == log["lastApplied"]) else None
    return wait_for(quiet, 10, "the member to lead again with everything applied")


def probe(prober: ThriftTransport, member: CKite) -> None:
    """A pre-vote changes nothing; an answer proves the port serves."""
    response = prober.call(member.id, RequestVote(0, "probe:1", 0, 0, pre_vote=True), timeout=EXCHANGE_TIMEOUT)
    assert isinstance(response, RequestVoteResponse)


def replies(data: bytes) -> list[str]:
    """Each reply frame in ``data`` as "refused" (a Thrift exception, or ckite's EncodingError),
    "failed" (another ckite error) or "answered"; fails the test on bytes that are no reply, and on
    the error the server returns when its handler raised something unexpected (a bug)."""
    outcomes = []
    while data:
        length, = struct.unpack_from(">i", data)
        message, data = data[4:4 + length], data[4 + length:]
        protocol = TCyBinaryProtocol(TCyMemoryBuffer(message))
        name, kind, _ = protocol.read_message_begin()
        if kind == _EXCEPTION:
            outcomes.append("refused")
            continue
        assert kind == _REPLY, f"a reply of message type {kind}"
        result = getattr(CKiteService, f"{name}_result")()
        result.read(protocol)
        if result.error is not None:
            error = result.error
            assert not (error.errorClass == "RpcError" and f"{name} failed on " in error.message), \
                f"the handler failed (a bug): {error.message}"
            outcomes.append("refused" if error.errorClass == "EncodingError" else "failed")
        else:
            outcomes.append("answered")
    return outcomes


def throw(member: CKite, prober: ThriftTransport, frame: bytes) -> list[str]:
    """Send ``frame`` to the settled member; check that a refusal changed nothing and that it serves on."""
    before = settled(member)
    started = time.monotonic()
    try:
        outcomes = replies(exchange(member.id, frame, timeout=EXCHANGE_TIMEOUT))
    except TimeoutError:
        pytest.fail(f"the member neither answered nor closed the connection within {EXCHANGE_TIMEOUT}s")
    assert time.monotonic() - started < EXCHANGE_TIMEOUT
    event("+".join(outcomes) or "closed")
    if all(outcome == "refused" for outcome in outcomes):   # also: no reply at all (the connection was closed)
        assert fingerprint(member) == before
    probe(prober, member)
    return outcomes


# --- strategies -------------------------------------------------------------------------------------

i64 = st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.sampled_from([0, 1, 2, 3, MAX_POSITION, MAX_POSITION + 1,
                                                                     2 ** 63 - 1, -1, -2 ** 63]))
small = st.integers(0, 8)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
ids = st.one_of(text, st.just("leader:9091"))
junk = st.binary(max_size=40)
entry_kinds = st.sampled_from([EntryKind.COMMAND, EntryKind.NOOP, EntryKind.CONFIGURATION])


@st.composite
def log_entries(draw) -> list[LogEntry]:
    """Contiguous entries (mostly) with junk or real command data; configurations are junk, never valid."""
    first = draw(st.one_of(small, i64))
    terms = draw(st.lists(st.one_of(small, i64), max_size=5))
    entries = []
    for offset, term in enumerate(terms):
        kind = draw(entry_kinds)
        data = draw(st.one_of(junk, st.builds(lambda k, v: encode_command(Put(k, v)), text, text))
                    if kind is not EntryKind.CONFIGURATION else junk)
        index = first + offset if draw(st.booleans()) and first + offset < 2 ** 63 else draw(i64)
        entries.append(LogEntry(index, term, data, kind))
    return entries


requests = st.one_of(
    st.builds(RequestVote, st.one_of(small, i64), ids, st.one_of(small, i64), st.one_of(small, i64), st.booleans(),
              st.booleans()),
    st.builds(AppendEntries, st.one_of(small, i64), ids, st.one_of(small, i64), st.one_of(small, i64), log_entries(),
              st.one_of(small, i64)),
    st.builds(InstallSnapshot, st.one_of(small, i64), ids, st.one_of(small, i64), st.one_of(small, i64), junk,
              st.one_of(small, i64), junk, st.booleans()),
    st.builds(TimeoutNow, st.one_of(small, i64), ids),
    st.builds(ForwardRequest, st.sampled_from([kind for kind in ForwardKind if kind is not ForwardKind.CHANGE_MEMBERS]),
              st.one_of(junk, text.map(str.encode), st.builds(lambda k, v: encode_command(Put(k, v)), text, text)),
              st.one_of(st.integers(0, 100), i64)),
    st.builds(ForwardRequest, st.just(ForwardKind.CHANGE_MEMBERS),
              junk.map(lambda payload: b"\xc1" + payload),   # 0xc1: never valid msgpack, so never a real change
              st.integers(0, 100)),
)


@st.composite
def mutated_frames(draw) -> bytes:
    """A valid call, then a few byte-level mutations; the length header fixed up or not."""
    frame = bytearray(call_frame(draw(requests), seqid=draw(st.integers(-2 ** 31, 2 ** 31 - 1))))
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["set", "flip", "insert", "delete", "truncate", "duplicate", "int32"]))
        position = draw(st.integers(4, max(len(frame) - 1, 4)))
        if operation == "set" and position < len(frame):
            frame[position] = draw(st.integers(0, 255))
        elif operation == "flip" and position < len(frame):
            frame[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "delete":
            del frame[position:position + draw(st.integers(1, 8))]
        elif operation == "truncate":
            del frame[position:]
        elif operation == "duplicate":
            frame[position:position] = frame[position:position + draw(st.integers(1, 16))]
        elif operation == "int32" and position + 4 <= len(frame):   # a length or count gone wild
            frame[position:position + 4] = struct.pack(">i", draw(st.sampled_from(
                [-1, 0, 1, 2 ** 31 - 1, -2 ** 31, 10_000, 10_001, 65_536])))
    if draw(st.integers(0, 3)):   # mostly: a length that matches, so that the mutation reaches the decoder
        frame[:4] = struct.pack(">i", len(frame) - 4)
    return bytes(frame)


# --- the tests --------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@FUZZ
@given(data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=300).map(lambda body: struct.pack(">i", len(body)) + body)))
def test_random_bytes_are_refused_and_change_nothing(member, prober, data):
    assert all(outcome == "refused" for outcome in throw(member, prober, data))


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=400)
@given(request=requests)
def test_random_requests_are_answered_or_refused_and_a_refusal_changes_nothing(member, prober, request):
    throw(member, prober, call_frame(request))


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=600)
@given(frame=mutated_frames())
def test_mutated_valid_frames_never_crash_or_hang_the_member(member, prober, frame):
    throw(member, prober, frame)


@st.composite
def invalid_frames(draw) -> bytes:
    """Frames a member must refuse: random bytes, or a request made invalid on purpose."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return call_frame(AppendEntries(MAX_POSITION + draw(st.integers(1, 2 ** 62 - 1)), "evil:1", 0, 0))
    if choice == 2:   # a gap in the indexes
        return call_frame(AppendEntries(draw(st.integers(1, 5)), "evil:1", 0, 0,
                                        [LogEntry(1, 1, b""), LogEntry(3, 1, b"")]))
    return call_frame(RequestVote(draw(st.integers(0, 9)), "evil:1", 0, draw(st.integers(10, 99))))


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=invalid_frames())
def throw_refused(member: CKite, frame: bytes) -> None:
    """Run by the next test while writes flow: no settling between frames, every frame refused."""
    try:
        outcomes = replies(exchange(member.id, frame, timeout=EXCHANGE_TIMEOUT))
    except TimeoutError:
        pytest.fail(f"the member neither answered nor closed the connection within {EXCHANGE_TIMEOUT}s")
    assert all(outcome == "refused" for outcome in outcomes)


@pytest.mark.timeout(60)
def test_well_formed_writes_through_the_port_succeed_while_hostile_frames_arrive(member):
    """Writes forwarded over Thrift (as a follower would) alongside refused hostile frames: every
    write is applied exactly as sent, and the hostile traffic moves nothing (the term stays)."""
    start = settled(member)
    stop = threading.Event()
    written: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    def writer() -> None:
        client = ThriftTransport()
        try:
            while not stop.is_set():
                key, value = f"alongside-{len(written)}", f"value-{len(written)}"
                response = client.call(member.id, ForwardRequest(ForwardKind.WRITE, encode_command(Put(key, value)),
                                                                 5000), timeout=6)
                assert decode_value(response.result) == value
                written.append((key, value))
        except BaseException as exc:   # reported by the test's thread
            failures.append(exc)
        finally:
            client.close()
    thread = threading.Thread(target=writer, name="fuzz-writer")
    thread.start()
    try:
        throw_refused(member)
        wait_for(lambda: len(written) >= 10 or failures, 10, "ten writes")   # on a slow machine too
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures
    assert fingerprint(member)["term"] == start["term"]
    for key, value in written:
        assert member.read_local(Get(key)) == value
