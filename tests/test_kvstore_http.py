"""kvstore's routes and ckite's admin routes, through Flask's test client, on real in-process
members (the in-process transport, in-memory storage): every route, every error status."""
from __future__ import annotations

import errno
import http.client
import io
import socket
import threading

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from waitress.trigger import trigger as WaitressTrigger

from ckite import CKite, CKiteBuilder
from ckite.admin import AdminServer, build_admin
from ckite.admin.cluster import ClusterStatusFetcher, fetch_json
from ckite.admin.dispatch import pool_of
from ckite.admin.errors import install_error_handlers
from ckite.errors import (
    CommandError,
    IdempotencyKeyReusedError,
    LeaderTimeoutError,
    LostLeadershipError,
    NotLeaderError,
    SessionExpiredError,
    WriteInterruptedError,
    WriteTimeoutError,
)
from ckite.rpc.local import LocalNetwork
from kvstore.cli import parser
from kvstore.http import MAX_KEY_BYTES, kv_blueprint
from kvstore.store import KVStore
from tests.waiting import wait_for

BINDING = "localhost:9091"
MAX_VALUE = 64   # small, so that "too large" is cheap to send


def build_member(binding: str, others: list[str], network: LocalNetwork, timeout_ms: int = 3000) -> CKite:
    return (CKiteBuilder().with_local_binding(binding).with_members_bindings(others)
            .with_min_election_timeout(150).with_max_election_timeout(300).with_heartbeats_interval(50)
            .with_leader_timeout(timeout_ms).with_write_timeout(timeout_ms).with_read_timeout(timeout_ms)
            .with_in_memory_storage().with_transport(network.transport(binding))
            .with_state_machine(KVStore()).without_admin().with_metrics().build())


def admin_for(member: CKite, **options) -> AdminServer:
    admin = build_admin(member, "127.0.0.1", 0, **options)
    admin.app.register_blueprint(kv_blueprint(member, max_value_bytes=MAX_VALUE))
    return admin


@pytest.fixture(scope="module")
def member():
    """A one-member cluster: it elects itself at once, so every write commits locally."""
    member = build_member(BINDING, [], LocalNetwork())
    member.start()
    wait_for(lambda: member.status()["state"] == "Leader", 10, "the single member to lead")
    yield member
    member.stop()


@pytest.fixture(scope="module")
def admin(member):
    admin = admin_for(member)
    yield admin
    admin.stop()


@pytest.fixture()
def client(admin):
    return admin.app.test_client()


@pytest.fixture(scope="module")
def leaderless():
    """A member of a two-member cluster whose peer never starts: no leader, ever."""
    network = LocalNetwork()
    member = build_member("localhost:9092", ["localhost:9093"], network, timeout_ms=200)
    member.start()
    admin = admin_for(member)
    yield admin.app.test_client()
    admin.stop()
    member.stop()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.data
    assert response.is_json, response.data
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    return body


# --- CKite's GET routes ---------------------------------------------------------------------------

def test_put_then_get_as_in_ckite_readme(client):
    response = client.get("/put/key1/value1")
    assert response.status_code == 200
    assert response.get_json() == {"key": "key1", "value": "value1"}
    assert client.get("/get/key1").get_json() == {"key": "key1", "value": "value1"}
    assert client.get("/get/key1?local=true").get_json() == {"key": "key1", "value": "value1"}


def test_get_of_an_absent_key_is_404_with_the_key(client):
    assert error_of(client.get("/get/never-written"), 404)["key"] == "never-written"
    assert error_of(client.get("/get/never-written?local=true"), 404)["key"] == "never-written"


def test_compare_and_set_swaps_only_the_expected_value(client):
    client.get("/put/cas1/old")
    assert client.get("/cas/cas1/old/new").get_json() == {"key": "cas1", "value": "new", "swapped": True}
    body = error_of(client.get("/cas/cas1/old/newer"), 409)
    assert (body["value"], body["expected"]) == ("new", "old")
    assert client.get("/get/cas1").get_json()["value"] == "new"


# --- REST routes ---------------------------------------------------------------------------------

