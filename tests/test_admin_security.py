"""The admin server's access control (bearer token on the mutating routes, cross-site refusal) and
the kvstore routes' input checks (UTF-8): a refused request is 401/403/400 and changes nothing."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from ckite import CKite, CKiteBuilder
from ckite.admin import build_admin
from ckite.admin.auth import checked_token
from ckite.rpc.local import LocalNetwork
from kvstore.cli import build as build_from_flags
from kvstore.cli import parser
from kvstore.http import kv_blueprint
from kvstore.store import Get, KVStore
from tests.netutil import free_port
from tests.waiting import wait_for

TOKEN = "0123456789abcdef-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BINDING = "localhost:9191"

#: Every route that changes something: (method, path, body).
MUTATING = [
    ("GET", "/put/k/new", None),
    ("HEAD", "/put/k/new", None),
    ("GET", "/cas/k/v/new", None),
    ("PUT", "/kv/k", b"new"),
    ("DELETE", "/kv/k", None),
    ("POST", "/cas/k", b'{"expected": "v", "new": "new"}'),
    ("POST", "/members/localhost:9999", None),
    ("DELETE", "/members/localhost:9191", None),
    ("GET", "/changecluster/localhost:9191,localhost:9999", None),
]
#: Routes that only read, open with or without a token.
READING = ["/status", "/get/k", "/kv/k", "/metrics", "/cluster/status", "/console/config", "/"]


@pytest.fixture(scope="module")
def member():
    member = (CKiteBuilder().with_local_binding(BINDING).with_min_election_timeout(150)
              .with_max_election_timeout(300).with_heartbeats_interval(50).with_in_memory_storage()
              .with_transport(LocalNetwork().transport(BINDING)).with_state_machine(KVStore())
              .with_write_timeout(3000).with_leader_timeout(3000).without_admin().with_metrics().build())
    member.start()
    wait_for(lambda: member.status()["state"] == "Leader", 10, "the single member to lead")
    yield member
    member.stop()


def client_for(member: CKite, token: str | None):
    admin = build_admin(member, "127.0.0.1", 0, token=token)
    admin.app.register_blueprint(kv_blueprint(member))
    return admin.app.test_client()


@pytest.fixture(scope="module")
def guarded(member):
    return client_for(member, TOKEN)


@pytest.fixture(scope="module")
def open_admin(member):
    return client_for(member, None)


@pytest.fixture(autouse=True)
def known_state(member, guarded):
    assert guarded.put("/kv/k", data=b"v", headers=AUTH).status_code == 200


def state_of(member: CKite) -> tuple:
    status = member.status()
    return status["log"]["lastIndex"], status["term"], member.read_local(Get("k")), sorted(member.members)


def send(client, method: str, path: str, body: bytes | None, headers: dict | None = None):
    return client.open(path, method=method, data=body, headers=headers or {})


@pytest.mark.parametrize("method, path, body", MUTATING, ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong-token"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": "Bearer t\u00f6ken"}, 403),
], ids=["none", "wrong", "longer", "basic", "empty", "latin-1"])
def test_a_mutating_route_without_the_right_token_is_refused_and_changes_nothing(member, guarded, method, path, body,
                                                                                 headers, status):
    before = state_of(member)
    response = send(guarded, method, path, body, headers)
    assert response.status_code == status
    if method != "HEAD":
        assert "error" in response.get_json()
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert state_of(member) == before


@pytest.mark.parametrize("path", READING)
def test_read_routes_stay_open_when_a_token_is_set(guarded, path):
    assert guarded.get(path).status_code == 200


@pytest.mark.parametrize("method, path, body", [m for m in MUTATING if "members" not in m[1] and "change" not in m[1]],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_the_right_token_lets_writes_through(member, guarded, method, path, body):
    response = send(guarded, method, path, body, AUTH)
    assert response.status_code == 200, response.data
    if method in ("GET", "HEAD", "PUT") or path.startswith("/cas"):
        assert member.read_local(Get("k")) == "new"


def test_the_scheme_is_case_insensitive(guarded):
    assert guarded.put("/kv/k", data=b"x", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_membership_routes_with_the_token_reach_the_library(guarded, member):
    response = guarded.get(f"/changecluster/{BINDING}", headers=AUTH)   # the current members: no change
    assert response.status_code == 200 and response.get_json()["members"] == [BINDING]


def test_unknown_routes_are_404_not_401(guarded):
    assert guarded.post("/nowhere").status_code == 404
    assert guarded.put("/status").status_code == 405


@pytest.mark.parametrize("method, path, body", MUTATING[:6], ids=lambda v: v if isinstance(v, str) else None)
def test_without_a_token_writes_are_open_but_cross_site_requests_are_refused(member, open_admin, method, path, body):
    before = state_of(member)
    response = send(open_admin, method, path, body, {"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert state_of(member) == before
    assert send(open_admin, method, path, body, {"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_a_cross_site_request_is_refused_even_with_the_token(member, guarded):
    before = state_of(member)
    assert guarded.get("/put/k/new", headers={**AUTH, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert state_of(member) == before
    assert guarded.get("/get/k", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200   # reads stay open


@pytest.mark.parametrize("token", ["", "two words", "t\u00f6ken", "tab\there", None])
def test_an_unusable_token_is_refused_at_configuration(token):
    with pytest.raises(ValueError, match="admin token"):
        checked_token(token)
    with pytest.raises(ValueError, match="admin token"):
        CKiteBuilder().with_admin_token(token)


@pytest.mark.timeout(30)
def test_the_builder_and_the_cli_wire_the_token_into_a_served_admin(tmp_path, monkeypatch):
    """Over real HTTP: the token comes from CKITE_ADMIN_TOKEN when the flag is absent."""
    monkeypatch.setenv("CKITE_ADMIN_TOKEN", TOKEN)
    port, admin_port = free_port(), free_port()
    args = parser().parse_args(["--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
                                "--data-dir", str(tmp_path), "--min-election-timeout", "150",
                                "--max-election-timeout", "300", "--heartbeat-interval", "50"])
    member = build_from_flags(args)
    member.start()
    try:
        base = f"http://127.0.0.1:{admin_port}"
        wait_for(lambda: member.is_leader(), 10, "the single member to lead")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/put/a/b", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(f"{base}/put/a/b", headers=AUTH)
        assert urllib.request.urlopen(request, timeout=5).status == 200
        assert urllib.request.urlopen(f"{base}/get/a", timeout=5).status == 200
    finally:
        member.stop()


def test_cli_tls_flags_go_together(tmp_path):
    args = parser().parse_args(["--port", "9191", "--data-dir", str(tmp_path), "--tls-cert", "a.pem",
                                "--tls-ca", "ca.pem"])
    with pytest.raises(ValueError, match="go together; missing: --tls-key"):
        build_from_flags(args)


# --- UTF-8 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/get/%FF"), ("GET", "/put/%C3%28/v"), ("GET", "/put/k/%80"), ("PUT", "/kv/a%ED%A0%80b"),
    ("GET", "/kv/%FE%FF"), ("DELETE", "/kv/%C0%AF"), ("GET", "/cas/k/%FF/x"),
])
def test_keys_and_values_in_the_url_must_be_utf8(member, guarded, method, path):
    before = state_of(member)
    response = guarded.open(path, method=method, data=b"v", headers=AUTH)
    assert response.status_code == 400
    assert "not valid UTF-8" in response.get_json()["error"]
    assert state_of(member) == before


def test_a_utf8_key_is_fine(guarded):
    response = guarded.get("/put/%E2%82%AC/%F0%9F%99%82", headers=AUTH)
    assert response.get_json() == {"key": "\u20ac", "value": "\U0001F642"}
    assert guarded.get("/get/%E2%82%AC").get_json()["value"] == "\U0001F642"


@pytest.mark.parametrize("body", [b'{"expected": "v", "new": "\\ud800"}', b'{"expected": "\\udfff", "new": "x"}'])
def test_a_lone_surrogate_in_a_json_value_is_400_not_500(member, guarded, body):
    before = state_of(member)
    response = guarded.post("/cas/k", data=body, headers=AUTH)
    assert response.status_code == 400 and "lone surrogate" in response.get_json()["error"]
    assert state_of(member) == before


# --- request bodies -----------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_waitress_refuses_a_body_over_the_limit_before_any_route_runs(member):
    """waitress buffers a whole body before the token check: its limit bounds what a stranger can send."""
    admin = build_admin(member, "127.0.0.1", 0, token=TOKEN)
    admin.app.register_blueprint(kv_blueprint(member))
    admin.max_request_body_bytes = 1000
    admin.start()
    try:
        for length in (1001, 10 ** 9):
            with socket.create_connection(("127.0.0.1", admin.port), timeout=5) as connection:
                connection.sendall(f"PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
                                   + b"x" * 1001)
                assert connection.recv(200).startswith(b"HTTP/1.1 413")
    finally:
        admin.stop()


def test_the_cli_raises_the_body_limit_to_fit_its_values(tmp_path):
    args = parser().parse_args(["--port", str(free_port()), "--data-dir", str(tmp_path),
                                "--max-value-bytes", str(20 * 1024 * 1024)])
    member = build_from_flags(args)
    assert member.admin.max_request_body_bytes == 40 * 1024 * 1024 + 1024
