"""Mutual TLS between members: a TLS cluster works, and whoever has no certificate of the cluster's
CA (no certificate, another CA's, plain TCP, a handshake that never ends) is refused while the
member keeps serving its peers."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import pytest

from ckite import CKiteBuilder
from ckite.errors import RpcError
from ckite.messages import AppendEntries
from ckite.rpc.thrift_transport import ThriftTransport, split_address
from ckite.rpc.tls import TlsConfig
from tests.frames import call_frame
from tests.kv_example import Get, KVStore, Put
from tests.netutil import FakeHandler, answer, free_port
from tests.tls_certs import Certs, make_certs
from tests.waiting import wait_for

TRANSPORT_LOGGER = "ckite.rpc.thrift_transport"
HEARTBEAT = AppendEntries(1, "caller:1", 0, 0)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), "member1", "member2", "member3", "client")


@pytest.fixture(scope="module")
def stranger_certs(tmp_path_factory) -> Certs:
    """Certificates of another CA: well formed, but not the cluster's."""
    return make_certs(tmp_path_factory.mktemp("other-ca"), "member1")


def tls_of(certs: Certs, name: str) -> TlsConfig:
    return TlsConfig.of(*certs.files(name))


@pytest.fixture
def transports():
    opened: list[ThriftTransport] = []

    def open_(**options) -> ThriftTransport:
        transport = ThriftTransport(**options)
        opened.append(transport)
        return transport
    yield open_
    for transport in opened:
        transport.close()


@pytest.fixture
def handler():
    return FakeHandler()


@pytest.fixture
def server(transports, certs, handler) -> ThriftTransport:
    server = transports(tls=tls_of(certs, "member1"), handshake_timeout=0.5)
    server.serve("127.0.0.1:0", handler)
    return server


def handshake_failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == TRANSPORT_LOGGER and r.levelno == logging.WARNING and "TLS handshake" in r.getMessage()]


# --- a working cluster --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_three_member_cluster_over_mutual_tls_elects_and_replicates(certs):
    """§5.2/§5.3 over real Thrift + TLS: one leader, and a write reaches every member's state machine."""
    bindings = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    machines = {binding: KVStore() for binding in bindings}
    members = [CKiteBuilder().with_local_binding(binding)
               .with_members_bindings([b for b in bindings if b != binding])
               .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
               .with_in_memory_storage().with_state_machine(machines[binding])
               .with_tls(*certs.files(f"member{number}")).with_leader_timeout(10_000).without_admin().build()
               for number, binding in enumerate(bindings, start=1)]
    try:
        for member in members:
            member.start()
        assert members[2].write(Put("key", "over tls"), timeout=10) == "over tls"   # forwarded if not the leader
        wait_for(lambda: all(m.data.get("key") == "over tls" for m in machines.values()), 10,
                 "the write on every member")
        leaders = [m for m in members if m.is_leader()]
        assert len(leaders) == 1
        assert members[0].read(Get("key"), timeout=10) == "over tls"
    finally:
        for member in members:
            member.stop()


def test_calls_between_tls_transports_answer_and_reuse_their_connection(server, transports, certs, handler):
    client = transports(tls=tls_of(certs, "client"))
    for _ in range(3):
        assert client.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)
    assert len(handler.received) == 3


def test_a_restarted_tls_peer_is_reached_through_a_fresh_connection(transports, certs, handler):
    """A pooled TLS connection whose server went away is noticed (TLS cannot peek) and replaced."""
    client = transports(tls=tls_of(certs, "client"))
    binding = f"127.0.0.1:{free_port()}"
    for _ in range(2):
        server = ThriftTransport(tls=tls_of(certs, "member1"))
        server.serve(binding, handler)
        try:
            assert client.call(binding, HEARTBEAT, timeout=5) == answer(HEARTBEAT)
        finally:
            server.close()


# --- strangers ----------------------------------------------------------------------------------------

