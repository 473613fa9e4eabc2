"""The session an application holds: ``CKite.session()``."""
from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ckite.codec import encode_command
from ckite.commands import WriteCommand
from ckite.sessions.client import Session
from ckite.write_result import WriteResult

if TYPE_CHECKING:
    from ckite.runtime.node import RaftNode


class ClientSession:
    """Writes through one client session: each applies exactly once, whatever is retried.

    ``write`` retries a write until it is applied or ``timeout`` passes (the member's write
    timeout by default). When it raises :class:`~ckite.errors.OutcomeUnknownError`, the error's
    ``retry(timeout=None)`` sends the very same request again, through whatever member leads
    now, and returns its result: it applies at most once in all. A
    :class:`~ckite.errors.NotAppliedError` means it did not apply. Safe to use from several
    threads. ::

        session = member.session()
        try:
            session.write(Increment("counter", 1))
        except OutcomeUnknownError as unknown:
            unknown.retry()          # applied once, whether or not the first attempt was
    """

    def __init__(self, node: RaftNode) -> None:
        self._node = node
        self._session = Session(node)

    @property
    def id(self) -> int | None:
        """The session's id (the index of the entry that opened it), once its first write opened it."""
        return self._session.id

    def write(self, command: WriteCommand, timeout: float | None = None) -> Any:
        return self._session.write(encode_command(command), self._timeout(timeout))

    def write_async(self, command: WriteCommand, timeout: float | None = None) -> Future[Any]:
        """One attempt, its future at once; an unknown outcome's error has ``retry()`` too."""
        return self._session.write_async(encode_command(command), self._timeout(timeout))

    def apply(self, command: WriteCommand, timeout: float | None = None) -> WriteResult:
        """As :meth:`write`, with the index and term of the entry the command was applied at: the
        first apply's, also when a retry is answered from the cluster's client table."""
        result: WriteResult = self._session.write(encode_command(command), self._timeout(timeout), indexed=True)
        return result

    def apply_async(self, command: WriteCommand, timeout: float | None = None) -> Future[WriteResult]:
        """As :meth:`write_async`, its future completing with a :class:`~ckite.write_result.WriteResult`."""
        return self._session.write_async(encode_command(command), self._timeout(timeout), indexed=True)

    def _timeout(self, timeout: float | None) -> float:
        return self._node.write_timeout if timeout is None else timeout
