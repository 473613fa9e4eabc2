"""Is a history of put/get/CAS operations linearizable, key by key, for a register?

Keys are independent registers, so each key's history is checked on its own (P-compositionality:
a history is linearizable iff every key's sub-history is). One key is searched the way Wing &
Gong and Lowe's "just-in-time linearization" do it, in Porcupine's form: the calls and returns sit
in one time-ordered list; the search linearizes any call that precedes the first pending return
and whose effect the register allows, and backtracks when a return comes up before its call was
linearized. A cache of (set of linearized operations, register value) prunes states already seen,
which is what makes it fast on real histories.

How outcomes are modelled (the client decided them, see ``history``):

* ``ok`` operations took effect between their invocation and their completion.
* an ``info`` (unknown) put or CAS took effect at some point after its invocation, or never: its
  completion is put at infinity, and "never" is the same as "after everything else". An unknown
  CAS that takes effect may also have found another value and done nothing.
* a CAS that ``fail``-ed with a mismatch (409) is a read of the value the server reported, which
  must differ from the expected one. Other failures (refused connection) changed nothing and
  observed nothing: they are dropped, like unknown reads.

On a violation the offending key's history is shrunk to a small sub-history that is still not
linearizable. Removing an operation removes every operation that observed a value it wrote, so
the shrunk history is a real witness (a sub-history closed that way of a linearizable history is
linearizable), not an artefact of the shrinking.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tests.jepsen.history import CAS, GET, INFO, OK, PUT, History, Op

INFINITY = float("inf")
#: The register's value before any write: the key is absent.
INITIAL = None

# What one operation does to the register, once normalized.
_WRITE, _READ, _SWAP, _MAYBE_SWAP, _IMPOSSIBLE = range(5)


@dataclass(frozen=True)
class _Step:
    """An operation as the search sees it: an effect and an interval."""

    effect: int
    value: str | None      # written (write, swaps) or observed (read)
    expected: str | None   # swaps only
    start: float
    end: float


@dataclass
class KeyResult:
    """The verdict on one key: ``linearizable`` is None when the search ran out of time."""

    key: str
    linearizable: bool | None
    ops: int
    checked: int
    witness: list[Op] = field(default_factory=list)
    seconds: float = 0.0

    def explain(self) -> str:
        if self.linearizable:
            return f"key {self.key!r}: linearizable ({self.checked} of {self.ops} operations checked)"
        if self.linearizable is None:
            return f"key {self.key!r}: unknown (search budget exhausted after {self.seconds:.1f}s)"
        lines = "\n".join("  " + op.describe() for op in self.witness)
        return f"key {self.key!r}: NOT linearizable; minimal offending sub-history:\n{lines}"


@dataclass
class CheckResult:
    keys: list[KeyResult]

    @property
    def linearizable(self) -> bool | None:
        """False if any key is not; None if none is not but some could not be decided."""
        verdicts = [k.linearizable for k in self.keys]
        if False in verdicts:
            return False
        return None if None in verdicts else True

    def explain(self) -> str:
        return "\n".join(k.explain() for k in self.keys)


def check_history(history: History, budget: float = 60.0) -> CheckResult:
    """Check every key of ``history``; ``budget`` seconds in all, shared out by key size."""
    by_key = history.by_key()
    total = sum(len(ops) for ops in by_key.values()) or 1
    return CheckResult([check_key(key, ops, budget * max(len(ops) / total, 0.05))
                        for key, ops in sorted(by_key.items())])


def check_key(key: str, ops: Sequence[Op], budget: float = 30.0) -> KeyResult:
    """Check one key's operations within ``budget`` seconds; a violation is then shrunk for at
    most half as long again (a bigger witness is still a witness, only harder to read)."""
    started = time.monotonic()
    deadline = started + budget
    relevant = relevant_ops(ops)
    verdict = linearizable(relevant, deadline)
    result = KeyResult(key, verdict, len(ops), len(relevant))
    if verdict is False:
        result.witness = sorted(shrink(relevant, time.monotonic() + budget / 2), key=lambda op: op.invoke)
    result.seconds = time.monotonic() - started
    return result


def relevant_ops(ops: Iterable[Op]) -> list[Op]:
    """The operations that constrain the search: what changed or observed the register.

    Unknown writes whose value nobody observed are dropped too, when written values are unique
    (the workload makes them so): such a write can always be placed after everything else, so it
    never decides anything, and every one kept multiplies the states the search may visit.
    """
    kept = [op for op in ops if _effect(op) is not None]
    written = [op.value for op in kept if op.writes]
    if len(written) != len(set(written)):
        return kept
    observed = {_observed(op) for op in kept if _observes(op)}
    return [op for op in kept if not (op.writes and op.outcome == INFO and op.value not in observed)]


def linearizable(ops: Sequence[Op], deadline: float = INFINITY) -> bool | None:
    """The search itself: True, False, or None when ``deadline`` (monotonic) passed first."""
    return _search([_step(op) for op in ops], deadline)


def shrink(ops: Sequence[Op], deadline: float = INFINITY) -> list[Op]:
    """A small non-linearizable sub-history of the non-linearizable ``ops``.

    Delta debugging: try to remove chunks (halves, quarters ... single operations), each with
    the operations that observed what it wrote; keep a removal when what remains is still not
    linearizable. Stops early, with what it has, at ``deadline``.
    """
    current = list(ops)
    chunk = max(len(current) // 2, 1)
    while True:
        index, removed = 0, False
        while index < len(current) and time.monotonic() < deadline:
            dropped = _with_observers(current[index:index + chunk], current)
            rest = [op for op in current if id(op) not in dropped]
            if rest and linearizable(rest, deadline) is False:
                current, removed = rest, True
            else:
                index += chunk
        if time.monotonic() >= deadline or (chunk == 1 and not removed):
            return current
        chunk = max(chunk // 2, 1)


def _with_observers(removed: Iterable[Op], ops: Sequence[Op]) -> set[int]:
    """ids of ``removed`` and, transitively, of every operation observing a value they wrote."""
    dropped = {id(op) for op in removed}
    values = {op.value for op in removed if op.writes}
    while values:
        newly = [op for op in ops if id(op) not in dropped and _observes(op) and _observed(op) in values]
        dropped.update(id(op) for op in newly)
        values = {op.value for op in newly if op.writes}
    return dropped


def _observes(op: Op) -> bool:
    """Does ``op`` depend on a value being in the register? An unknown CAS does: it can only
    have swapped if its expected value was there."""
    return (op.kind == GET and op.outcome == OK) or (op.kind == CAS and op.outcome in (OK, INFO)) or op.mismatch


def _observed(op: Op) -> str | None:
    """The value ``op`` saw in the register (a CAS that swapped saw its expected value)."""
    return op.result if op.kind == GET or op.mismatch else op.expected


def _effect(op: Op) -> int | None:
    """What ``op`` does to the register, or None when it neither changed nor observed it."""
    if op.kind == PUT:
        return _WRITE if op.outcome in (OK, INFO) else None
    if op.kind == GET:
        return _READ if op.outcome == OK else None
    if op.outcome == OK:
        return _SWAP
    if op.outcome == INFO:
        return _MAYBE_SWAP
    if op.mismatch:   # a mismatch on the very value expected cannot happen
        return _IMPOSSIBLE if op.result == op.expected else _READ
    return None


def _step(op: Op) -> _Step:
    effect = _effect(op)
    if effect is None:
        raise ValueError(f"operation has no effect to check: {op.describe()}")
    end = INFINITY if op.outcome == INFO or op.complete is None else op.complete
    value = op.result if effect in (_READ, _IMPOSSIBLE) else op.value
    return _Step(effect, value, op.expected, op.invoke, end)


def _apply(step: _Step, state: str | None) -> tuple[bool, str | None]:
    """The register's sequential specification: may ``step`` happen now, and what is left."""
    effect = step.effect
    if effect == _WRITE:
        return True, step.value
    if effect == _READ:
        return state == step.value, state
    if effect == _SWAP:
        return state == step.expected, step.value
    if effect == _MAYBE_SWAP:
        return True, step.value if state == step.expected else state
    return False, state


