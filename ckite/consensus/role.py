"""The base of the role classes: what every role does unless it knows better.

Roles *decide*; they never wait, sleep or do I/O. Every method runs with the consensus lock
held, inside a step: what must follow (durable writes, futures to complete, threads to wake)
goes into ``consensus.effects`` and happens once the lock is released.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckite.errors import StoppedError
from ckite.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Request,
    TimeoutNow,
)

if TYPE_CHECKING:
    from ckite.consensus.consensus import Consensus


class Role:
    """A state of the Raft state machine (CKite's ``State``)."""

    name = "Role"

    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus

    def begin(self, now: float) -> None:
        """Called once the role is current."""

    def end(self) -> None:
        """Called when another role replaces this one."""

    @property
    def accepts_rpcs(self) -> bool:
        return True

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        raise NotImplementedError

    def on_install_snapshot(self, request: InstallSnapshot, now: float) -> InstallSnapshotResponse | None:
        """The answer, or None: the consensus writes the chunk to its file without the lock, then answers."""
        raise StoppedError(f"{self.name} does not accept snapshots")

    def on_timeout_now(self, request: TimeoutNow, now: float) -> bool:
        return False

    def on_tick(self, now: float) -> None:
        """The deadline returned by :meth:`deadline` passed."""

    def deadline(self) -> float | None:
        """When :meth:`on_tick` must run next (None: never, until something changes)."""
        return None

    def next_request(self, peer: str, now: float) -> tuple[Request, Any] | None:
        """A message this role wants sent to ``peer`` now, with a context for its reply."""
        return None

    def peer_deadline(self, peer: str) -> float | None:
        """When :meth:`next_request` for ``peer`` may next return something without being woken."""
        return None

    def on_response(self, peer: str, request: Request, context: Any, response: Any, now: float) -> None:
        """The reply to a request this role (in this term) sent."""

    def on_failure(self, peer: str, request: Request, context: Any, now: float) -> None:
        """A request this role sent was lost (no reply within the RPC timeout)."""

    def status(self, now: float) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{self.name}[{self.consensus.term}]"
