"""The fault suite's outcome rules (tests/jepsen/workload.py ``perform``): what each HTTP answer,
or its absence, lets a client claim. The checker is only as sound as these. And the counter
workload's clients (tests/jepsen/counter.py): an increment is sent again, under its key, to the
next member until one acknowledges it."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest

from tests.jepsen.counter import COUNTER_KEY, CounterConfig, CounterWorkload
from tests.jepsen.exactly_once import exactly_once, increments
from tests.jepsen.history import CAS, FAIL, FINAL_PROCESS, GET, INCR, INFO, MISMATCH, OK, PUT, Recorder
from tests.jepsen.workload import perform
from tests.netutil import free_port
from tests.processes import KVClient
from tests.waiting import wait_for

#: key -> (status, JSON body or None); the key "cut" answers with a body cut short.
ANSWERS = {"ok": (200, {"key": "ok", "value": "v"}), "absent": (404, {"error": "key not found"}),
           "other": (409, {"value": "current", "expected": "e"}), "busy": (503, {"error": "no leader"}),
           "broken": (500, {"error": "StorageError"})}


#: The counter's increments the fake cluster applied, by idempotency key (as ckite's client table
#: keeps them): key -> the value it returned. Members under the path prefix ``/good`` apply and
#: answer, under ``/lost`` apply and answer 503 (outcome unknown: the answer was lost), under
#: ``/bad`` reject with 422.
APPLIED: dict[str, str] = {}
APPLIED_LOCK = threading.Lock()


class _Member(BaseHTTPRequestHandler):
    def do_GET(self) -> None:   # noqa: N802 (http.server's name)
        key = self.path.split("/")[2]
        if key == "cut":
            self.send_response(200)
            self.send_header("Content-Length", "61")
            self.end_headers()
            self.wfile.write(b"{")
            self.wfile.flush()
            self.connection.close()
            return
        self._answer(*ANSWERS[key])

    def do_POST(self) -> None:   # noqa: N802
        """``/incr/<key>`` as ANSWERS say, or ``/<prefix>/incr/counter`` for the counter's clients."""
        prefix, _, key = self.path.partition("?")[0].partition("/incr/")
        prefix = prefix.lstrip("/")
        if key in ANSWERS:
            self._answer(*ANSWERS[key])
        elif prefix == "bad":
            self._answer(422, {"error": "key reused", "outcome": "not-applied"})
        else:
            with APPLIED_LOCK:   # a retry under the same key gets the first outcome
                value = APPLIED.setdefault(self.headers["Idempotency-Key"], str(len(APPLIED) + 1))
            self._answer(*{"good": (200, {"key": key, "value": value}),
                           "lost": (503, {"error": "write timed out", "outcome": "unknown"})}[prefix])

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def member() -> Iterator[KVClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Member)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield KVClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    server.shutdown()
    server.server_close()


@dataclass
class _FakeMember:
    """What the counter's clients use of a member: its name and a client."""

    name: str
    url: str

    def client(self, timeout: float) -> KVClient:
        return KVClient(self.url, timeout)


def outcome(client: KVClient, kind: str, key: str) -> tuple[str | None, str | None, str]:
    recorder = Recorder()
    op = perform(recorder.invoke(0, kind, key, "new" if kind != GET else None, "e" if kind == CAS else None),
                 client, recorder)
    return op.outcome, op.result, op.error


def test_success_is_ok_and_a_get_returns_the_value(member: KVClient) -> None:
    assert outcome(member, PUT, "ok")[0] == OK
    assert outcome(member, GET, "ok")[:2] == (OK, "v")


def test_a_404_get_is_a_read_of_absent(member: KVClient) -> None:
    assert outcome(member, GET, "absent") == (OK, None, "")


def test_a_409_cas_is_a_failed_cas_that_observed_the_current_value(member: KVClient) -> None:
    assert outcome(member, CAS, "other") == (FAIL, "current", MISMATCH)


@pytest.mark.parametrize("key", ["busy", "broken", "cut"])
@pytest.mark.parametrize("kind", [PUT, CAS, GET, INCR])
def test_anything_else_is_unknown(member: KVClient, kind: str, key: str) -> None:
    assert outcome(member, kind, key)[0] == INFO


def test_a_refused_connection_certainly_changed_nothing() -> None:
    closed = KVClient(f"http://127.0.0.1:{free_port()}", timeout=5)
    status, _, error = outcome(closed, PUT, "ok")
    assert status == FAIL and error.startswith("refused")


def test_an_acknowledged_increment_returns_the_value_and_a_4xx_rejects_it(member: KVClient) -> None:
    assert outcome(member, INCR, "ok") == (OK, "v", "")
    status, _, error = outcome(member, INCR, "other")   # 409: the value is not an integer
    assert status == FAIL and error.startswith("rejected: HTTP 409")


def test_counter_clients_send_an_increment_again_to_the_next_member_until_one_acknowledges_it(
        member: KVClient) -> None:
    """Members: one down (refused), one that applies but answers 503 (outcome unknown), one that
    applies and answers; each increment starts at a random one. Every increment ends
    acknowledged, its attempts on consecutive members under one key, and the fake cluster
    applied each once: a client that changed the key when it retried would apply some twice."""
    APPLIED.clear()
    members = [_FakeMember("down", f"http://127.0.0.1:{free_port()}"), _FakeMember("lost", member.base_url + "/lost"),
               _FakeMember("good", member.base_url + "/good")]
    recorder = Recorder()
    workload = CounterWorkload(members, recorder, CounterConfig(clients=2, think=0.0), seed=5)
    workload.start()
    try:
        wait_for(lambda: sum(op.outcome == OK for op in recorder.snapshot().ops) >= 30, 20, "30 increments")
    finally:
        workload.stop()
    assert workload.errors == []
    history = recorder.snapshot()
    names = [m.name for m in members]
    for key in {op.idempotency_key for op in history.ops}:
        attempts = [op for op in history.ops if op.idempotency_key == key]
        assert [op.outcome for op in attempts][-1] == OK and all(op.outcome != OK for op in attempts[:-1]), attempts
        assert all(names.index(b.node) == (names.index(a.node) + 1) % 3 for a, b in pairwise(attempts))
    assert any(op.node == "lost" for op in history.ops) and any(op.node == "down" for op in history.ops)
    recorder.complete(recorder.invoke(FINAL_PROCESS, GET, COUNTER_KEY), OK, str(len(APPLIED)))
    result = exactly_once(recorder.snapshot(), COUNTER_KEY)
    assert result.exactly_once and result.acknowledged == len(APPLIED) >= 30, result.describe()


def test_a_rejected_increment_is_not_sent_again(member: KVClient) -> None:
    recorder = Recorder()
    workload = CounterWorkload([_FakeMember("bad", member.base_url + "/bad")], recorder, CounterConfig(clients=1), 6)
    workload.start()
    try:
        wait_for(lambda: len(recorder.snapshot().ops) >= 3, 20, "three increments")
    finally:
        workload.stop()
    found = increments(recorder.snapshot().ops)
    assert found and all(i.attempts == 1 and i.rejected.startswith("rejected: HTTP 422") for i in found), found
