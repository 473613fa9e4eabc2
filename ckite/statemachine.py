"""The application's side of the contract: what ckite calls to apply agreed commands."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

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
        msgpack-native to cross the wire when the caller is on another member). A write's
        result is also kept for retries (every member's client table, every snapshot) until
        the client has it, so keep it small: not the value just written. An exception fails
        only that command: its caller gets :class:`~ckite.errors.CommandError`.
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

    # --- snapshots: streamed (begin_snapshot / restore), or bytes for small states ---------------

    def begin_snapshot(self) -> Callable[[BinaryIO], None]:
        """Capture the state for a snapshot, with applying paused between two commands; return a
        function that writes that state to a file. ckite calls the function on its snapshot
        thread while new commands apply, so the state machine decides how the function sees the
        state as it was: a cheap copy taken here (the kvstore copies its dict's references, not
        its values), or data that never changes once written (an immutable tree, a database
        snapshot). Write the state in pieces: it is never needed whole in memory.

        The default suits small states: it takes :meth:`prepare_snapshot`'s bytes (by default
        :meth:`serialize`, here, while applying waits) and writes them."""
        produce = self.prepare_snapshot()

        def write(writer: BinaryIO) -> None:
            writer.write(produce())
        return write

    def restore(self, reader: BinaryIO) -> None:
        """Replace the whole state with a snapshot's, read from ``reader`` (written by the function
        :meth:`begin_snapshot` returned, possibly on another member). The default reads it whole
        and calls :meth:`deserialize`."""
        self.deserialize(reader.read())

    def serialize(self) -> bytes:
        """The whole state as bytes: the small-state form of :meth:`begin_snapshot`. Implement
        this and :meth:`deserialize`, or :meth:`begin_snapshot` and :meth:`restore`: a log is compacted."""
        raise NotImplementedError(f"{type(self).__name__} implements neither serialize() nor begin_snapshot()")

    def deserialize(self, snapshot: bytes) -> None:
        """Replace the whole state with bytes made by :meth:`serialize` (see :meth:`restore`)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither deserialize() nor restore()")

    def prepare_snapshot(self) -> Callable[[], bytes]:
        """The bytes form of :meth:`begin_snapshot`: capture the state now, return a function that
        produces its bytes later, on the snapshot thread. The default serializes at once."""
        data = self.serialize()
        return lambda: data

    @property
    def last_applied_index(self) -> int:
        """For a state machine that persists itself: the last log index it has applied.

        ckite then skips entries up to it after a restart instead of applying them twice.
        The default (0) suits in-memory state machines, which are rebuilt by replay.
        """
        return 0
