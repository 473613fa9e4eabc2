"""What a member records when its Prometheus metrics are off, and the interface both forms share.

A member built without the admin console and without a registry of the application's
(``CKiteBuilder.without_admin()``, no ``with_metrics()``) has no one to serve Prometheus
metrics to, so it does not import prometheus_client at all (measured here: 15 ms of start-up
and 1.4 MiB of RSS beyond ckite's own imports) and observes no instrument on the hot path. It
still counts what ``status()["metrics"]`` reports (elections, leader changes, snapshots, RPC
errors by peer) in plain integers; latencies and snapshot sizes are not observed.
:class:`~ckite.metrics.member.MemberMetrics` is the Prometheus form: the same attributes, as
prometheus_client instruments in a registry.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class Observer(Protocol):
    """A histogram: ``observe`` a value (prometheus_client's ``Histogram``, or nothing)."""

    def observe(self, amount: float) -> None: ...


class LabelledObserver(Protocol):
    def labels(self, *values: str) -> Observer: ...


class Increment(Protocol):
    """A counter: ``inc`` it (prometheus_client's ``Counter``, or an integer)."""

    def inc(self, amount: float = 1) -> None: ...


class _Unobserved:
    """A histogram no one exports: observations are dropped."""

    __slots__ = ()

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *values: str) -> _Unobserved:
        return self


UNOBSERVED = _Unobserved()


class _Count:
    """A counter as a plain integer, incremented under the consensus lock (the step that decides
    the event), so ``+=`` needs no lock of its own."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        self.value += int(amount)


class MemberCounts:
    """A member's counts without Prometheus: what ``status()["metrics"]`` shows; ``registry`` is None."""

    registry: CollectorRegistry | None = None

    def __init__(self) -> None:
        #: A write, from its append to its result on the leader; one durable write of the log.
        self.commit_latency: Observer = UNOBSERVED
        self.append_latency: Observer = UNOBSERVED
        self.snapshot_size: LabelledObserver = UNOBSERVED
        self.snapshot_duration: LabelledObserver = UNOBSERVED
        self._counts = {"elections": _Count(), "leaderChanges": _Count(), "snapshotsTaken": _Count(),
                        "snapshotsInstalled": _Count()}   # status()["metrics"]'s names
        self.elections: Increment = self._counts["elections"]
        self.leader_changes: Increment = self._counts["leaderChanges"]
        self.snapshots_taken: Increment = self._counts["snapshotsTaken"]
        self.snapshots_installed: Increment = self._counts["snapshotsInstalled"]
        self._rpc_errors: dict[str, int] = {}
        self._rpc_lock = threading.Lock()   # counted before the consensus lock, on each peer's threads
        self._leadership: tuple[str, int] | None = None   # the last one counted (the consensus lock guards it)

    def watch(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Export the member's state at each scrape: nothing to export to here."""

    def close(self) -> None:
        """Nothing registered anywhere."""

    def leader_seen(self, leader: str | None, term: int) -> None:
        """The member's leader is now ``leader`` (None: none known) in ``term``; under the consensus lock."""
        if leader is not None and (leader, term) != self._leadership:
            self._leadership = (leader, term)
            self.leader_changes.inc()

    def snapshot_written(self, origin: str, size: int, seconds: float) -> None:
        """A snapshot's state is whole and durable: ``taken`` here, or ``received`` from a leader."""
        self.snapshot_size.labels(origin).observe(size)
        self.snapshot_duration.labels(origin).observe(seconds)

    def rpc_failed(self, peer: str, kind: str) -> None:
        with self._rpc_lock:
            self._rpc_errors[peer] = self._rpc_errors.get(peer, 0) + 1

    def summary(self) -> dict[str, Any]:
        """``status()["metrics"]``: the counts, ``rpcErrors`` by peer (latencies only with Prometheus on)."""
        with self._rpc_lock:
            errors = dict(self._rpc_errors)
        return {**{name: count.value for name, count in self._counts.items()}, "rpcErrors": errors}
