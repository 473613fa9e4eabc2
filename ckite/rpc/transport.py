"""How members reach each other: the interface the runtime uses, independent of Thrift.

Implementations: :class:`~ckite.rpc.thrift_transport.ThriftTransport` (the default, real
sockets) and :class:`~ckite.rpc.local.LocalTransport` (in-process, for tests, with
switches to cut links).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from ckite.messages import Request, Response


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

    @abstractmethod
    def close(self) -> None:
        """Stop serving and drop every connection; idempotent."""
