"""How members reach each other: the interface the runtime uses, independent of Thrift.

Implementations: :class:`~ckite.rpc.thrift_transport.ThriftTransport` (the default, real
sockets) and :class:`~ckite.rpc.local.LocalTransport` (in-process, for tests, with
switches to cut links).
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Protocol

from ckite.errors import CKiteError, RpcError
from ckite.messages import Request, Response

#: What :meth:`Pipeline.wait` returns: the request, the sender's context, and the reply or the
#: error that stands for it (the peer's own :class:`CKiteError`, or :class:`RpcError` when lost).
Outcome = tuple[Request, Any, "Response | CKiteError"]


class RpcHandler(Protocol):
    """The receiving side: one member's answer to each request.

    It may raise any :class:`ckite.errors.CKiteError`; the transport carries the error's
    class, message and (for :class:`~ckite.errors.NotLeaderError`) the leader back to the
    caller, which sees the same exception raised.
    """

    def handle(self, request: Request) -> Response: ...


class Transport(ABC):
    """Serves one member's handler and calls other members; ``call`` is safe from any thread."""

    @abstractmethod
    def serve(self, binding: str, handler: RpcHandler) -> None:
        """Start answering requests sent to ``binding`` ("host:port"); returns once listening."""

    @abstractmethod
    def call(self, address: str, request: Request, timeout: float) -> Response:
        """Send ``request`` to the member at ``address`` and wait at most ``timeout`` seconds.

        Raises :class:`~ckite.errors.RpcError` when the member cannot be reached or answers
        garbage, or the :class:`~ckite.errors.CKiteError` the remote handler raised.
        """

    def open_pipeline(self, address: str, timeout: float) -> Pipeline:
        """An ordered stream of requests to ``address`` (a leader's replication to one peer).

        This default makes one blocking :meth:`call` per request, so nothing overlaps; a
        transport that can keep several requests in flight on one connection overrides it.
        """
        return CallPipeline(self, address, timeout)

    @abstractmethod
    def close(self) -> None:
        """Stop serving and drop every connection; idempotent."""


class Pipeline(ABC):
    """Requests to one peer, answered in the order they were sent, driven by one thread.

    The owning thread :meth:`send`s without waiting for replies and collects them with
    :meth:`wait`; every request sent comes back from :meth:`wait` exactly once, in order, with
    its reply or with the error that replaced it. Order matters to Raft replication: a follower
    that got AppendEntries out of order would reject the later ones. Any thread may
    :meth:`wake` the owner (there is something new to send).
    """

    @abstractmethod
    def send(self, request: Request, context: Any) -> bool:
        """Send ``request``; False when the peer could not be reached (its outcome is an error).

        Never raises: whatever goes wrong becomes the request's outcome, so that the core hears
        about every request it handed out (its window would otherwise stay full for good)."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[Outcome]:
        """The outcomes ready now; if none, wait up to ``timeout`` (None: no limit) for one or for
        :meth:`wake`, and return what is ready then (possibly nothing)."""

    @abstractmethod
    def wake(self) -> None:
        """There is something new to send: cut the owner's :meth:`wait` short, unless it waits
        for a reply (it looks at the core after every reply anyway); safe from any thread."""

    @abstractmethod
    def interrupt(self) -> None:
        """End the owner's :meth:`wait` now, even with requests in flight (which then fail);
        safe from any thread. For stopping."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection; by the owning thread, once it stopped sending."""


class CallPipeline(Pipeline):
    """A pipeline of blocking calls: :meth:`send` returns once the reply is there."""

    def __init__(self, transport: Transport, address: str, timeout: float) -> None:
        self._transport = transport
        self._address = address
        self._timeout = timeout
        self._woken = threading.Event()
        self._outcomes: list[Outcome] = []   # the owning thread's only

    def send(self, request: Request, context: Any) -> bool:
        try:
            reply: Response | CKiteError = self._transport.call(self._address, request, self._timeout)
        except CKiteError as exc:
            reply = exc
        except Exception as exc:   # e.g. out of file descriptors before the call could start
            reply = RpcError(f"{self._address}: {type(exc).__name__}: {exc}")
        self._outcomes.append((request, context, reply))
        return not isinstance(reply, CKiteError)

    def wait(self, timeout: float | None) -> list[Outcome]:
        if not self._outcomes and (timeout is None or timeout > 0):
            self._woken.wait(timeout)
        self._woken.clear()
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def wake(self) -> None:
        self._woken.set()

    def interrupt(self) -> None:
        self._woken.set()   # a call in progress ends by itself, within its timeout

    def close(self) -> None:
        pass
