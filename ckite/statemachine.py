"""The application's side of the contract: what ckite calls to apply agreed commands."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ckite.commands import Command


@dataclass(frozen=True)
class Failure:
    """What :meth:`StateMachine.apply_batch` returns for a command that raised ``error``."""

    error: Exception


class StateMachine(ABC):
    """The user's replicated state.

    ckite calls :meth:`apply` from one thread at a time (the applier for writes, a reader
    under the same lock for reads), so implementations need no locking of their own. Every
    member applies the same writes in the same order, so ``apply`` must be deterministic:
    no clocks, random numbers or I/O whose result differs between members.
    """

    @abstractmethod
    def apply(self, command: Command) -> Any:
        """Apply a committed :class:`~ckite.WriteCommand`, or run a :class:`~ckite.ReadCommand`.

        The return value is handed to the caller of ``write``/``read`` (and must be
        msgpack-native to cross the wire when the caller is on another member). An
        exception fails only that command: its caller gets :class:`~ckite.errors.CommandError`.
        """

    def apply_batch(self, commands: Sequence[Command]) -> list[Any]:
        """Apply committed write commands in order; one result per command, or a :class:`Failure`
        for a command that raised (it fails that command alone). ckite hands over every command
        committed together, so a state machine that can do a batch cheaper than one by one (one
        transaction of its own, one lock) overrides this; the default calls :meth:`apply`."""
        results: list[Any] = []
        for command in commands:
            try:
                results.append(self.apply(command))
            except Exception as exc:   # the user's code: this command fails, the next ones apply
                results.append(Failure(exc))
        return results

    @abstractmethod
    def serialize(self) -> bytes:
        """The whole state, for a snapshot (log compaction)."""

    @abstractmethod
    def deserialize(self, snapshot: bytes) -> None:
        """Replace the whole state with a snapshot made by :meth:`serialize`."""

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """Capture the state for a snapshot; the returned function produces its bytes later, on
        another thread, while new commands are applied.

        The default serializes at once, which holds up applying for as long as
        :meth:`serialize` takes. Override it with a cheap copy (e.g. ``dict(self.data)``)
        and a function that encodes the copy, so that compaction does not stall writes.
        """
        data = self.serialize()
        return lambda: data

    @property
    def last_applied_index(self) -> int:
        """For a state machine that persists itself: the last log index it has applied.

        ckite then skips entries up to it after a restart instead of applying them twice.
        The default (0) suits in-memory state machines, which are rebuilt by replay.
        """
        return 0
