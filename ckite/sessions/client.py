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
from collections import deque
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
from ckite.runtime.write_future import WriteFuture
from ckite.sessions.request import OPEN_SESSION, encode_request

if TYPE_CHECKING:
    from ckite.runtime.node import RaftNode

#: Failures that end a request at once: retrying cannot change them.
FINAL = (CommandError, EncodingError, IdempotencyKeyReusedError, SessionExpiredError, StoppedError, MemberFailedError)


#: How long a request whose outcome is unknown stays open for its ``retry()``: the members keep
#: its outcome until then (and, to keep the numbering simple, the outcomes of the session's later
#: requests). Once it passes, ``retry()`` no longer sends the request and the members may forget
#: it: a session with one request its caller never retried would otherwise grow without bound.
RETRY_WINDOW = 300.0


class _Numbering:
    """One incarnation of a session: its id once opened, and the numbers of its requests.

    A session that expired is replaced by a new incarnation; the requests of the old one keep
    theirs, so a late retry of one is refused as expired rather than taken for the new
    session's request of the same number. Settled requests move ``lowest_open`` on (what each
    request tells the members they may forget); a request held open for its retry is settled
    once its retry window passes."""

    __slots__ = ("id", "opening", "_lock", "_seqs", "_lowest_open", "_settled", "_held", "_in_flight")

    def __init__(self) -> None:
        self.id: int | None = None
        self.opening = threading.Lock()       # held by the one caller opening the session
        self._lock = threading.Lock()
        self._seqs = itertools.count(1)
        self._lowest_open = 1                 # every request below it is settled
        self._settled: set[int] = set()       # settled requests above it
        self._held: deque[tuple[float, int]] = deque()   # (until, seq) of requests open for retry(), oldest first
        self._in_flight: deque[tuple[int, Future[Any]]] = deque()   # settled once done (unless held)

    def next_seq(self) -> int:
        return next(self._seqs)   # next() on a count is atomic

    def settle(self, seq: int) -> None:
        """The request's outcome is known (or given up on): the members may forget it."""
        with self._lock:
            if seq >= self._lowest_open:
                self._settled.add(seq)
                self._advance()

    def hold(self, seq: int, until: float) -> None:
        """Keep the request open for its retry until ``until`` (the session's clock)."""
        self._held.append((until, seq))   # appends from several threads: deque.append is atomic

    def settle_when_done(self, seq: int, future: Future[Any]) -> None:
        """Settle the request once ``future`` is done, unless its failure was held for a retry:
        looked at when the next request is numbered, instead of a callback per future (a few
        microseconds a write on the leader)."""
        self._in_flight.append((seq, future))

    def is_settled(self, seq: int) -> bool:
        with self._lock:
            return seq < self._lowest_open or seq in self._settled

    def lowest_waiting(self, now: float) -> int:
        """Every request below this number is settled (held ones whose window passed, by now)."""
        in_flight, held = self._in_flight, self._held
        if (in_flight and in_flight[0][1].done()) or (held and held[0][0] <= now):
            with self._lock:
                while in_flight and in_flight[0][1].done():
                    seq, future = in_flight.popleft()
                    error = future.exception()
                    if error is None or not hasattr(error, "retry"):   # else held: see below
                        self._settled.add(seq)
                while held and held[0][0] <= now:
                    seq = held.popleft()[1]
                    if seq >= self._lowest_open:
                        self._settled.add(seq)
                self._advance()
        return self._lowest_open

    def _advance(self) -> None:
        settled = self._settled
        while self._lowest_open in settled:
            settled.discard(self._lowest_open)
            self._lowest_open += 1


class Call:
    """One request of a session: its number stays the same whenever it is sent again."""

    __slots__ = ("numbering", "seq", "command", "key", "fingerprint")

    def __init__(self, numbering: _Numbering, command: bytes, key: str | None, fingerprint: str | None) -> None:
        self.numbering, self.seq = numbering, numbering.next_seq()
        self.command, self.key, self.fingerprint = command, key, fingerprint

    def payload(self, now: float) -> bytes:
        """The request as sent at ``now`` (its session opened already)."""
        numbering = self.numbering
        assert numbering.id is not None, "a request is sent only once its session is open"
        return encode_request(numbering.id, self.seq, numbering.lowest_waiting(now), self.command,
                              self.key, self.fingerprint)

    def settle(self) -> None:
        self.numbering.settle(self.seq)