def test_rest_put_and_get_carry_any_bytes(client):
    blob = bytes(range(256))[-MAX_VALUE:]   # not UTF-8
    assert client.put("/kv/blob", data=blob).get_json() == {"key": "blob", "length": len(blob)}
    response = client.get("/kv/blob")
    assert (response.status_code, response.data, response.mimetype) == (200, blob, "application/octet-stream")
    assert client.get("/get/blob").get_json()["value"]["base64"]


def test_rest_text_values_come_back_as_text(client):
    client.put("/kv/greeting", data="héllo".encode())
    response = client.get("/kv/greeting?local=true")
    assert response.data.decode() == "héllo" and response.mimetype == "text/plain"
    assert client.get("/get/greeting").get_json()["value"] == "héllo"


def test_rest_keys_may_contain_slashes(client):
    client.put("/kv/dir/sub/key", data=b"x")
    assert client.get("/kv/dir%2Fsub/key").data == b"x"


def test_rest_delete_returns_the_previous_value_then_404(client):
    client.put("/kv/gone", data=b"bye")
    assert client.delete("/kv/gone").get_json() == {"key": "gone", "deleted": True, "previous": "bye"}
    error_of(client.get("/kv/gone"), 404)
    error_of(client.delete("/kv/gone"), 404)


def test_rest_compare_and_set(client):
    assert client.post("/cas/rest-cas", json={"expected": None, "new": "first"}).status_code == 200
    assert client.post("/cas/rest-cas", json={"expected": "first", "new": "second"}).get_json()["swapped"] is True
    body = error_of(client.post("/cas/rest-cas", json={"expected": None, "new": "third"}), 409)
    assert body["value"] == "second" and body["expected"] is None
    assert client.get("/kv/rest-cas").data == b"second"


@pytest.mark.parametrize("body", [b"not json", b'["a"]', b'{"new": "x"}', b'{"expected": 1, "new": "x"}',
                                  b'{"expected": "a", "new": null}'])
def test_rest_compare_and_set_rejects_a_malformed_body(client, body):
    error_of(client.post("/cas/rest-cas-bad", data=body, content_type="application/json"), 400)


# --- increments and idempotency keys --------------------------------------------------------------

def test_incr_adds_to_an_integer_value_and_a_missing_key_counts_as_0(client):
    assert client.post("/incr/counter-a").get_json() == {"key": "counter-a", "value": "1"}
    assert client.post("/incr/counter-a?by=41").get_json() == {"key": "counter-a", "value": "42"}
    assert client.post("/incr/counter-a?by=-2").get_json() == {"key": "counter-a", "value": "40"}
    client.put("/kv/not-a-number", data=b"seven")
    body = error_of(client.post("/incr/not-a-number"), 409)
    assert body["value"] == "seven" and client.get("/kv/not-a-number").data == b"seven"   # unchanged
    for bad in ("x", "1.5", "", str(10 ** 16)):
        error_of(client.post(f"/incr/counter-a?by={bad}"), 400)


def test_a_retry_under_the_same_idempotency_key_gets_the_first_answer_and_applies_once(client):
    first = client.post("/incr/counter-b", headers={"Idempotency-Key": "incr-b-1"})
    again = client.post("/incr/counter-b", headers={"Idempotency-Key": "incr-b-1"})
    assert (again.status_code, again.get_json()) == (first.status_code, first.get_json()) == (200, {
        "key": "counter-b", "value": "1"})
    assert client.post("/incr/counter-b", headers={"Idempotency-Key": "incr-b-2"}).get_json()["value"] == "2"
    swapped = client.post("/cas/cas-key", json={"expected": None, "new": "v1"}, headers={"Idempotency-Key": "cas-1"})
    retried = client.post("/cas/cas-key", json={"expected": None, "new": "v1"}, headers={"Idempotency-Key": "cas-1"})
    assert swapped.status_code == retried.status_code == 200   # not a 409: it swapped once, and says so again
    deleted = client.delete("/kv/cas-key", headers={"Idempotency-Key": "del-1"})
    assert client.delete("/kv/cas-key", headers={"Idempotency-Key": "del-1"}).get_json() == deleted.get_json()


