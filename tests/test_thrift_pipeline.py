"""ThriftPipeline: several requests in flight to one peer over one connection, replies in order,
every request's outcome reported exactly once (reply or error), over plain TCP and over mutual
TLS; and the blocking fallback that the in-process transport uses."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

from ckite.errors import CKiteError, NotLeaderError, RpcError, UnreachableError
from ckite.messages import AppendEntries, AppendEntriesResponse
from ckite.rpc.thrift_client import ThriftPipeline
from ckite.rpc.thrift_transport import ThriftTransport
from ckite.rpc.tls import TlsConfig
from ckite.rpc.transport import CallPipeline
from tests.netutil import free_port
from tests.tls_certs import make_certs
from tests.waiting import wait_for


class GatedFollower:
    """Answers AppendEntries with its prev_log_index as match_index once ``gate`` is open; records
    the order of requests and the connection thread each arrived on."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.seen: list[tuple[int, str]] = []
        self.refuse: set[int] = set()

    def handle(self, request):
        self.seen.append((request.prev_log_index, threading.current_thread().name))
        self.gate.wait(10)
        if request.prev_log_index in self.refuse:
            raise NotLeaderError("refused for the test", leader="elsewhere:1")
        return AppendEntriesResponse(request.term, True, request.prev_log_index)


def append(index: int) -> AppendEntries:
    return AppendEntries(1, "leader:1", index, 1 if index else 0)


class Link:
    """How the test's server and its pipelines talk: plain TCP, or mutual TLS."""

    def __init__(self, server_tls: TlsConfig | None = None, client_tls: TlsConfig | None = None) -> None:
        self.server_tls = server_tls
        self.client_tls = client_tls
        self.client_context = client_tls.client_context() if client_tls else None

    def transport(self, side: str = "server") -> ThriftTransport:
        return ThriftTransport(tls=self.server_tls if side == "server" else self.client_tls)

    def pipeline(self, address: str, timeout: float) -> ThriftPipeline:
        return ThriftPipeline(address, timeout=timeout, connect_timeout=1.0, ssl_context=self.client_context)

    @contextmanager
    def serving(self, handler):
        """A Thrift server answering with ``handler`` on a free loopback port."""
        server = self.transport()
        server.serve(f"127.0.0.1:{free_port()}", handler)
        try:
            yield server
        finally:
            server.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"), "member1", "member2")


@pytest.fixture(params=["plain", "tls"])
def link(request, certs) -> Link:
    if request.param == "plain":
        return Link()
    return Link(TlsConfig.of(*certs.files("member1")), TlsConfig.of(*certs.files("member2")))


@pytest.fixture
def follower(link):
    handler = GatedFollower()
    with link.serving(handler) as server:
        yield handler, server


def send_appends(pipeline, count: int) -> list[bool]:
    """AppendEntries 0..count-1 into ``pipeline``, each with its index as context."""
    return [pipeline.send(append(index), index) for index in range(count)]


def exchange(link: Link, address: str, count: int, timeout: float) -> list:
    """The outcomes of AppendEntries 0..count-1 sent together over a new pipeline to ``address``."""
    pipeline = link.pipeline(address, timeout)
    try:
        send_appends(pipeline, count)
        return collect(pipeline, count)
    finally:
        pipeline.close()


def collect(pipeline, count: int, timeout: float = 5.0) -> list:
    """Outcomes from ``pipeline.wait`` until ``count`` arrived (fails after ``timeout``)."""
    outcomes: list = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < count:
        assert time.monotonic() < deadline, f"only {len(outcomes)} of {count} outcomes within {timeout}s"
        outcomes += pipeline.wait(0.1)
    return outcomes


def test_requests_in_flight_together_come_back_in_order_over_one_connection(link, follower):
    handler, server = follower
    handler.gate.clear()
    pipeline = link.pipeline(server.address, 5.0)
    try:
        for index in range(5):
            assert pipeline.send(append(index), f"context-{index}")
        wait_for(lambda: handler.seen, message="the first request at the follower")
        assert pipeline.wait(0.05) == []          # nothing answered while the follower is held
        handler.gate.set()
        outcomes = collect(pipeline, 5)
    finally:
        pipeline.close()
    assert [(context, reply.match_index) for _, context, reply in outcomes] == [
        (f"context-{index}", index) for index in range(5)]
    assert [index for index, _ in handler.seen] == list(range(5))
    assert len({thread for _, thread in handler.seen}) == 1    # all on one connection


