"""What one step of the consensus core decided must happen once its lock is released.

A step (a message, a reply, a tick, a client request) changes the core's memory under its
lock and records here what follows from it, etcd raft's ``Ready`` in spirit: durable writes
(queued in the :class:`~ckite.log.log_writer.LogWriter`; ``barrier`` is the last of them),
futures to complete, and threads to wake. The core carries the effects out after releasing the
lock, in this order: wake the senders (a leader's new entries go out while it writes them,
thesis §10.2.1), make the writes durable, complete the futures (their callbacks may be the
user's code), wake everyone else. So no disk or socket is waited on, and no callback runs,
under the lock; and nothing that depends on a write is visible before it is durable.
"""
from __future__ import annotations

from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Protocol


class Runtime(Protocol):
    """The threads an effect may wake (the threaded runtime; tests and the simulation ignore them)."""

    def wake_senders(self) -> None:
        """New entries, a read round or a role: the peer senders may have something to send."""

    def wake(self, effects: Effects) -> None:
        """Everything else the step asked for (applier, election timer, leader waiters, peers)."""


class NoRuntime:
    """Nothing to wake: the caller (a test, the simulation) polls the core itself."""

    def wake_senders(self) -> None: ...
    def wake(self, effects: Effects) -> None: ...


@dataclass
class Effects:
    """Filled under the consensus lock by one step; carried out without it."""

    #: The last durable write this step enqueued (or that was enqueued before it): its outcome
    #: (a reply, a completion) may not be seen before the log writer made it durable.
    barrier: int = 0
    #: Set by a reply step whose answer rests on less than every write decided before it (an
    #: empty AppendEntries matched entries already durable): the last write it does rest on.
    reply_rests_on: int | None = None
    completions: list[tuple[Future[Any], Any, BaseException | None]] = field(default_factory=list)
    wake_senders: bool = False
    wake_applier: bool = False
    wake_timer: bool = False
    leader_changed: bool = False
    peers_changed: bool = False               #: the members this one talks to changed

    def complete(self, future: Future[Any], result: Any) -> None:
        self.completions.append((future, result, None))

    def fail(self, future: Future[Any], error: BaseException) -> None:
        self.completions.append((future, None, error))

    def complete_futures(self) -> None:
        """Outside the lock: a future's done-callbacks run here, on this thread."""
        for future, result, error in self.completions:
            try:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
            except InvalidStateError:
                pass   # completed already (a shared read future, a failure that raced a result)