def test_the_same_idempotency_key_for_another_request_is_a_422_that_changes_nothing(client):
    assert client.get("/put/idem/one", headers={"Idempotency-Key": "put-1"}).status_code == 200
    for other in (lambda: client.get("/put/idem/two", headers={"Idempotency-Key": "put-1"}),      # another value
                  lambda: client.put("/kv/idem", data=b"one", headers={"Idempotency-Key": "put-1"}),  # another route
                  lambda: client.post("/incr/idem", headers={"Idempotency-Key": "put-1"})):
        body = error_of(other(), 422)
        assert body["type"] == "IdempotencyKeyReusedError" and body["outcome"] == "not-applied"
    assert client.get("/get/idem").get_json()["value"] == "one"


@pytest.mark.parametrize("key", ["", "k" * 257, "tab\there", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_a_400(client, key):
    environ = {"HTTP_IDEMPOTENCY_KEY": key}   # as sent, whatever the test client would encode
    error_of(client.post("/incr/malformed", environ_overrides=environ), 400)
    assert client.get("/get/malformed").status_code == 404


# --- client mistakes ------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/get/"), ("GET", "/put//value"), ("GET", "/cas//a/b"), ("PUT", "/kv/"), ("GET", "/kv/"),
    ("DELETE", "/kv/"), ("POST", "/cas/"),
])
def test_an_empty_key_is_400(client, method, path):
    assert "empty key" in error_of(client.open(path, method=method, json={"expected": None, "new": "x"}), 400)["error"]


def test_an_oversized_value_is_400(client):
    error_of(client.put("/kv/big", data=b"x" * (MAX_VALUE + 1)), 400)
    error_of(client.get("/put/big/" + "x" * (MAX_VALUE + 1)), 400)
    error_of(client.get("/cas/big/a/" + "x" * (MAX_VALUE + 1)), 400)
    error_of(client.get("/kv/big"), 404)   # nothing was written