def _search(steps: Sequence[_Step], deadline: float) -> bool | None:
    """Porcupine's ``checkSingle`` over a doubly linked list of call and return entries.

    Entry 0 is the head; entries 1..2n are calls and returns in time order (a call before a
    return at the same instant: such operations count as concurrent). ``lift`` unlinks a call
    and its return once the call is linearized; ``unlift`` relinks them on backtracking, in
    reverse order, so the list is restored exactly (dancing links).
    """
    count = len(steps)
    order = sorted([(s.start, 0, i) for i, s in enumerate(steps)] + [(s.end, 1, i) for i, s in enumerate(steps)])
    size = 2 * count + 1
    nxt, prv = [-1] * size, [-1] * size
    is_call, op_of, match = [False] * size, [0] * size, [0] * size
    call_entry = [0] * count
    for position, (_, kind, op) in enumerate(order, start=1):
        is_call[position], op_of[position] = kind == 0, op
        if kind == 0:
            call_entry[op] = position
        else:
            match[call_entry[op]] = position
        prv[position], nxt[position - 1] = position - 1, position

    def lift(entry: int) -> None:
        for node in (entry, match[entry]):
            nxt[prv[node]] = nxt[node]
            if nxt[node] != -1:
                prv[nxt[node]] = prv[node]

    def unlift(entry: int) -> None:
        for node in (match[entry], entry):
            nxt[prv[node]] = node
            if nxt[node] != -1:
                prv[nxt[node]] = node

    state: str | None = INITIAL
    linearized = 0
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[int, str | None]] = []
    entry = nxt[0]
    iterations = 0
    while nxt[0] != -1:
        iterations += 1
        if iterations % 4096 == 0 and time.monotonic() > deadline:
            return None
        if is_call[entry]:
            op = op_of[entry]
            allowed, after = _apply(steps[op], state)
            if allowed:
                marked = linearized | (1 << op)
                if (marked, after) not in seen:
                    seen.add((marked, after))
                    stack.append((entry, state))
                    state, linearized = after, marked
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << op_of[entry])
            unlift(entry)
            entry = nxt[entry]
    return True
