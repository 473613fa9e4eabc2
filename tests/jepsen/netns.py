"""Mode ``netns``: each member in its own network namespace, all on one private bridge; faults are
iptables rules inside the sender's namespace.

Layout (``T`` a random tag, ``N`` a free /24 in 10.213.0.0/16, checked against this machine's
addresses): a bridge ``ckjTbr`` holding 10.213.N.254 in the root namespace, so that clients and the
runner reach every member's HTTP port; per member a namespace ``ckj-T-i`` whose ``eth0`` (a veth on
the bridge) has 10.213.N.i. Members bind that address only (Raft and HTTP: ``--host`` and
``--admin-host``); there is no route anywhere else, no forwarding and no NAT, so nothing leaves the
machine.

A cut link A -> B is ``OUTPUT -d B -j DROP`` in A's namespace: every packet A sends to B is lost,
requests and acknowledgements alike, and TCP retransmits until the heal or its timeout; loss is
the same rule under ``-m statistic``. The legacy iptables backend is used: this machine's kernel
has x_tables but not nf_tables. It has no ``sch_netem`` either, so this mode cannot add latency
(``supports`` says so and the nemesis leaves ``latency`` out).
"""
from __future__ import annotations

import atexit
import ipaddress
import secrets
import shutil
import subprocess
from collections.abc import Mapping

from tests.jepsen.network import CUT, LOSS, LinkFaults, Network, Pair

MODE = "netns"
IPTABLES = "iptables-legacy"
PREFIX = "ckj"
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
COMMAND_TIMEOUT = 10.0


def available() -> str | None:
    """None when this mode works here; otherwise why not (it is tried for real, on a probe)."""
    for tool in ("ip", IPTABLES, f"{IPTABLES}-restore"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install iptables)"
    probe = f"{PREFIX}-probe-{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, IPTABLES, "-A", "OUTPUT", "-d", "10.213.255.1", "-j", "DROP")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a namespace with an iptables rule: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=COMMAND_TIMEOUT)
    return None


class NamespaceNetwork(Network):
    """Namespaces for ``members`` (their names; the ports they were given stay theirs)."""

    mode = MODE
    supports = frozenset({CUT, LOSS})

    def __init__(self, members: Mapping[str, tuple[str, int]]) -> None:
        super().__init__(members)
        tag = secrets.token_hex(2)
        subnet = _free_subnet()
        self.bridge = f"{PREFIX}{tag}br"
        self.gateway = str(subnet[254])
        self.namespaces = {name: f"{PREFIX}-{tag}-{i}" for i, name in enumerate(self.names, start=1)}
        self.hosts = {name: str(subnet[i]) for i, name in enumerate(self.names, start=1)}
        self._veths = {name: f"{PREFIX}{tag}v{i}" for i, name in enumerate(self.names, start=1)}
        self._rules: dict[str, str] = {}
        self._closed = False
        atexit.register(self.close)
        try:
            self._build(subnet.prefixlen)
        except BaseException:
            self.close()
            raise

    def _build(self, prefix: int) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for name, namespace in self.namespaces.items():
            veth = self._veths[name]
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            _run("ip", "-n", namespace, "addr", "add", f"{self.hosts[name]}/{prefix}", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")

    def host(self, name: str) -> str:
        return self.hosts[name]

    def command(self, name: str, command: list[str]) -> list[str]:
        """Inside the member's namespace, its HTTP routes on its namespace address too (the
        default, 127.0.0.1, would be the namespace's own loopback, unreachable from outside)."""
        return ["ip", "netns", "exec", self.namespaces[name], *command, "--admin-host", self.hosts[name]]

    def _apply(self, faults: Mapping[Pair, LinkFaults]) -> None:
        for source, namespace in self.namespaces.items():
            rules = "".join(_rule(self.hosts[dest], link) for (src, dest), link in faults.items() if src == source)
            if self._rules.get(source, "") != rules:
                table = f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
                _run("ip", "netns", "exec", namespace, f"{IPTABLES}-restore", stdin=table)
                self._rules[source] = rules

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for namespace in self.namespaces.values():   # takes its end of the veth with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=COMMAND_TIMEOUT)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=COMMAND_TIMEOUT)
        atexit.unregister(self.close)


def _rule(dest: str, link: LinkFaults) -> str:
    if link.cut:
        return f"-A OUTPUT -d {dest}/32 -j DROP\n"
    if link.loss:
        return f"-A OUTPUT -d {dest}/32 -m statistic --mode random --probability {link.loss:.4f} -j DROP\n"
    return ""


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of ``SUBNETS`` that no interface of this machine has an address in."""
    listing = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT).stdout
    used = [ipaddress.ip_interface(line.split()[3]).network for line in listing.splitlines() if len(line.split()) > 3]
    candidates = [net for net in SUBNETS.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)]
    if not candidates:
        raise RuntimeError(f"no free /24 left in {SUBNETS}")
    return candidates[secrets.randbelow(len(candidates))]


def _run(*command: str, stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if result.returncode != 0:
        raise subprocess.SubprocessError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
