"""The fault suite's outcome rules (tests/jepsen/workload.py ``perform``): what each HTTP answer,
or its absence, lets a client claim. The checker is only as sound as these."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.jepsen.history import CAS, FAIL, GET, INFO, MISMATCH, OK, PUT, Recorder
from tests.jepsen.workload import perform
from tests.netutil import free_port
from tests.processes import KVClient

#: key -> (status, JSON body or None); the key "cut" answers with a body cut short.
ANSWERS = {"ok": (200, {"key": "ok", "value": "v"}), "absent": (404, {"error": "key not found"}),
           "other": (409, {"value": "current", "expected": "e"}), "busy": (503, {"error": "no leader"}),
           "broken": (500, {"error": "StorageError"})}


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
        status, body = ANSWERS[key]
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
@pytest.mark.parametrize("kind", [PUT, CAS, GET])
def test_anything_else_is_unknown(member: KVClient, kind: str, key: str) -> None:
    assert outcome(member, kind, key)[0] == INFO


def test_a_refused_connection_certainly_changed_nothing() -> None:
    closed = KVClient(f"http://127.0.0.1:{free_port()}", timeout=5)
    status, _, error = outcome(closed, PUT, "ok")
    assert status == FAIL and error.startswith("refused")