class _SessionFuture(WriteFuture):
    """The future of a session's request proposed on this leader: an unknown outcome set on it is
    given its ``retry()`` before anyone can see it, on the thread that sets it (the successes,
    nearly all, cost nothing extra)."""

    def __init__(self, on_unknown: Callable[[OutcomeUnknownError], object]) -> None:
        super().__init__()
        self._on_unknown = on_unknown

    def set_exception(self, exception: BaseException | None) -> None:
        if isinstance(exception, OutcomeUnknownError):
            self._on_unknown(exception)
        super().set_exception(exception)


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
        self._current = _Numbering()

    @property
    def id(self) -> int | None:
        """The session's id (the index of the entry that opened it), once opened."""
        return self._current.id

    def write(self, data: bytes, timeout: float, key: str | None = None, fingerprint: str | None = None,
              indexed: bool = False) -> Any:
        """Send the encoded command until it is applied (its result, or with ``indexed`` a
        WriteResult whose index is that of the first apply) or ``timeout`` passes."""
        return self._run(Call(self._current, data, key, fingerprint), self._node.clock() + timeout, indexed)

    def write_async(self, data: bytes, timeout: float, key: str | None = None,
                    fingerprint: str | None = None, indexed: bool = False) -> Future[Any]:
        """One attempt, its future at once: for many writes in flight. A failure says whether it
        applied; ``retry()`` on an unknown outcome sends it again, as :meth:`write` would. The
        first writes of a session (until it is open) run as :meth:`write` does, on a pool thread."""
        numbering = self._current
        if numbering.id is None:
            return self._node.in_background(self.write, data, timeout, key, fingerprint, indexed)
        call = Call(numbering, data, key, fingerprint)
        own = _SessionFuture(lambda error: self._prepare_retry(call, error, indexed))
        future = self._node.send_client_request_async(call.payload(self._node.clock()), timeout, indexed, own)
        if future is own:
            numbering.settle_when_done(call.seq, future)
        else:   # a pool thread's, forwarding: its failure gets the retry through a callback
            future.add_done_callback(lambda done: self._after_async(call, done, indexed))
        return future

    def _after_async(self, call: Call, done: Future[Any], indexed: bool) -> None:
        error = done.exception()
        if error is None or not self._prepare_retry(call, error, indexed):
            call.settle()

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
                call.settle()
                raise error
            try:
                self._ensure_open(call.numbering, deadline)
                result = self._node.send_client_request(call.payload(self._node.clock()), remaining, indexed)
            except FINAL as exc:
                if isinstance(exc, SessionExpiredError) and uncertain:
                    raise self._unknown(
                        call, f"the session expired while the write's outcome was unknown: {exc}", indexed) from exc
                call.settle()
                raise
            except CKiteError as exc:   # not applied, or not known: the same request again is safe
                uncertain = uncertain or not isinstance(exc, NotAppliedError)
                last = exc
                self._node.pause_before_retry()
                continue
            call.settle()
            return result

    def _unknown(self, call: Call, message: str, indexed: bool) -> OutcomeUnknownError:
        error = WriteTimeoutError(message)
        if not self._prepare_retry(call, error, indexed):
            call.settle()
        return error

    def _prepare_retry(self, call: Call, error: BaseException, indexed: bool) -> bool:
        """Give an unknown outcome its ``retry`` (which answers as the first attempt would have:
        a WriteResult for an indexed one) for :data:`RETRY_WINDOW` seconds; False when this
        session forgets failed requests."""
        if not (self._keep_failed and isinstance(error, OutcomeUnknownError)):
            return False
        call.numbering.hold(call.seq, self._node.clock() + RETRY_WINDOW)
        error.retry = lambda timeout=None: self._retry(call, timeout, indexed)   # type: ignore[attr-defined]
        return True

    def _retry(self, call: Call, timeout: float | None, indexed: bool) -> Any:
        if call.numbering.is_settled(call.seq):
            raise WriteTimeoutError(f"{self._node.id}: request {call.seq} was not retried within "
                                    f"{RETRY_WINDOW:g} s, so its outcome was forgotten; it may have applied")
        return self._run(call, self._node.clock() + (self._node.write_timeout if timeout is None else timeout),
                         indexed)

    def _ensure_open(self, numbering: _Numbering, deadline: float) -> None:
        """Open the session on first use: its id is the index of the entry that opened it. One
        caller opens it; the writes that come meanwhile wait for that one (each opening its own
        would leave sessions that are never used, held by every member until they expire)."""
        if numbering.id is not None:
            return
        if not numbering.opening.acquire(timeout=max(0.0, deadline - self._node.clock())):
            raise LeaderTimeoutError(f"{self._node.id}: the session was still opening when the write's timeout "
                                     "passed; nothing was sent")
        try:
            if numbering.id is None:
                numbering.id = self._open_session(deadline)
        finally:
            numbering.opening.release()

    def _open_session(self, deadline: float) -> int:
        last: CKiteError | None = None
        while (remaining := deadline - self._node.clock()) > 0:
            try:   # a retry may open a second session: harmless, it is never used and expires
                session_id: int = self._node.send_client_request(OPEN_SESSION.encode(), remaining)
                return session_id
            except (StoppedError, MemberFailedError):
                raise
            except CKiteError as exc:
                last = exc
                self._node.pause_before_retry()
        raise last or LeaderTimeoutError(f"{self._node.id}: no session could be opened within the timeout")

    def reopen(self) -> None:
        """The session expired: the next write opens a new one (numbered from 1 again). The
        requests of the expired one keep its id, so their retries are refused, never confused
        with the new session's."""
        with self._lock:
            if self._current.id is not None:   # else a new one is already there, not opened yet
                self._current = _Numbering()


def retry_expired(session: Session, attempt: Callable[[], Any]) -> Any:
    """``attempt()``, once more with a new session if the session had expired (the request was
    certainly not applied then): what the member's own writes do, for whom a session is a detail."""
    try:
        return attempt()
    except SessionExpiredError:
        session.reopen()
        return attempt()
