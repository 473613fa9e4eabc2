"""The fault suite's proxy network (tests/jepsen/proxy.py) and member shim (member.py), on
plain echo servers: bytes pass unchanged, a cut holds them (one way only) until the heal, a delay
delays them, and a member process dials its peers through the routes it was given."""
from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jepsen.proxy import LOOPBACK, ProxyNetwork
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def network() -> Iterator[ProxyNetwork]:
    servers = {}
    for name in ("a", "b"):
        server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    net = ProxyNetwork({name: server.server_address for name, server in servers.items()})
    yield net
    net.close()
    for server in servers.values():
        server.shutdown()
        server.server_close()


def dial(net: ProxyNetwork, source: str, dest: str) -> socket.socket:
    """A connection from ``source`` to ``dest``'s echo server, through their proxy."""
    real = net.targets[dest]
    return socket.create_connection(net.routes(source)[real], timeout=5)


def echo(sock: socket.socket, data: bytes, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        received += sock.recv(65536)
    return received


def test_bytes_pass_unchanged_both_ways(network: ProxyNetwork) -> None:
    payload = bytes(range(256)) * 1000
    with dial(network, "a", "b") as sock:
        assert echo(sock, payload) == payload


def test_every_ordered_pair_has_its_own_proxy(network: ProxyNetwork) -> None:
    assert set(network.proxy_ports) == {("a", "b"), ("b", "a")}
    assert len(set(network.proxy_ports.values())) == 2
    assert list(network.routes("a")) == [network.targets["b"]]


def test_a_cut_holds_the_bytes_until_the_heal(network: ProxyNetwork) -> None:
    with dial(network, "a", "b") as sock:
        assert echo(sock, b"before") == b"before"
        network.partition(["a"], ["b"])
        with pytest.raises(TimeoutError):
            echo(sock, b"during", timeout=0.5)
        network.heal()
        sock.settimeout(5)
        assert sock.recv(100) == b"during"


def test_a_one_way_cut_of_the_answers_holds_them_only(network: ProxyNetwork) -> None:
    """a -> b still works (b receives), but b -> a is cut: the echo never comes back."""
    network.cut([("b", "a")])
    assert network.describe() == "b->a: cut"
    with dial(network, "a", "b") as sock:
        with pytest.raises(TimeoutError):
            echo(sock, b"ping", timeout=0.5)
        network.heal()
        sock.settimeout(5)
        assert sock.recv(100) == b"ping"


def test_a_connection_opened_during_a_cut_hangs_rather_than_being_refused(network: ProxyNetwork) -> None:
    network.cut([("a", "b")])
    with dial(network, "a", "b") as sock:
        with pytest.raises(TimeoutError):
            echo(sock, b"hello", timeout=0.5)
        network.heal()
        sock.settimeout(5)
        assert sock.recv(100) == b"hello"


def test_delay_applies_to_each_direction(network: ProxyNetwork) -> None:
    network.slow(network.pairs(), delay=0.15)
    with dial(network, "a", "b") as sock:
        echo(sock, b"warm-up")
        started = time.monotonic()
        echo(sock, b"x")
        assert time.monotonic() - started >= 0.29
    network.heal()
    assert network.describe() == "healthy"


def test_member_shim_routes_connections_to_peers_only(network: ProxyNetwork) -> None:
    """In a process that installed the routes, dialing b's real address goes through the proxy:
    cutting the link then holds the echo."""
    real_host, real_port = network.targets["b"]
    proxy_host, proxy_port = network.routes("a")[(real_host, real_port)]
    network.cut([("a", "b")])
    script = (f"import socket; from tests.jepsen.member import install_routes;"
              f"install_routes({{({real_host!r}, {real_port}): ({proxy_host!r}, {proxy_port})}});"
              f"s = socket.create_connection(({real_host!r}, {real_port}), timeout=1); s.sendall(b'x');"
              f"s.settimeout(0.5)\ntry:\n  s.recv(1); print('answered')\nexcept TimeoutError:\n  print('held')")
    held = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert held.stdout.strip() == "held", held.stderr


# --- the namespace network (mode netns), where this machine allows it ---------------------------

def _netns_unavailable() -> str | None:
    from tests.jepsen import netns
    return netns.available()


@pytest.mark.skipif(_netns_unavailable() is not None, reason=f"netns mode unavailable: {_netns_unavailable()}")
def test_namespace_network_cuts_one_way_with_iptables_and_cleans_up() -> None:
    """b serves inside its namespace; a reaches it until (a, b) is cut, and again after the heal;
    b's own rules stay empty (the cut is one way); closing removes namespaces and bridge."""
    from tests.jepsen.netns import NamespaceNetwork
    net = NamespaceNetwork({"a": ("127.0.0.1", 1), "b": ("127.0.0.1", 2)})
    server = subprocess.Popen(["ip", "netns", "exec", net.namespaces["b"], sys.executable, "-m", "http.server",
                               "--bind", net.host("b"), "8765"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], 8765), timeout=0.5); print('open')\n"
             "except OSError:\n print('dropped')")

    def from_a() -> str:
        command = ["ip", "netns", "exec", net.namespaces["a"], sys.executable, "-c", probe, net.host("b")]
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        wait_for(lambda: from_a() == "open", 10, "the link between a and b to carry traffic", interval=0.1)
        net.cut([("a", "b")])
        assert from_a() == "dropped"
        rules = subprocess.run(["ip", "netns", "exec", net.namespaces["b"], "iptables-legacy", "-S", "OUTPUT"],
                               capture_output=True, text=True).stdout
        assert "DROP" not in rules
        net.heal()
        assert from_a() == "open"
    finally:
        server.kill()
        server.wait()
        net.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in net.namespaces.values())
    assert subprocess.run(["ip", "link", "show", net.bridge], capture_output=True).returncode != 0