def test_a_refused_request_fails_alone_and_the_connection_carries_on(link, follower):
    handler, server = follower
    handler.refuse = {1}
    replies = [reply for _, _, reply in exchange(link, server.address, 3, timeout=5.0)]
    assert isinstance(replies[1], NotLeaderError) and replies[1].leader == "elsewhere:1"
    assert [reply.match_index for reply in (replies[0], replies[2])] == [0, 2]
    assert len({thread for _, thread in handler.seen}) == 1


def test_a_silent_peer_fails_every_request_in_flight_after_the_timeout(link, follower):
    handler, server = follower
    handler.gate.clear()
    pipeline = link.pipeline(server.address, 0.3)
    try:
        started = time.monotonic()
        send_appends(pipeline, 3)
        outcomes = collect(pipeline, 3)
        elapsed = time.monotonic() - started
        handler.gate.set()
        assert [context for _, context, _ in outcomes] == [0, 1, 2]
        assert all(isinstance(reply, RpcError) and "no answer" in str(reply) for _, _, reply in outcomes)
        assert 0.3 <= elapsed < 3.0
        assert pipeline.send(append(7), 7)        # a new connection for what comes next
        [(_, _, reply)] = collect(pipeline, 1)
        assert reply.match_index == 7
    finally:
        handler.gate.set()
        pipeline.close()


def test_an_unreachable_peer_fails_at_once_and_the_wait_returns_it(link):
    pipeline = link.pipeline(f"127.0.0.1:{free_port()}", 1.0)
    try:
        assert pipeline.send(append(0), "ctx") is False
        [(request, context, reply)] = pipeline.wait(5.0)
    finally:
        pipeline.close()
    assert (request, context, type(reply)) == (append(0), "ctx", UnreachableError)


def test_a_peer_that_goes_away_fails_what_is_in_flight_and_a_new_one_is_reached(link, follower):
    handler, server = follower
    handler.gate.clear()
    address = server.address
    pipeline = link.pipeline(address, 5.0)
    try:
        pipeline.send(append(0), 0)
        wait_for(lambda: handler.seen, message="the request at the follower")
        server.close()                            # the follower goes down with the request in flight
        handler.gate.set()
        [(_, _, reply)] = collect(pipeline, 1)
        assert isinstance(reply, RpcError)
        restarted = link.transport()
        restarted.serve(address, GatedFollower())
        try:
            assert pipeline.send(append(3), 3)
            [(_, _, reply)] = collect(pipeline, 1)
            assert reply.match_index == 3
        finally:
            restarted.close()
    finally:
        pipeline.close()


@pytest.mark.parametrize("make", [
    pytest.param(lambda link, address: link.pipeline(address, 1.0), id="thrift"),
    pytest.param(lambda link, address: CallPipeline(link.transport("client"), address, 1.0), id="blocking-calls"),
])
def test_wake_cuts_an_idle_wait_short(link, follower, make):
    _, server = follower
    pipeline = make(link, server.address)
    try:
        threading.Timer(0.05, pipeline.wake).start()
        started = time.monotonic()
        assert pipeline.wait(10.0) == []
        assert time.monotonic() - started < 5.0
    finally:
        pipeline.close()


def test_the_blocking_fallback_reports_each_outcome_once_in_order(link, follower):
    handler, server = follower
    handler.refuse = {1}
    transport = link.transport("client")
    pipeline = CallPipeline(transport, server.address, 1.0)
    try:
        results = send_appends(pipeline, 3)
        outcomes = pipeline.wait(0)
        assert pipeline.wait(0) == []
    finally:
        pipeline.close()
        transport.close()
    assert results == [True, False, True]
    assert [context for _, context, _ in outcomes] == [0, 1, 2]
    assert isinstance(outcomes[1][2], CKiteError) and outcomes[2][2].match_index == 2


