"""Fuzzing the admin and key-value HTTP server (hypothesis) over real sockets: random requests on
ckite's and kvstore's routes (methods, percent-encoded bytes in keys and values, bodies, headers,
right, wrong and missing tokens) and raw bytes that are not HTTP at all.

The server never fails (no 500: every bad input is the client's error, 4xx), never hangs (each
exchange ends within a bounded time and the server then answers /status), a refused request
(4xx, or a closed connection) changes nothing (log, term and the store compared before and
after; a CAS that finds another value and a delete of an absent key are commands, which add to
the log but not to the data), and writes with the token keep working alongside. Membership routes are only fuzzed
without the right token: with it, adding a random member to this one-member cluster would
legitimately take its quorum away.
"""
from __future__ import annotations

import socket
import threading
import urllib.parse

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ckite import CKite, CKiteBuilder
from ckite.admin import AdminServer, build_admin
from ckite.rpc.local import LocalNetwork
from kvstore.http import kv_blueprint
from kvstore.store import Get, KVStore
from tests.waiting import wait_for

TOKEN = "fuzz-token-0123456789"
BINDING = "localhost:9391"
MAX_VALUE = 1024
EXCHANGE_TIMEOUT = 5.0
#: A compare-and-set that finds another value (409) and a delete of an absent key (404) are commands
#: that went through the log: the log grows, the data does not change. Any other 4xx changes nothing.
EXECUTED_BUT_NOT_APPLIED = {404, 409}
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def store():
    return KVStore()


@pytest.fixture(scope="module")
def member(store):
    member = (CKiteBuilder().with_local_binding(BINDING).with_min_election_timeout(150)
              .with_max_election_timeout(300).with_heartbeats_interval(50).with_in_memory_storage()
              .with_transport(LocalNetwork().transport(BINDING)).with_state_machine(store)
              .with_write_timeout(5000).with_read_timeout(5000).with_leader_timeout(5000).without_admin().build())
    member.start()
    wait_for(member.is_leader, 10, "the single member to lead")
    yield member
    member.stop()


@pytest.fixture(scope="module")
def admin(member) -> AdminServer:
    admin = build_admin(member, "127.0.0.1", 0, token=TOKEN)
    admin.app.register_blueprint(kv_blueprint(member, max_value_bytes=MAX_VALUE))
    admin.start()
    yield admin
    admin.stop()


def fingerprint(member: CKite, store: KVStore) -> tuple:
    status = member.status()
    log = status["log"]
    return status["term"], log["lastIndex"], log["commitIndex"], dict(store.data), sorted(member.members)


def settled(member: CKite, store: KVStore) -> tuple:
    def quiet():
        status = member.status()
        log = status["log"]
        return status["state"] == "Leader" and log["commitIndex"] == log["lastIndex"] == log["lastApplied"]
    wait_for(quiet, 10, "the member to lead with everything applied")
    return fingerprint(member, store)