def tls_exchange(address: str, context: ssl.SSLContext, data: bytes) -> bytes | Exception:
    """Handshake with ``context``, send ``data``, return what comes back (b"" if closed) or the error."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(data)
                return tls.recv(65536)
    except (ssl.SSLError, ConnectionError) as exc:
        return exc


def client_context(ca: str | None, cert: tuple | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def test_a_client_without_a_certificate_is_refused_and_the_member_serves_on(server, transports, certs, handler,
                                                                           caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    outcome = tls_exchange(server.address, client_context(str(certs.ca)), call_frame(HEARTBEAT))
    assert outcome == b"" or isinstance(outcome, Exception)
    wait_for(lambda: any("certificate" in message for message in handshake_failures(caplog)), 5,
             "the refused handshake in the log")
    assert handler.received == []
    peer = transports(tls=tls_of(certs, "client"))
    assert peer.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


def test_a_certificate_from_another_ca_is_refused_both_ways(server, transports, certs, stranger_certs, handler,
                                                            caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    stranger = transports(tls=tls_of(stranger_certs, "member1"))   # trusts its own CA, presents its own cert
    with pytest.raises(RpcError):
        stranger.call(server.address, HEARTBEAT, timeout=5)
    # Even trusting the cluster's CA (so the server's certificate passes), the stranger's own is refused.
    outcome = tls_exchange(server.address, client_context(str(certs.ca), stranger_certs.files("member1")[:2]),
                           call_frame(HEARTBEAT))
    assert outcome == b"" or isinstance(outcome, Exception)
    wait_for(lambda: handshake_failures(caplog), 5, "the refused handshake in the log")
    assert handler.received == []
    # ... and a member does not talk to a server of another CA either.
    impostor = transports(tls=tls_of(stranger_certs, "member1"))
    impostor.serve("127.0.0.1:0", handler)
    member = transports(tls=tls_of(certs, "client"))
    with pytest.raises(RpcError):
        member.call(impostor.address, HEARTBEAT, timeout=5)
    assert handler.received == []
    assert member.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)


def test_plain_tcp_to_a_tls_member_is_refused_and_tls_to_a_plain_member_fails(server, transports, certs, handler,
                                                                               caplog):
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    plain = transports()
    with pytest.raises(RpcError):
        plain.call(server.address, HEARTBEAT, timeout=5)
    wait_for(lambda: handshake_failures(caplog), 5, "the refused handshake in the log")
    assert handler.received == []
    plain_server = transports()
    plain_server.serve("127.0.0.1:0", handler)
    with pytest.raises(RpcError):
        transports(tls=tls_of(certs, "client")).call(plain_server.address, HEARTBEAT, timeout=5)
    assert handler.received == []


def test_a_handshake_that_never_ends_stalls_nobody_and_times_out(transports, certs, handler, caplog):
    """Twenty connections that never say a word: peers are served meanwhile; each is dropped after
    the handshake timeout (2 s here) with a log line."""
    caplog.set_level(logging.WARNING, logger=TRANSPORT_LOGGER)
    server = transports(tls=tls_of(certs, "member1"), handshake_timeout=2)
    server.serve("127.0.0.1:0", handler)
    host, port = split_address(server.address)
    opened = time.monotonic()
    silent = [socket.create_connection((host, port), timeout=10) for _ in range(20)]
    try:
        peer = transports(tls=tls_of(certs, "client"))
        for _ in range(5):
            assert peer.call(server.address, HEARTBEAT, timeout=5) == answer(HEARTBEAT)
        assert time.monotonic() - opened < 1.5   # well before any handshake timed out
        for connection in silent:
            assert connection.recv(1) == b""      # the server gave up on it
        assert 1.9 < time.monotonic() - opened < 6
        wait_for(lambda: sum("timed out" in message for message in handshake_failures(caplog)) == 20, 5,
                 "twenty timed-out handshakes in the log")
    finally:
        for connection in silent:
            connection.close()


def test_close_interrupts_a_handshake_in_progress(certs, handler):
    before = set(threading.enumerate())
    server = ThriftTransport(tls=tls_of(certs, "member1"), handshake_timeout=30)
    server.serve("127.0.0.1:0", handler)
    with socket.create_connection(split_address(server.address), timeout=5):
        wait_for(lambda: len([t for t in threading.enumerate() if t not in before]) == 2, 5,
                 "the accept thread and the connection's thread")
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1.5
    assert [t for t in threading.enumerate() if t not in before and t.name.startswith("ckite-")] == []


# --- configuration ------------------------------------------------------------------------------------

def test_tls_config_names_the_file_it_cannot_use(certs, stranger_certs, tmp_path):
    cert, key, ca = certs.files("member1")
    with pytest.raises(ValueError, match="certificate .*missing.pem' is not a readable file"):
        TlsConfig.of(tmp_path / "missing.pem", key, ca)
    with pytest.raises(ValueError, match="cannot load the TLS certificate .* with its key"):
        TlsConfig.of(cert, stranger_certs.key("member1"), ca)   # a key that is not the certificate's
    (tmp_path / "garbage.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load the TLS CA certificate"):
        TlsConfig.of(cert, key, tmp_path / "garbage.pem")


def test_both_contexts_require_a_peer_certificate_and_tls_1_2(certs):
    tls = tls_of(certs, "member1")
    for context in (tls.server_context(), tls.client_context()):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.client_context().check_hostname


def test_the_builder_refuses_tls_with_a_transport_of_ones_own(certs):
    builder = (CKiteBuilder().with_local_binding("localhost:9091").with_in_memory_storage()
               .with_state_machine(KVStore()).with_transport(ThriftTransport()).with_tls(*certs.files("member1")))
    with pytest.raises(ValueError, match="with_tls"):
        builder.config()


def test_make_certs_names_each_member_keeps_keys_private_and_reuses_its_ca(certs, tmp_path):
    for name in ("member1", "client"):
        decoded = ssl._ssl._test_decode_cert(str(certs.cert(name)))   # the stdlib's own PEM reader
        assert {("DNS", name), ("DNS", "localhost"), ("IP Address", "127.0.0.1")} <= set(decoded["subjectAltName"])
        assert certs.key(name).stat().st_mode & 0o777 == 0o600
    again = make_certs(tmp_path / "again", "a")
    ca = again.ca.read_bytes()
    make_certs(tmp_path / "again", "10.1.2.3")   # a later member, same CA
    assert again.ca.read_bytes() == ca
    decoded = ssl._ssl._test_decode_cert(str(again.cert("10.1.2.3")))
    assert ("IP Address", "10.1.2.3") in decoded["subjectAltName"]
    TlsConfig.of(*again.files("10.1.2.3"))