def test_interrupt_ends_a_wait_for_a_reply_at_once_and_fails_what_was_in_flight(link, follower):
    handler, server = follower
    handler.gate.clear()
    pipeline = link.pipeline(server.address, 30.0)
    try:
        pipeline.send(append(0), 0)
        wait_for(lambda: handler.seen, message="the request at the follower")
        threading.Timer(0.05, pipeline.interrupt).start()
        started = time.monotonic()
        [(_, context, reply)] = collect(pipeline, 1)
        assert context == 0 and isinstance(reply, RpcError)
        assert time.monotonic() - started < 5.0       # not the 30 s reply timeout
    finally:
        handler.gate.set()
        pipeline.close()


class SlowFollower(GatedFollower):
    """Takes ``delay`` seconds over each request, like a follower writing big batches."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def handle(self, request):
        threading.Event().wait(self.delay)   # the work itself, not a synchronisation
        return super().handle(request)


def test_a_follower_that_keeps_answering_a_deep_window_is_not_timed_out(link):
    """Six requests of 0.1 s each take 0.6 s in all, longer than the 0.3 s timeout; every reply
    comes within the timeout of the previous one, so none of them fails."""
    with link.serving(SlowFollower(0.1)) as server:
        outcomes = exchange(link, server.address, 6, timeout=0.3)
    assert [reply.match_index for _, _, reply in outcomes] == list(range(6))


class SplittingProxy:
    """Forwards one connection to ``upstream``; once :attr:`armed`, it passes only the first half
    of the next piece the server sends and holds the rest back until :attr:`release` is set: a
    reply (under TLS, a record) that arrives in two pieces."""

    def __init__(self, upstream: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._upstream = upstream
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._serve, name="splitting-proxy", daemon=True).start()

    def _serve(self) -> None:
        try:
            client, _ = self._listener.accept()
            host, port = self._upstream.rsplit(":", 1)
            server = socket.create_connection((host, int(port)))
        except OSError:   # closed before anyone connected
            return
        self._sockets += [client, server]
        threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
        self._pump(server, client, True)

    def _pump(self, source: socket.socket, target: socket.socket, split: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if split and self.armed.is_set() and not self.holding.is_set():
                    target.sendall(chunk[:len(chunk) // 2])
                    self.holding.set()
                    self.release.wait(10)
                    chunk = chunk[len(chunk) // 2:]
                target.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.release.set()
        for sock in self._sockets:
            sock.close()


def test_a_reply_that_arrives_in_two_pieces_does_not_hold_the_wait(link, follower):
    """Readable is not a whole reply (nor, under TLS, a whole record): the owner takes what came
    and waits no longer than it asked; the reply is filed once the rest is there."""
    _, server = follower
    proxy = SplittingProxy(server.address)
    pipeline = link.pipeline(proxy.address, 5.0)
    try:
        assert pipeline.send(append(0), 0)
        [(_, _, first)] = collect(pipeline, 1)      # connected (and the TLS handshake done)
        assert first.match_index == 0
        proxy.armed.set()
        assert pipeline.send(append(1), 1)
        wait_for(proxy.holding.is_set, message="half of the reply through the proxy")
        started = time.monotonic()
        assert pipeline.wait(0.2) == []
        assert time.monotonic() - started < 2.0     # not the 5 s reply timeout
        proxy.release.set()
        [(_, context, reply)] = collect(pipeline, 1)
        assert (context, reply.match_index) == (1, 1)
    finally:
        pipeline.close()
        proxy.close()


@pytest.mark.parametrize("header", [(2 * 1024 * 1024).to_bytes(4, "big"), b"HTTP"],
                         ids=["oversized-length", "http-answer"])
def test_a_reply_header_out_of_bounds_breaks_the_connection_at_once(header):
    """A peer that answers with a frame length no reply can have, and keeps sending, is refused
    at the header: every request in flight fails at once, not at the reply timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def garbage_server() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.sendall(header)
                while not stop.is_set():
                    conn.sendall(b"x" * 65536)
            except OSError:
                pass

    threading.Thread(target=garbage_server, name="garbage-server", daemon=True).start()
    pipeline = ThriftPipeline(f"127.0.0.1:{listener.getsockname()[1]}", timeout=5.0, connect_timeout=1.0)
    try:
        started = time.monotonic()
        send_appends(pipeline, 2)
        outcomes = collect(pipeline, 2)
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        pipeline.close()
        listener.close()
    assert [context for _, context, _ in outcomes] == [0, 1]
    assert all(isinstance(reply, RpcError) and "frame length" in str(reply) for _, _, reply in outcomes)