def http_exchange(admin: AdminServer, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection and read until the server closes it (bounded)."""
    received = []
    with socket.create_connection(("127.0.0.1", admin.port), timeout=EXCHANGE_TIMEOUT) as connection:
        try:
            connection.sendall(raw)
            connection.shutdown(socket.SHUT_WR)
            while chunk := connection.recv(65536):
                received.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            pytest.fail(f"the admin server neither answered nor closed within {EXCHANGE_TIMEOUT}s")
    return b"".join(received)


def status_of(response: bytes) -> int | None:
    """The status code of the first response, None when the server closed without one."""
    if not response:
        return None
    line = response.split(b"\r\n", 1)[0].split(b" ")
    assert line[0].startswith(b"HTTP/1."), response[:200]
    return int(line[1])


def request_bytes(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items()), f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def assert_serving(admin: AdminServer) -> None:
    assert status_of(http_exchange(admin, request_bytes("GET", "/status", {}, b""))) == 200


# --- strategies -------------------------------------------------------------------------------------

segment = st.one_of(
    st.binary(max_size=12).map(lambda raw: urllib.parse.quote_from_bytes(raw, safe="")),   # any bytes, escaped
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(lambda t: urllib.parse.quote(t, safe="")),
    st.sampled_from(["", "k", "seed", "%FF", "%C3%28", "%ED%A0%80", "..", "%2F", "a%00b", "x" * 1100]),
)
bindings = st.one_of(segment, st.sampled_from(["localhost:9999", "host:99999", ",", "localhost:9391"]))
auth = st.sampled_from([None, f"Bearer {TOKEN}", "Bearer wrong", "Basic abc", "Bearer", f"bearer {TOKEN}",
                        f"Bearer {TOKEN}\u00e9"])
bodies = st.one_of(st.binary(max_size=64), st.just(b"x" * (MAX_VALUE + 1)),
                   st.sampled_from([b'{"expected": null, "new": "v"}', b'{"expected": "\\ud800", "new": "v"}',
                                    b'{"expected": 1, "new": []}', b"[]", b"null", b'{"new": "\\udfff"}']))


@st.composite
def kv_requests(draw) -> tuple[str, str, dict[str, str], bytes]:
    """A request on one of the routes, with the token (maybe) — never the right token on membership routes."""
    route = draw(st.sampled_from(["put", "get", "cas3", "kv", "cas", "members", "changecluster", "status",
                                  "metrics", "other"]))
    methods = {"kv": ["GET", "PUT", "DELETE"], "cas": ["POST"], "members": ["POST", "DELETE"]}.get(route, ["GET"])
    method = draw(st.one_of(st.sampled_from(methods), st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE",
                                                                       "PATCH", "OPTIONS", "BREW"])))
    key, value, other = draw(segment), draw(segment), draw(segment)
    target = {"put": f"/put/{key}/{value}", "get": f"/get/{key}", "cas3": f"/cas/{key}/{value}/{other}",
              "kv": f"/kv/{key}", "cas": f"/cas/{key}", "members": f"/members/{draw(bindings)}",
              "changecluster": f"/changecluster/{draw(bindings)}", "status": "/status", "metrics": "/metrics",
              "other": f"/{key}/{value}"}[route]
    if draw(st.booleans()):
        target += "?" + draw(st.sampled_from(["local=true", "local=%FF", "a=b&c", "=="]))
    headers = {}
    authorization = draw(st.one_of(st.just(f"Bearer {TOKEN}"), auth))
    if route in ("members", "changecluster") and authorization is not None and TOKEN in authorization:
        authorization = "Bearer wrong"
    if authorization is not None:
        headers["Authorization"] = authorization
    if not draw(st.integers(0, 3)):
        headers["Sec-Fetch-Site"] = draw(st.sampled_from(["cross-site", "same-origin", "none", "CROSS-SITE"]))
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain; charset=latin-1",
                                                        "multipart/form-data; boundary=x", "\u00e9"]))
    return method, target, headers, draw(bodies)


# --- the tests --------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@FUZZ
@given(request=kv_requests())
def test_random_requests_never_fail_the_server_and_refusals_change_nothing(member, store, admin, request):
    before = settled(member, store)
    status = status_of(http_exchange(admin, request_bytes(*request)))
    event(f"status {status}")
    assert status is None or status < 500, f"the server failed on {request!r}"
    if status is None or status >= 400:
        after = fingerprint(member, store)
        if status in EXECUTED_BUT_NOT_APPLIED:
            assert after[3] == before[3]   # the data
        else:
            assert after == before
    assert_serving(admin)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=150)
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda junk: b"GET /put/k/v HTTP/1.1\r\n" + junk + b"\r\n\r\n"),
    st.binary(max_size=200).map(lambda junk: b"GET /put/k/v HTTP/1.1\r\nHost: x\r\n" + junk.replace(b"\r", b"")
                                + b": v\r\n\r\n"),
    st.binary(max_size=200).map(lambda junk: b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n" + junk),
    st.binary(max_size=100).map(lambda junk: b"POST /cas/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + junk),
    st.binary(min_size=1, max_size=40).map(lambda junk: junk + b" /status HTTP/1.1\r\n\r\n"),
))
def test_bytes_that_are_not_http_are_refused_and_change_nothing(member, store, admin, raw):
    before = settled(member, store)
    status = status_of(http_exchange(admin, raw))
    event(f"status {status}")
    assert status is None or 400 <= status < 500
    assert fingerprint(member, store) == before
    assert_serving(admin)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=kv_requests())
def throw_requests(admin: AdminServer, request) -> None:
    status = status_of(http_exchange(admin, request_bytes(*request)))
    assert status is None or status < 500, f"the server failed on {request!r}"


@pytest.mark.timeout(60)
def test_writes_with_the_token_keep_working_alongside_random_requests(member, store, admin):
    stop = threading.Event()
    written: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                key, value = f"alongside-{len(written)}", f"value {len(written)} \u00e9"
                response = http_exchange(admin, request_bytes("PUT", f"/kv/{key}", {"Authorization": f"Bearer {TOKEN}"},
                                                              value.encode()))
                assert status_of(response) == 200, response
                written.append((key, value))
        except BaseException as exc:   # reported by the test's thread
            failures.append(exc)
    thread = threading.Thread(target=writer, name="fuzz-http-writer")
    thread.start()
    try:
        throw_requests(admin)
        wait_for(lambda: len(written) >= 10 or failures, 10, "ten writes")   # on a slow machine too
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures
    for key, value in written:
        assert member.read(Get(key), timeout=5) == value
