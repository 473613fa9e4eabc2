"""Network faults between member processes: what a fault on a link is, and the interface of the
two networks that can inject them.

A *link* is one direction between two members: ``(A, B)`` carries every byte A sends to B, on
connections either of them opened. Cutting only ``(A, B)`` is a one-way partition. Two modes:

* ``netns`` (``tests/jepsen/netns.py``): each member in its own network namespace on a private
  bridge; iptables in each namespace drops what is cut or lost. Real packets, real TCP.
* ``proxy`` (``tests/jepsen/proxy.py``): a fault-injecting TCP proxy per ordered pair on
  loopback, for machines without namespaces (not root, no iptables).

``create_network("auto", ...)`` takes ``netns`` where it works and says which mode ran.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

Pair = tuple[str, str]
#: What a network may be able to do to a link; ``Network.supports`` says which.
CUT, LOSS, DELAY = "cut", "loss", "delay"


@dataclass(frozen=True)
class LinkFaults:
    """What is wrong with one directed link right now (nothing, by default)."""

    cut: bool = False
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    def describe(self) -> str:
        parts = ["cut"] if self.cut else []
        if self.delay or self.jitter:
            parts.append(f"delay {self.delay * 1000:.0f}±{self.jitter * 1000:.0f}ms")
        if self.loss:
            parts.append(f"loss {self.loss:.0%}")
        return ", ".join(parts) or "ok"


class Network(ABC):
    """The links between ``names`` and how their members are launched on them.

    Subclasses say where each member lives (:meth:`host`), wrap its command line
    (:meth:`command`) and make a table of link faults real (:meth:`_apply`); the fault
    vocabulary (cut, partition, slow, heal) is shared here. Thread-safe.
    """

    mode: str = ""
    supports: frozenset[str] = frozenset()

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self._lock = threading.Lock()
        self._faults: dict[Pair, LinkFaults] = {(a, b): LinkFaults() for a in self.names for b in self.names if a != b}

    @abstractmethod
    def host(self, name: str) -> str:
        """The address member ``name`` binds and is known by."""

    @abstractmethod
    def command(self, name: str, command: list[str]) -> list[str]:
        """``command`` (a kvstore member's) as it must run to be on this network."""

    @abstractmethod
    def close(self) -> None:
        """Tear the network down; safe to call twice."""

    @abstractmethod
    def _apply(self, faults: Mapping[Pair, LinkFaults]) -> None:
        """Make the whole table of link faults real (called under the lock, after each change)."""

    def pairs(self) -> list[Pair]:
        return list(self._faults)

    def faults(self, source: str, dest: str) -> LinkFaults:
        return self._faults[(source, dest)]

    def cut(self, pairs: Iterable[Pair]) -> None:
        """Cut each directed (source, dest) link; other faults on it stay."""
        self._change({pair: replace(self._faults[pair], cut=True) for pair in pairs})

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut both ways between members of different groups (members in no group are isolated)."""
        where: dict[str, object] = {name: index for index, group in enumerate(groups) for name in group}
        self.cut((a, b) for a, b in self._faults if where.get(a, a) != where.get(b, b))

    def slow(self, pairs: Iterable[Pair], delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0) -> None:
        wanted = ({DELAY} if delay or jitter else set()) | ({LOSS} if loss else set())
        if not wanted <= self.supports:
            raise ValueError(f"the {self.mode} network cannot inject {sorted(wanted - self.supports)}")
        self._change({pair: replace(self._faults[pair], delay=delay, jitter=jitter, loss=loss) for pair in pairs})

    def heal(self) -> None:
        """Every link back to normal."""
        self._change({pair: LinkFaults() for pair in self._faults})

    def describe(self) -> str:
        broken = [f"{a}->{b}: {f.describe()}" for (a, b), f in self._faults.items() if f != LinkFaults()]
        return ", ".join(broken) or "healthy"

    def _change(self, changes: Mapping[Pair, LinkFaults]) -> None:
        with self._lock:
            self._faults.update(changes)
            self._apply(dict(self._faults))


def create_network(mode: str, members: Mapping[str, tuple[str, int]], seed: int = 0) -> Network:
    """``members``: name -> (host, Raft port) as the cluster chose them on loopback.
    ``mode`` is ``netns``, ``proxy`` or ``auto`` (``netns`` where :func:`netns.available`)."""
    from tests.jepsen import netns, proxy  # each imports this module for the base class
    if mode == "auto":
        mode = netns.MODE if netns.available() is None else proxy.MODE
    if mode == netns.MODE:
        reason = netns.available()
        if reason is not None:
            raise RuntimeError(f"network namespaces unavailable: {reason}")
        return netns.NamespaceNetwork(members)
    if mode == proxy.MODE:
        return proxy.ProxyNetwork(members, seed)
    raise ValueError(f"unknown network mode {mode!r} (auto, {netns.MODE}, {proxy.MODE})")