def test_an_oversized_body_without_a_length_is_400(client):
    body = io.BytesIO(b"y" * (MAX_VALUE + 10))   # as waitress hands over a chunked upload
    response = client.put("/kv/big-stream", environ_overrides={
        "wsgi.input": body, "wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    error_of(response, 400)
    assert body.tell() == MAX_VALUE + 1   # read no further than needed to know


def test_an_overlong_key_is_400(client):
    error_of(client.get("/get/" + "k" * (MAX_KEY_BYTES + 1)), 400)


def test_unknown_routes_and_methods_are_json(client):
    assert error_of(client.get("/no/such/route"), 404)["error"] == "not found: no such route"
    error_of(client.post("/status"), 405)


# --- no leader ------------------------------------------------------------------------------------

def test_without_a_leader_writes_and_reads_are_503_but_local_reads_answer(leaderless):
    body = error_of(leaderless.get("/put/k/v"), 503)
    assert body["leader"] is None and body["type"] == "LeaderTimeoutError"
    error_of(leaderless.put("/kv/k", data=b"v"), 503)
    error_of(leaderless.get("/get/k"), 503)
    error_of(leaderless.get("/get/k?local=true"), 404)
    assert leaderless.get("/status").get_json()["cluster"]["state"] in ("Follower", "Candidate")


def _raising_app(error: Exception) -> Flask:
    app = Flask("errors")
    install_error_handlers(app, lambda: "localhost:9093", lambda binding: f"admin-of-{binding}")

    @app.get("/")
    def fail():
        raise error
    return app


@pytest.mark.parametrize("error, status, leader", [
    (NotLeaderError(leader="localhost:9092"), 503, "localhost:9092"),
    (LeaderTimeoutError("no leader"), 503, "localhost:9093"),
    (CommandError("boom", "ValueError"), 500, None),
])
def test_ckite_errors_map_to_statuses_naming_the_leader(error, status, leader):
    body = error_of(_raising_app(error).test_client().get("/"), status)
    assert body.get("leader") == leader
    if leader:
        assert body["leaderAdmin"] == f"admin-of-{leader}"


@pytest.mark.parametrize("error, status, outcome", [
    (WriteTimeoutError("slow"), 503, "unknown"),
    (LostLeadershipError("deposed"), 503, "unknown"),
    (WriteInterruptedError("stopping"), 503, "unknown"),
    (NotLeaderError(leader="localhost:9092"), 503, "not-applied"),
    (LeaderTimeoutError("no leader"), 503, "not-applied"),
    (SessionExpiredError("gone"), 503, "not-applied"),
    (IdempotencyKeyReusedError("another request"), 422, "not-applied"),
    (CommandError("boom", "ValueError"), 500, None),
])
def test_every_write_failure_says_whether_it_applied(error, status, outcome):
    body = error_of(_raising_app(error).test_client().get("/"), status)
    assert body.get("outcome") == outcome


def test_a_bug_in_a_route_is_a_json_500():
    error_of(_raising_app(RuntimeError("bug")).test_client().get("/"), 500)


# --- membership -----------------------------------------------------------------------------------

def test_membership_changes_call_the_library_and_report_its_refusal(client):
    """The library refuses to remove the last voter; the routes say so with a 409. (Changes that
    succeed are tested on real clusters in tests/test_membership.py.)"""
    body = error_of(client.delete(f"/members/{BINDING}"), 409)
    assert body["type"] == "MembershipChangeError" and "last voter" in body["error"]


def test_changecluster_with_the_current_members_changes_nothing(client):
    answer = client.get(f"/changecluster/{BINDING}")
    assert answer.status_code == 200
    assert answer.get_json() == {"members": [BINDING], "added": [], "removed": [], "state": "done", "cancelled": [],
                                 "learners": []}


@pytest.mark.parametrize("path", ["/changecluster/nonsense", "/changecluster/,", "/changecluster/host:99999"])
def test_changecluster_rejects_bad_bindings(client, path):
    error_of(client.get(path), 400)


def test_members_route_rejects_a_bad_binding(client):
    error_of(client.post("/members/no-port"), 400)


# --- status, metrics, console ---------------------------------------------------------------------

def test_status_has_ckites_shape(client, member):
    client.get("/put/status-key/status-value")
    status = client.get("/status").get_json()
    cluster, log = status["cluster"], status["log"]
    assert status["id"] == BINDING
    assert cluster["state"] == "Leader" and cluster["leader"] == BINDING and cluster["term"] >= 1
    assert cluster["members"] == [BINDING] and cluster["configuration"]["voters"] == [BINDING]
    info = cluster["stateInfo"]
    assert info["leaderUptime"].endswith("seconds") and isinstance(info["leaderUptimeMs"], int)
    assert info["lastHeartbeatsACKs"] == {} and info["followers"] == {}
    assert log["length"] >= 1 and log["commitIndex"] == log["lastApplied"] == log["lastIndex"]
    assert log["lastLog"]["index"] == log["lastIndex"] and log["lastLog"]["term"] == cluster["term"]
    assert list(status)[:3] == ["id", "cluster", "log"]


def test_metrics_parse_as_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    families = {family.name: family for family in text_string_to_metric_families(response.data.decode())}
    assert families["ckite_term"].samples[0].value >= 1
    roles = {sample.labels["role"]: sample.value for sample in families["ckite_role"].samples}
    assert roles["Leader"] == 1 and roles["Follower"] == 0
    assert families["ckite_commit_index"].samples[0].value >= 1


def test_each_member_has_its_own_metrics_registry(admin, leaderless):
    other = leaderless.get("/metrics").data.decode()
    assert 'ckite_member_info{leader="",member="localhost:9092"} 1.0' in other
    assert "localhost:9092" not in admin.app.test_client().get("/metrics").data.decode()


def test_console_page_and_its_static_files_are_served(client):
    with client.get("/") as page:
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.data.decode()
    assert "/static/console.js" in html and "/static/console.css" in html and "//cdn" not in html
    with client.get("/static/console.js") as script:
        assert script.status_code == 200 and "/cluster/status" in script.data.decode()
    with client.get("/static/console.css") as style:
        assert style.mimetype == "text/css"
    error_of(client.get("/static/missing.js"), 404)
    assert client.get("/console/config").get_json() == {"member": BINDING, "keyValueRoutes": True, "pollMs": 1000,
                                                        "tokenRequired": False}


def test_cluster_status_of_a_single_member(client):
    cluster = client.get("/cluster/status").get_json()
    assert cluster["self"] == BINDING and cluster["leaders"] == {BINDING: 1}
    [entry] = cluster["members"]
    assert entry["self"] is True and entry["status"]["cluster"]["state"] == "Leader"
    assert entry["adminUrl"] == "http://localhost:10091"


# --- the real server ------------------------------------------------------------------------------

def _broken_wake_up_pipe(trigger) -> None:
    raise OSError(errno.EBADF, "Bad file descriptor")


@pytest.mark.parametrize("wake_up_pipe", ["working", "failing"])
def test_the_server_serves_on_a_named_thread_and_stop_closes_everything(member, monkeypatch, wake_up_pipe):
    """"failing": writing to the loop's wake-up pipe fails with EBADF (seen once in CI, cause not
    found); stop()'s fallback then closes the sockets from its own thread. Only the fallback is
    tested: the descriptor itself is not closed under waitress."""
    admin = admin_for(member)
    admin.start()
    idle = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=2)   # kept alive across stop()
    try:
        assert any(t.name == "ckite-9091-admin" for t in threading.enumerate())
        pools = {t.name.rsplit("-", 1)[0] for t in threading.enumerate() if t.name.startswith("ckite-9091-http-")}
        assert pools == {"ckite-9091-http-look", "ckite-9091-http-peers", "ckite-9091-http-work"}
        assert fetch_json(f"{admin.url}/status", 2)["id"] == BINDING
        idle.request("GET", "/status")
        assert idle.getresponse().read()
    finally:
        if wake_up_pipe == "failing":
            monkeypatch.setattr(WaitressTrigger, "_physical_pull", _broken_wake_up_pipe)
        admin.stop()
        idle.close()
    assert not any(t.name == "ckite-9091-admin" or t.name.startswith("ckite-9091-http-") for t in threading.enumerate())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", admin.port), timeout=1).close()
    admin.stop()   # idempotent


@pytest.mark.parametrize("path, pool", [("/status", "look"), ("/metrics", "look"), ("/", "look"),
                                        ("/static/console.js", "look"), ("/console/config", "look"),
                                        ("/cluster/status", "peers"), ("/put/k/v", "work"), ("/kv/k", "work"),
                                        ("/members/a:1", "work"), ("/transferleadership", "work"),
                                        ("/statusx", "work"), ("", "work")])
def test_routes_that_only_look_have_threads_of_their_own(path, pool):
    assert pool_of(path) == pool


def test_cluster_status_fetches_peers_over_http_and_reports_the_unreachable(member):
    admin = admin_for(member)
    admin.start()
    closed_port = _closed_port()
    urls = {BINDING: admin.url, "localhost:1": f"http://127.0.0.1:{closed_port}"}
    fetcher = ClusterStatusFetcher("me:1", lambda: frozenset({BINDING, "localhost:1"}),
                                   lambda: {"cluster": {"leader": None}}, admin_url_of=lambda b: urls.get(b, "-"))
    try:
        entries = {entry["id"]: entry for entry in fetcher.cluster_status()["members"]}
    finally:
        fetcher.close()
        admin.stop()
    assert entries[BINDING]["status"]["cluster"]["state"] == "Leader"
    assert "error" in entries["localhost:1"] and "status" not in entries["localhost:1"]
    assert entries["me:1"]["self"] is True


def test_a_port_in_use_fails_start_with_oserror(member):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = build_admin(member, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            admin.start()
        admin.stop()


# --- command line ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "/tmp/x"], "--port"),
    (["--port", "x", "--data-dir", "/tmp/x"], "not a port"),
    (["--port", "9091", "--data-dir", "/tmp/x", "--heartbeat-interval", "0"], "positive"),
    (["--port", "9091", "--data-dir", "/tmp/x", "--bogus"], "unrecognized"),
])
def test_bad_flags_give_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_admin_port_defaults_to_raft_port_plus_1000():
    args = parser().parse_args(["--port", "9091", "--data-dir", "/tmp/x"])
    assert (args.host, args.admin_port, args.members) == (None, None, "")   # host: as the peers name it
    assert "Raft port + 1000" in parser().format_help()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
