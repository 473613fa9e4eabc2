"""The clients: threads issuing put/get/CAS on a few keys against random members (the
``register`` workload; ``counter.py`` is the other one), recording each operation with the
outcome the HTTP answer allows them to claim.

Outcome rules (the checker's soundness rests on them; :func:`perform` applies them for every
workload):

* 200 is ``ok`` (an increment's with the value it returned); a 404 on a get is ``ok`` with
  "absent"; a 409 on a CAS is ``fail`` with the current value the server reported
  (``MISMATCH``: an observation, see ``history``); a 4xx on an increment is ``fail``
  (``REJECTED``: the member refused the request, and would refuse it again).
* a refused connection is ``fail``: the member is down and the request never left this process.
* anything else — 503 (no leader, timeout: "outcome unknown" for writes), a timeout, a reset, a
  response cut short by a kill, an unexpected status — is ``info``: the write may have happened,
  now or later.

A client that got ``info`` may still have its request in flight, so, as in Jepsen, it continues
as a new process id: one process never has two operations open at once. Every written value is
unique (``p<process>-<n>``), which the checker's pruning and shrinking rely on.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from typing import ClassVar

from tests.jepsen.history import CAS, FAIL, GET, INCR, INFO, MISMATCH, OK, PUT, REFUSED, REJECTED, Op, Recorder
from tests.processes import HttpResult, KVClient, Member

logger = logging.getLogger(__name__)

#: Longer than ckite's own write and read timeouts (its 503 comes first) but short enough that a
#: client stuck on a paused member soon moves on.
CLIENT_TIMEOUT = 4.0


@dataclass(frozen=True)
class ClientsConfig:
    """What every workload's clients have: how many, and their pace."""

    #: The workload's name on the command line (``--workload``) and in a history's meta.
    name: ClassVar[str] = ""
    clients: int = 4
    #: Pause between a client's operations, uniform in [0, think] seconds.
    think: float = 0.05


@dataclass(frozen=True)
class WorkloadConfig(ClientsConfig):
    name: ClassVar[str] = "register"
    keys: int = 4
    #: Relative weights of get, put and CAS.
    mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    #: Read with ``?local=true`` (a member's own state, possibly stale): not linearizable, so
    #: a run with it must come out INVALID — the suite's test of itself.
    local_reads: bool = False


class ClientThreads:
    """``config.clients`` threads, each running :meth:`_issue` (the workload's) until :meth:`stop`,
    on the keys in :attr:`keys` (which the runner reads at the end)."""

    def __init__(self, members: Sequence[Member], recorder: Recorder, config: ClientsConfig, keys: list[str],
                 seed: int) -> None:
        self.members = list(members)
        self.recorder = recorder
        self.config = config
        self.keys = keys
        self._seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Exceptions that ended a client thread: the run is void (fewer clients than claimed).
        self.errors: list[str] = []

    def start(self) -> None:
        for index in range(self.config.clients):
            thread = threading.Thread(target=self._client, args=(index,), name=f"jepsen-client-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT * 2)

    def _client(self, index: int) -> None:
        try:
            self._issue(index)
        except Exception as exc:
            logger.exception("client %d died", index)
            with self._lock:
                self.errors.append(f"client {index} died: {exc!r}")

    def _issue(self, index: int) -> None:
        raise NotImplementedError


class Workload(ClientThreads):
    """The register workload: ``config.clients`` threads doing put/get/CAS on ``config.keys``
    keys, recording into ``recorder`` until :meth:`stop`."""

    config: WorkloadConfig

    def __init__(self, members: Sequence[Member], recorder: Recorder, config: WorkloadConfig, seed: int) -> None:
        super().__init__(members, recorder, config, [f"k{i}" for i in range(config.keys)], seed)
        self._last_seen: dict[str, str | None] = {}   # per key: the value some client saw last

    def _issue(self, index: int) -> None:
        rng = random.Random(f"{self._seed}-{index}")
        process, count = index, 0
        while not self._stop.is_set():
            count += 1
            kind = rng.choices((GET, PUT, CAS), self.config.mix)[0]
            key = rng.choice(self.keys)
            member = rng.choice(self.members)
            with self._lock:
                seen = self._last_seen.get(key)
            value = f"p{process}-{count}" if kind != GET else None
            expected = (seen if seen is not None else "none") if kind == CAS else None
            op = self.recorder.invoke(process, kind, key, value, expected, member.name)
            outcome = perform(op, member.client(CLIENT_TIMEOUT), self.recorder, self.config.local_reads)
            if outcome.outcome == INFO:
                process += self.config.clients   # the old process may still have its request in flight
            observed = _seen_value(outcome)
            if observed is not None:
                with self._lock:
                    self._last_seen[key] = observed
            self._stop.wait(rng.uniform(0, self.config.think))


def perform(op: Op, client: KVClient, recorder: Recorder, local_read: bool = False) -> Op:
    """Send ``op`` through ``client`` and complete it in ``recorder`` by the outcome rules."""
    try:
        if op.kind == PUT:
            answer = client.put(op.key, op.value or "")
        elif op.kind == GET:
            answer = client.get(op.key, local=local_read)
        elif op.kind == INCR:
            answer = client.incr(op.key, idempotency_key=op.idempotency_key)
        else:
            answer = client.cas(op.key, op.expected or "", op.value or "")
    except OSError as exc:
        reason = getattr(exc, "reason", exc)   # urllib wraps connection errors in URLError
        if isinstance(reason, ConnectionRefusedError):
            return recorder.complete(op, FAIL, error=f"{REFUSED}: {reason}")
        return recorder.complete(op, INFO, error=f"{type(reason).__name__}: {reason}")
    except HTTPException as exc:   # e.g. IncompleteRead: the member died while answering
        return recorder.complete(op, INFO, error=f"{type(exc).__name__}: {exc!r}")
    return _complete(op, answer, recorder)


def _complete(op: Op, answer: HttpResult, recorder: Recorder) -> Op:
    if answer.status == 200:
        return recorder.complete(op, OK, _value(answer) if op.kind in (GET, INCR) else None)
    if answer.status == 404 and op.kind == GET:
        return recorder.complete(op, OK, None)
    if answer.status == 409 and op.kind == CAS:
        return recorder.complete(op, FAIL, _value(answer), MISMATCH)
    if 400 <= answer.status < 500 and op.kind == INCR:
        return recorder.complete(op, FAIL, error=f"{REJECTED}: HTTP {answer.status}: {_error(answer)}")
    return recorder.complete(op, INFO, error=f"HTTP {answer.status}: {_error(answer)}")


def _value(answer: HttpResult) -> str | None:
    return answer.json()["value"]


def _error(answer: HttpResult) -> str:
    try:
        return str(answer.json().get("error", ""))[:200]
    except ValueError:
        return answer.text[:200]


def _seen_value(op: Op) -> str | None:
    if op.outcome == OK:
        return op.result if op.kind == GET else op.value
    return op.result if op.mismatch else None
