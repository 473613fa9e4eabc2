"""The roles a member has before it runs and after it stops: they answer nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckite.consensus.role import Role
from ckite.errors import StoppedError
from ckite.messages import AppendEntries, AppendEntriesResponse

if TYPE_CHECKING:
    from ckite.consensus.consensus import Consensus


class Starter(Role):
    """Built but not started: peers that reach it early get a clear error, not a vote."""

    name = "Starter"

    @property
    def accepts_rpcs(self) -> bool:
        return False

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        raise StoppedError("member is not started yet")


class Failed(Role):
    """Out of service after a durable write failed (disk full, read-only, I/O error) or a
    snapshot could not be restored: it answers nothing, so it acknowledges nothing it did not
    persist. The reason is in the status; restart the member once the disk is fixed."""

    name = "Failed"

    def __init__(self, consensus: Consensus, reason: str) -> None:
        super().__init__(consensus)
        self.reason = reason

    @property
    def accepts_rpcs(self) -> bool:
        return False

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        raise StoppedError(f"member is out of service: {self.reason}")

    def status(self, now: float) -> dict[str, Any]:
        return {"failure": self.reason}


class Stopped(Role):
    """Stopped for good: takes part in nothing, and a stopped member cannot be restarted."""

    name = "Stopped"

    @property
    def accepts_rpcs(self) -> bool:
        return False

    def on_append_entries(self, request: AppendEntries, now: float) -> AppendEntriesResponse:
        raise StoppedError("member is stopped")
