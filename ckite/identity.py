"""Who a member is on the network: its own binding under other names, and names others can reach.

A member's id is a binding ("host:port") that its peers dial. One process can be named in
several ways (``localhost:9091`` and ``127.0.0.1:9091`` on one machine), and a member that
does not recognise itself under another name would replicate to itself, count itself twice
in a quorum or stand as a voter that never votes. So a member treats as itself every binding
with its Raft port whose host resolves to an address its RPC server listens on, and refuses
configuration changes that would add it (or any other member) a second time under another name.

A loopback id ("localhost") is only reachable from the same machine: a member so named while
its peers are elsewhere is refused at build time, with the advice to name the host peers use.

Resolving names may wait on DNS: none of this runs under the consensus lock.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: Listen hosts meaning "every interface".
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def split_binding(binding: str) -> tuple[str, int]:
    """``"host:port"`` -> (host without IPv6 brackets, port); the binding is already checked."""
    host, _, port = binding.rpartition(":")
    return host.strip("[]"), int(port)


@functools.lru_cache(maxsize=256)
def resolve(host: str) -> frozenset[str]:
    """The IP addresses ``host`` names (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos)


@functools.lru_cache(maxsize=256)
def is_local_address(address: str) -> bool:
    """Whether ``address`` belongs to this machine: only a local address can be bound."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def is_loopback(host: str) -> bool | None:
    """True when ``host`` names only loopback addresses, False when it names another, None when
    it does not resolve (nothing can be said)."""
    addresses = resolve(host)
    if not addresses:
        return None
    return all(ipaddress.ip_address(address).is_loopback for address in addresses)


def same_endpoint(a: str, b: str) -> bool:
    """Whether bindings ``a`` and ``b`` reach the same port of the same address."""
    if a == b:
        return True
    (host_a, port_a), (host_b, port_b) = split_binding(a), split_binding(b)
    return port_a == port_b and bool(resolve(host_a) & resolve(host_b))


class MemberIdentity:
    """``member_id`` and every other binding that reaches its RPC server (``listen_address``)."""

    def __init__(self, member_id: str, listen_address: str | None = None) -> None:
        self.member_id = member_id
        host, self.port = split_binding(listen_address or member_id)
        self._any_interface = host in _WILDCARDS
        self._addresses = frozenset() if self._any_interface else resolve(host)
        self._warned: set[str] = set()

    def is_self(self, binding: str) -> bool:
        """``binding`` is this member, perhaps under another name."""
        if binding == self.member_id:
            return True
        host, port = split_binding(binding)
        if port != self.port:
            return False
        addresses = resolve(host)
        if self._any_interface:
            return any(is_local_address(address) for address in addresses)
        return bool(addresses & self._addresses)

    def warn_once_if_alias(self, binding: str, where: str) -> bool:
        """True when ``binding`` is this member under another name, saying so once per binding."""
        if binding == self.member_id or not self.is_self(binding):
            return False
        if binding not in self._warned:
            self._warned.add(binding)
            logger.error("%s: %s names %s, which is this member under another name: it is not contacted. "
                         "Give every member one name for this member (kvstore: --host)",
                         self.member_id, where, binding)
        return True


def check_reachable_id(member_id: str, peers: Iterable[str]) -> None:
    """Refuse (ValueError) a loopback id when a peer is not on loopback: that peer, perhaps on another
    machine, would dial its own loopback interface to reach this member."""
    host, _ = split_binding(member_id)
    if not is_loopback(host):
        return
    remote = sorted(peer for peer in peers if is_loopback(split_binding(peer)[0]) is False)
    if remote:
        raise ValueError(f"this member's id {member_id} names a loopback address, which other machines cannot reach, "
                         f"while {', '.join(remote)} is not on loopback: name this member by the host its peers "
                         f"reach it at (kvstore: --host; CKiteBuilder.with_local_binding)")


def host_named_by_peers(peers: Iterable[str], default: str = "localhost") -> str:
    """The host every peer is named by, when it is this machine (members started on one machine with
    ``--members 127.0.0.1:9092,...`` then call themselves ``127.0.0.1:PORT`` too, as their peers
    do); else ``default``."""
    hosts = {split_binding(peer)[0] for peer in peers}
    if len(hosts) == 1:
        (host,) = hosts
        addresses = resolve(host)
        if addresses and all(is_local_address(address) for address in addresses):
            return host
    return default
