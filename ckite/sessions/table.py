"""The client table: which requests of which sessions were applied, and with what outcome.

Every member keeps one, changed only while applying entries, in log order, so it is the same
on every member at every index (it is part of the replicated state, and of every snapshot).
For each entry that carries a :class:`~ckite.sessions.request.ClientRequest`, :meth:`admit`
decides: apply it, answer it from an outcome recorded before (a retry: never applied twice),
or refuse it (an unknown or expired session, an idempotency key reused for another request).

Time is the log's: the leader stamps every such entry with its clock, and the table's clock is
the largest stamp applied so far (a new leader's slower clock never moves it back). A session
idle for ``session_timeout`` of that time expires, and an idempotency key is forgotten
``key_ttl`` after its first use: every member expires them at the same entry.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ckite.errors import CKiteError, CommandError, IdempotencyKeyReusedError, SessionExpiredError
from ckite.sessions.request import ClientRequest

#: A session that sends nothing for this long (log time) expires.
DEFAULT_SESSION_TIMEOUT_MS = 60 * 60 * 1000
#: An idempotency key is remembered this long after its first use (log time).
DEFAULT_KEY_TTL_MS = 24 * 60 * 60 * 1000


class Outcome:
    """What a request came to; filled once the state machine applied it (a retry in the same
    batch of entries shares the object, so it learns the outcome with the first).

    ``index`` and ``term`` are those of the entry at which the request was applied the first
    time (0 until then): a retry answered from the table reports where its command took effect,
    not where the retry landed, so ``CKite.apply`` gives the same answer however often it is sent.
    """

    __slots__ = ("result", "error", "index", "term")

    def __init__(self, result: Any = None, error: CKiteError | None = None, index: int = 0, term: int = 0) -> None:
        self.result = result
        self.error = error
        self.index = index
        self.term = term

    def encode(self) -> list[Any]:
        """``[result, index, term]`` or ``[None, kind, message, error_type, index, term]``. Snapshots
        written before the index was recorded hold ``[result]`` or the four-item error: still read
        (with index 0: unknown)."""
        if self.error is None:
            return [self.result, self.index, self.term]
        return [None, type(self.error).__name__, str(self.error), getattr(self.error, "error_type", ""),
                self.index, self.term]

    @classmethod
    def decode(cls, data: list[Any]) -> Outcome:
        if len(data) in (1, 3):
            return cls(data[0], None, *data[1:])
        _, kind, message, error_type, *position = data
        if kind == CommandError.__name__:
            return cls(None, CommandError(message.partition(": ")[2], error_type), *position)
        return cls(None, CKiteError(message), *position)

    def applied_at(self, index: int, term: int) -> None:
        """The state machine applied the request at entry ``index`` of ``term`` (the first time)."""
        self.index, self.term = index, term


class Decision:
    """``apply``: a new request (its :attr:`outcome` is to be filled); else ``outcome`` is the
    answer already (a duplicate, a session opened, or a refusal in ``outcome.error``). A plain
    class: one is made per entry applied, and a frozen dataclass costs several times more."""

    __slots__ = ("apply", "outcome")

    def __init__(self, apply: bool, outcome: Outcome) -> None:
        self.apply = apply
        self.outcome = outcome


@dataclass
class _Session:
    last_active: int
    acked: int = 1
    #: By seq, in the order applied. An OrderedDict, not a dict: outcomes leave from the front, and
    #: finding a dict's first item walks past every slot deleted since its last resize (the
    #: front of a dict used as a queue costs O(n): ~40% of a session write's cost, measured).
    outcomes: OrderedDict[int, Outcome] = field(default_factory=OrderedDict)


@dataclass
class _KeyRecord:
    fingerprint: str
    first_used: int
    outcome: Outcome


class ClientTable:
    def __init__(self, session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
                 key_ttl_ms: int = DEFAULT_KEY_TTL_MS) -> None:
        self.session_timeout_ms = session_timeout_ms
        self.key_ttl_ms = key_ttl_ms
        self.now = 0   # the log's clock: the largest stamp applied
        self._sessions: OrderedDict[int, _Session] = OrderedDict()   # least recently active first
        self._keys: OrderedDict[str, _KeyRecord] = OrderedDict()     # first used first
        #: (index, session) of every session this member saw expire, for the simulation's check.
        self.expired: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._sessions)

    def admit(self, index: int, stamp: int, request: ClientRequest) -> Decision:
        """Judge the request the entry at ``index`` carries (stamped ``stamp``), in log order.
        Run for every session entry on every member: kept to plain local operations."""
        if stamp > self.now:
            self._advance(index, stamp)
        session_id, seq, acked, _, key, fingerprint = request
        if session_id == 0:
            self._sessions[index] = _Session(self.now)
            return Decision(False, Outcome(index))   # the session's id: its opening entry's index
        session = self._sessions.get(session_id)
        if session is None:
            return Decision(False, Outcome(error=SessionExpiredError(
                f"session {session_id} is unknown: it expired (idle for more than "
                f"{self.session_timeout_ms / 1000:g} s of the log's time) or was never opened; nothing was applied")))
        session.last_active = self.now
        self._sessions.move_to_end(session_id)
        if acked > session.acked:
            self._forget_acknowledged(session, acked)
        outcomes = session.outcomes
        known = outcomes.get(seq)
        if known is not None:
            return Decision(False, known)   # a retry: answered from the first time
        if seq < session.acked:
            return Decision(False, Outcome(error=CKiteError(
                f"request {seq} of session {session_id} was acknowledged by its client already")))
        if key is not None:
            record = self._keys.get(key)
            if record is not None:
                if record.fingerprint != fingerprint:
                    return Decision(False, Outcome(error=IdempotencyKeyReusedError(
                        f"idempotency key {key!r} was used for another request; nothing was applied")))
                outcomes[seq] = record.outcome
                return Decision(False, record.outcome)
        outcome = outcomes[seq] = Outcome()
        if key is not None:
            self._keys[key] = _KeyRecord(fingerprint or "", self.now, outcome)
        return Decision(True, outcome)

    def _advance(self, index: int, stamp: int) -> None:
        """The log's clock moved on to ``stamp``: expire what it passed (not otherwise)."""
        self.now = stamp
        horizon = self.now - self.session_timeout_ms
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.last_active >= horizon:
                break
            del self._sessions[session_id]
            self.expired.append((index, session_id))
        horizon = self.now - self.key_ttl_ms
        while self._keys and next(iter(self._keys.values())).first_used < horizon:
            self._keys.popitem(last=False)

    @staticmethod
    def _forget_acknowledged(session: _Session, acked: int) -> None:
        """Drop the outcomes below ``acked`` from the oldest on, stopping at the first one kept:
        O(1) per request however many are in flight (scanning them all cost ~25 µs at 2,000).
        Requests arrive nearly in seq order; one that came late keeps its outcome until those
        before it in the dict go (bounded by the window, and the same on every member)."""
        session.acked = acked
        outcomes = session.outcomes
        while outcomes:
            seq = next(iter(outcomes))
            if seq >= acked:
                break
            del outcomes[seq]

    # --- snapshots -------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The whole table, for a snapshot (taken between two batches: every outcome is filled)."""
        encoded: bytes = msgpack.packb({
            "now": self.now,
            "sessions": [[sid, s.last_active, s.acked, [[seq, o.encode()] for seq, o in s.outcomes.items()]]
                         for sid, s in self._sessions.items()],
            "keys": [[key, r.fingerprint, r.first_used, r.outcome.encode()] for key, r in self._keys.items()],
        }, use_bin_type=True)
        return encoded

    def restore(self, data: bytes) -> None:
        """Replace the table with a snapshot's (shared outcomes between a key and a session's
        request are restored as equal copies: both answer the same)."""
        document = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.now = document["now"]
        self._sessions = OrderedDict(
            (sid, _Session(last_active, acked, OrderedDict((seq, Outcome.decode(o)) for seq, o in outcomes)))
            for sid, last_active, acked, outcomes in document["sessions"])
        self._keys = OrderedDict((key, _KeyRecord(fingerprint, first_used, Outcome.decode(o)))
                                 for key, fingerprint, first_used, o in document["keys"])
