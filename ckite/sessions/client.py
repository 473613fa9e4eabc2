"""The client's side of a session: numbering its requests, and retrying one without applying twice.

A :class:`Session` opens itself on its first write (one entry: its id is that entry's index),
numbers each request, and sends with every request the lowest number it still waits for, so
that the members keep only the outcomes it may still ask for. A request keeps its number however
often it is sent, through whatever member: the members answer a request they applied before
with its recorded outcome, so a retry never applies twice (Raft thesis §6.3).

Sending is the member's business (``send(payload, remaining)``: one attempt, through the
leader): here are only the numbers and the decision what to do after a failure.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ckite.errors import (
    CKiteError,
    CommandError,
    EncodingError,
    IdempotencyKeyReusedError,
    LeaderTimeoutError,
    MemberFailedError,
    NotAppliedError,
    OutcomeUnknownError,
    SessionExpiredError,
    StoppedError,
    WriteTimeoutError,
)
from ckite.sessions.request import OPEN_SESSION, encode_request

if TYPE_CHECKING:
    from ckite.runtime.node import RaftNode

#: Failures that end a request at once: retrying cannot change them.
FINAL = (CommandError, EncodingError, IdempotencyKeyReusedError, SessionExpiredError, StoppedError, MemberFailedError)


class Call:
    """One request of a session: its number stays the same whenever it is sent again."""

    __slots__ = ("session", "seq", "command", "key", "fingerprint")

    def __init__(self, session: Session, seq: int, command: bytes, key: str | None, fingerprint: str | None) -> None:
        self.session, self.seq, self.command, self.key, self.fingerprint = session, seq, command, key, fingerprint

    def payload(self) -> bytes:
        return encode_request(self.session.id or 0, self.seq, self.session.lowest_waiting(), self.command,
                              self.key, self.fingerprint)


class Session:
    """A client session of one member's :class:`~ckite.CKite` (``CKite.session()``).

    ``write`` retries a request until it is applied or its timeout passes; a failure is a
    :class:`~ckite.errors.NotAppliedError` (it did not apply: try anything) or an
    :class:`~ckite.errors.OutcomeUnknownError`, whose ``retry(timeout=None)`` sends the very same
    request again: it applies at most once whatever happened to the first. A session expires
    after an hour without a request (the cluster's ``session_timeout``); a request of an expired
    session fails with :class:`~ckite.errors.SessionExpiredError`, and a new session is needed.
    """

    def __init__(self, node: RaftNode, keep_failed: bool = True) -> None:
        self._node = node
        self._keep_failed = keep_failed   # a failed request stays open for its retry() (False: forgotten)
        self._lock = threading.Lock()
        self.id: int | None = None
        self._seqs = itertools.count(1)
        self._lowest_open = 1                 # every request below it is settled
        self._settled: set[int] = set()       # settled requests above it

    def lowest_waiting(self) -> int:
        """Every request below this number is settled: the members may forget their outcomes."""
        return self._lowest_open

    def write(self, data: bytes, timeout: float, key: str | None = None, fingerprint: str | None = None,
              indexed: bool = False) -> Any:
        """Send the encoded command until it is applied (its result, or with ``indexed`` a
        WriteResult whose index is that of the first apply) or ``timeout`` passes."""
        return self._run(self._new_call(data, key, fingerprint), self._node.clock() + timeout, indexed)

    def write_async(self, data: bytes, timeout: float, key: str | None = None,
                    fingerprint: str | None = None, indexed: bool = False) -> Future[Any]:
        """One attempt, its future at once: for many writes in flight. A failure says whether it
        applied; ``retry()`` on an unknown outcome sends it again, as :meth:`write` would. The
        first write of a session (which opens it) runs as :meth:`write` does, on a pool thread."""
        if self.id is None:
            return self._node.in_background(self.write, data, timeout, key, fingerprint, indexed)
        call = self._new_call(data, key, fingerprint)
        future = self._node.send_client_request_async(call.payload(), timeout, indexed)
        future.add_done_callback(lambda done: self._after_async(call, done, indexed))
        return future

    def _after_async(self, call: Call, done: Future[Any], indexed: bool) -> None:
        error = done.exception()
        if error is None or not self._prepare_retry(call, error, indexed):
            self._settle(call)

    def _new_call(self, data: bytes, key: str | None, fingerprint: str | None) -> Call:
        return Call(self, next(self._seqs), data, key, fingerprint)   # next() on a count is atomic

    def _settle(self, call: Call) -> None:
        """The request's outcome is known (or given up on): the members may forget it."""
        with self._lock:
            if call.seq < self._lowest_open or call.seq in self._settled:
                return
            self._settled.add(call.seq)
            while self._lowest_open in self._settled:
                self._settled.discard(self._lowest_open)
                self._lowest_open += 1

    def _run(self, call: Call, deadline: float, indexed: bool = False) -> Any:
        uncertain = False
        last: CKiteError | None = None
        while True:
            remaining = deadline - self._node.clock()
            if remaining <= 0:
                error: CKiteError = (WriteTimeoutError(f"{self._node.id}: the write was not applied within its "
                                                       f"timeout; it may still apply (last: {last})")
                                     if uncertain or last is None else last)
                if not isinstance(error, NotAppliedError) and self._prepare_retry(call, error, indexed):
                    raise error
                self._settle(call)
                raise error
            try:
                self._ensure_open(deadline)
                result = self._node.send_client_request(call.payload(), remaining, indexed)
            except FINAL as exc:
                if isinstance(exc, SessionExpiredError) and uncertain:
                    raise self._unknown(
                        call, f"the session expired while the write's outcome was unknown: {exc}", indexed) from exc
                self._settle(call)
                raise
            except CKiteError as exc:   # not applied, or not known: the same request again is safe
                uncertain = uncertain or not isinstance(exc, NotAppliedError)
                last = exc
                self._node.pause_before_retry()
                continue
            self._settle(call)
            return result

    def _unknown(self, call: Call, message: str, indexed: bool) -> OutcomeUnknownError:
        error = WriteTimeoutError(message)
        if not self._prepare_retry(call, error, indexed):
            self._settle(call)
        return error

    def _prepare_retry(self, call: Call, error: BaseException, indexed: bool) -> bool:
        """Give an unknown outcome its ``retry`` (which answers as the first attempt would have:
        a WriteResult for an indexed one); False when this session forgets failed requests."""
        if not (self._keep_failed and isinstance(error, OutcomeUnknownError)):
            return False
        error.retry = lambda timeout=None: self._run(   # type: ignore[attr-defined]
            call, self._node.clock() + (self._node.write_timeout if timeout is None else timeout), indexed)
        return True

    def _ensure_open(self, deadline: float) -> None:
        """Open the session on first use: its id is the index of the entry that opened it."""
        with self._lock:
            if self.id is not None:
                return
        opened = self._open_session(deadline)
        with self._lock:
            if self.id is None:
                self.id = opened

    def _open_session(self, deadline: float) -> int:
        last: CKiteError | None = None
        while (remaining := deadline - self._node.clock()) > 0:
            try:   # opening twice is harmless: the extra session is never used and expires
                session_id: int = self._node.send_client_request(OPEN_SESSION.encode(), remaining)
                return session_id
            except (StoppedError, MemberFailedError):
                raise
            except CKiteError as exc:
                last = exc
                self._node.pause_before_retry()
        raise last or LeaderTimeoutError(f"{self._node.id}: no session could be opened within the timeout")

    def reopen(self) -> None:
        """Forget the session's id (it expired): the next write opens a new one."""
        with self._lock:
            self.id = None
            self._seqs = itertools.count(1)
            self._lowest_open = 1
            self._settled.clear()


def retry_expired(session: Session, attempt: Callable[[], Any]) -> Any:
    """``attempt()``, once more with a new session if the session had expired (the request was
    certainly not applied then): what the member's own writes do, for whom a session is a detail."""
    try:
        return attempt()
    except SessionExpiredError:
        session.reopen()
        return attempt()
