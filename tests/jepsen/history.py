"""What the clients did and saw, and what the nemesis did, on one monotonic timeline.

An :class:`Op` is one client operation from invocation to completion. Its outcome says what
the client *knows*: ``ok`` (it happened, with this result), ``fail`` (it certainly did not
change the state: a refused connection, a CAS that answered 409 with the current value —
which is still an observation, see ``result`` — or an increment a member rejected with a 4xx)
or ``info`` (unknown: a timeout or a 503 on a write may or may not have taken effect, at any
time after the invocation). The checker needs
exactly that distinction, so the client code decides it once, here, and nothing guesses later.

Times are seconds on ``time.monotonic()`` relative to the recorder's start: wall clocks jump,
and a history mixes threads whose order only a single monotonic clock can tell.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PUT, GET, CAS, INCR = "put", "get", "cas", "incr"
OK, FAIL, INFO = "ok", "fail", "info"
#: The ``error`` of a CAS that failed because the current value differed (HTTP 409): its
#: ``result`` is then the value the server saw, an observation like a read's.
MISMATCH = "mismatch"
#: The start of the ``error`` of an increment a member answered with a 4xx: it did not apply,
#: and sending it again under its idempotency key would get the same answer.
REJECTED = "rejected"
#: The start of the ``error`` of an operation whose connection was refused: it reached no member.
REFUSED = "refused"
KINDS = (PUT, GET, CAS, INCR)
OUTCOMES = (OK, FAIL, INFO)
#: The process of the runner's final reads, after the clients stopped (see ``runner``).
FINAL_PROCESS = -1


@dataclass
class Op:
    """One client operation on one key.

    ``value`` is what a put writes or a CAS swaps in; ``expected`` is a CAS's expected value;
    ``result`` is what the operation observed: a get's value (None: the key is absent) or, for a
    CAS that failed with 409, the current value the server reported, or the counter's value an
    increment returned. An increment's ``idempotency_key`` names it: the attempts that share
    one are the same increment, sent again. ``complete`` is None while the operation is in
    flight (and stays None for one the run ended before it returned).
    """

    index: int
    process: int
    kind: str
    key: str
    value: str | None = None
    expected: str | None = None
    invoke: float = 0.0
    complete: float | None = None
    outcome: str | None = None
    result: str | None = None
    node: str = ""
    error: str = ""
    idempotency_key: str = ""

    @property
    def writes(self) -> bool:
        return self.kind in (PUT, CAS)

    @property
    def mismatch(self) -> bool:
        """A CAS refused because the current value was ``result``: a read, in effect."""
        return self.kind == CAS and self.outcome == FAIL and self.error == MISMATCH

    @property
    def rejected(self) -> bool:
        """An increment a member answered with a 4xx: not applied, and no retry would apply it."""
        return self.kind == INCR and self.outcome == FAIL and self.error.startswith(REJECTED)

    def describe(self) -> str:
        """One readable line, for a violation report."""
        if self.kind == PUT:
            what = f"put {self.key}={self.value!r}"
        elif self.kind == GET:
            what = f"get {self.key} -> {self.result!r}" if self.outcome == OK else f"get {self.key}"
        elif self.kind == INCR:
            what = f"incr {self.key} ({self.idempotency_key})" + (f" -> {self.result!r}" if self.outcome == OK else "")
        else:
            what = f"cas {self.key} {self.expected!r}->{self.value!r}"
            if self.outcome == FAIL and self.error == MISMATCH:
                what += f" (mismatch: was {self.result!r})"
        end = "..." if self.complete is None else f"{self.complete:9.3f}"
        extra = f" [{self.error}]" if self.error and self.error != MISMATCH else ""
        return f"#{self.index:<6} p{self.process:<3} {self.invoke:9.3f} {end}  {self.outcome or 'open':4}  " \
               f"{what}{extra} @{self.node}"


@dataclass
class Event:
    """A nemesis action (``start`` or ``heal`` of a fault) on the history's timeline."""

    time: float
    phase: str
    fault: str
    detail: str = ""


@dataclass
class History:
    """Operations and nemesis events, plus free-form facts about the run (``meta``)."""

    ops: list[Op] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def by_key(self) -> dict[str, list[Op]]:
        keys: dict[str, list[Op]] = {}
        for op in self.ops:
            keys.setdefault(op.key, []).append(op)
        return keys

    def final_values(self) -> dict[str, str | None]:
        """What the final reads (``FINAL_PROCESS``) returned, by key (None: absent); a key whose
        final read never succeeded is missing."""
        return {op.key: op.result for op in self.ops
                if op.process == FINAL_PROCESS and op.kind == GET and op.outcome == OK}

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "ops": [asdict(op) for op in self.ops],
                "events": [asdict(event) for event in self.events]}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> History:
        return cls([Op(**op) for op in document.get("ops", [])],
                   [Event(**event) for event in document.get("events", [])], dict(document.get("meta", {})))

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=None, separators=(",", ":")))

    @classmethod
    def load(cls, path: Path | str) -> History:
        return cls.from_json(json.loads(Path(path).read_text()))


class Recorder:
    """Thread-safe history under construction: clients call :meth:`invoke` before sending and
    :meth:`complete` when the answer (or its absence) is known; the nemesis calls :meth:`event`."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._origin = clock()
        self._lock = threading.Lock()
        self._history = History()

    def now(self) -> float:
        return self._clock() - self._origin

    def invoke(self, process: int, kind: str, key: str, value: str | None = None, expected: str | None = None,
               node: str = "", idempotency_key: str = "") -> Op:
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        with self._lock:
            op = Op(len(self._history.ops), process, kind, key, value, expected, self.now(), node=node,
                    idempotency_key=idempotency_key)
            self._history.ops.append(op)
        return op

    def complete(self, op: Op, outcome: str, result: str | None = None, error: str = "") -> Op:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        with self._lock:
            op.complete, op.outcome, op.result, op.error = self.now(), outcome, result, error
        return op

    def event(self, phase: str, fault: str, detail: str = "") -> Event:
        with self._lock:
            event = Event(self.now(), phase, fault, detail)
            self._history.events.append(event)
        return event

    def snapshot(self, meta: dict[str, Any] | None = None) -> History:
        """A copy of the history so far; operations still open become ``info`` (unknown)."""
        with self._lock:
            ops = [Op(**asdict(op)) for op in self._history.ops]
            events = list(self._history.events)
        for op in ops:
            if op.outcome is None:
                op.outcome, op.error = INFO, op.error or "still open at the end of the run"
        return History(ops, events, dict(meta or {}))


def summarize(ops: Iterable[Op]) -> dict[str, int]:
    """Counts by outcome, for the one-line verdict."""
    counts = {outcome: 0 for outcome in OUTCOMES}
    for op in ops:
        counts[op.outcome or INFO] += 1
    return counts
