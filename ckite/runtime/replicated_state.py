"""What the log is applied to: the user's state machine, and the client table beside it.

Committed entries come here in log order, a batch at a time. A plain command entry goes to the
state machine. A client-session entry is first judged by the client table: a retry is answered
with the outcome recorded the first time, a request of an expired session or under a reused
idempotency key is refused, and only a new request reaches the state machine (Raft thesis §6.3).
All the commands a batch applies go to ``StateMachine.apply_batch`` in one call.

A snapshot's state is both: the client table first, behind a magic header, then the state
machine's own bytes, so a member restored from a snapshot (its own at restart, or a leader's)
deduplicates exactly as the others do. A state written before client sessions existed (no
header) is read as the state machine's alone, with an empty table.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from ckite.codec import decode_command
from ckite.commands import Command
from ckite.errors import CKiteError, CommandError
from ckite.log.entry import EntryKind, LogEntry
from ckite.sessions.request import unstamped
from ckite.sessions.table import ClientTable, Outcome
from ckite.statemachine import Failure, StateMachine

logger = logging.getLogger(__name__)

_MAGIC = b"ckite-state-1\n"
_LENGTH = struct.Struct(">Q")


class BatchFailed(CKiteError):
    """``apply_batch`` raised or miscounted: the state may hold part of the batch."""


class ReplicatedState:
    def __init__(self, state_machine: StateMachine, table: ClientTable | None = None) -> None:
        self.state_machine = state_machine
        self.table = table or ClientTable()

    def apply(self, entries: Sequence[LogEntry]) -> list[Outcome]:
        """One outcome per entry (a no-op or a configuration: an empty one). Raises BatchFailed."""
        outcomes: list[Outcome] = []
        commands: list[Command] = []
        applied: list[tuple[LogEntry, Command, Outcome]] = []
        for entry in entries:
            kind = entry.kind
            if kind == EntryKind.CLIENT_REQUEST:
                outcome, command = self._admit(entry)
            else:
                outcome = Outcome()
                if kind != EntryKind.COMMAND:
                    outcomes.append(outcome)
                    continue
                command = self._decode(entry, entry.data, outcome)
            outcomes.append(outcome)
            if command is not None:
                outcome.applied_at(entry.index, entry.term)
                commands.append(command)
                applied.append((entry, command, outcome))
        for (entry, command, outcome), result in zip(applied, self._apply_batch(commands), strict=True):
            if isinstance(result, Failure):   # the user's code raised: this command fails, the next ones apply
                logger.warning("state machine raised on entry %d (%s): %r", entry.index, type(command).__name__,
                               result.error)
                outcome.error = CommandError(str(result.error), type(result.error).__name__)
            else:
                outcome.result = result
        return outcomes

    def _admit(self, entry: LogEntry) -> tuple[Outcome, Command | None]:
        try:
            stamp, request = unstamped(entry.data)
        except CKiteError as exc:
            logger.error("entry %d holds no readable client request (%s); skipped on this member", entry.index, exc)
            return Outcome(error=exc), None
        decision = self.table.admit(entry.index, stamp, request)
        if not decision.apply:
            return decision.outcome, None
        return decision.outcome, self._decode(entry, request.command, decision.outcome)

    @staticmethod
    def _decode(entry: LogEntry, data: bytes, outcome: Outcome) -> Command | None:
        try:
            return decode_command(data)
        except CKiteError as exc:
            logger.error("entry %d cannot be decoded (%s); skipped on this member", entry.index, exc)
            outcome.error = exc
            return None

    def _apply_batch(self, commands: list[Command]) -> list[Any]:
        if not commands:
            return []
        try:
            results = self.state_machine.apply_batch(commands)
        except Exception as exc:
            raise BatchFailed(f"the state machine's apply_batch raised {exc!r}") from exc
        if len(results) != len(commands):
            raise BatchFailed(f"the state machine's apply_batch returned {len(results)} results for "
                              f"{len(commands)} commands")
        return results

    def begin_snapshot(self) -> Callable[[BinaryIO], None]:
        """Between two batches: the table as it is, and the state machine's writer."""
        table = self.table.encode()
        write_state = self.state_machine.begin_snapshot()

        def write(writer: BinaryIO) -> None:
            writer.write(_MAGIC + _LENGTH.pack(len(table)))
            writer.write(table)
            write_state(writer)
        return write

    def restore(self, reader: BinaryIO) -> None:
        head = reader.read(len(_MAGIC))
        if head == _MAGIC:
            (length,) = _LENGTH.unpack(reader.read(_LENGTH.size))
            table = ClientTable(self.table.session_timeout_ms, self.table.key_ttl_ms)
            table.restore(reader.read(length))
        else:   # written before client sessions: the state machine's bytes alone
            reader.seek(0)
            table = ClientTable(self.table.session_timeout_ms, self.table.key_ttl_ms)
        self.state_machine.restore(reader)
        self.table = table
