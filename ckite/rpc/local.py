"""The in-process transport: members of a test cluster call each other's handlers directly.

A :class:`LocalNetwork` is the registry shared by the members (address -> handler) and holds the
fault switches the integration tests flip: :meth:`~LocalNetwork.isolate` a member (all traffic to
and from it fails, like CKite's ``TestRpc.blockTraffic``) or :meth:`~LocalNetwork.cut` one
direction of one link. Each member gets its own :class:`LocalTransport` from
:meth:`LocalNetwork.transport`, so the network knows who is calling.

A call runs the target's handler in the caller's thread, but the request, the response and any
error pass through the same conversions as over Thrift (``thrift_codec`` both ways and the
server's :class:`~ckite.rpc.thrift_transport.HandlerAdapter`): a message that could not cross
the wire fails here too, and the caller sees the errors a remote caller would.
"""
from __future__ import annotations

import threading

from ckite.errors import CKiteError, RpcError, StoppedError
from ckite.messages import Request, Response
from ckite.rpc.idl import ckite_thrift
from ckite.rpc.thrift_codec import decode_response, encode_request, error_from_thrift
from ckite.rpc.thrift_transport import HandlerAdapter
from ckite.rpc.transport import RpcHandler, Transport


class LocalNetwork:
    """The members of one in-process cluster, and the switches that break the links between them.

    One lock guards the registry and the switches; handlers run outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serving: dict[str, tuple[LocalTransport, HandlerAdapter]] = {}   # guarded by _lock
        self._isolated: set[str] = set()                                        # guarded by _lock
        self._cut: set[tuple[str, str]] = set()                                 # guarded by _lock

    def transport(self, own_address: str) -> LocalTransport:
        """A transport for the member at ``own_address`` (its calls come from that address)."""
        return LocalTransport(self, own_address)

    def isolate(self, address: str) -> None:
        """Every call to or from ``address`` fails with RpcError until :meth:`heal`."""
        with self._lock:
            self._isolated.add(address)

    def heal(self, address: str) -> None:
        """Undo :meth:`isolate` (link cuts stay)."""
        with self._lock:
            self._isolated.discard(address)

    def cut(self, source: str, target: str) -> None:
        """Messages from ``source`` to ``target`` are lost: ``source``'s calls to ``target`` fail
        before delivery, and ``target``'s calls to ``source`` are processed but their reply is lost."""
        with self._lock:
            self._cut.add((source, target))

    def heal_all(self) -> None:
        """Undo every isolation and every cut."""
        with self._lock:
            self._isolated.clear()
            self._cut.clear()

    def _link_up(self, source: str, target: str) -> bool:
        with self._lock:
            return (source not in self._isolated and target not in self._isolated
                    and (source, target) not in self._cut)

    def _register(self, binding: str, transport: LocalTransport, adapter: HandlerAdapter) -> None:
        with self._lock:
            current = self._serving.get(binding)
            if current is not None and current[0] is not transport:
                raise RpcError(f"{binding} is already served by another member")
            self._serving[binding] = (transport, adapter)

    def _unregister(self, transport: LocalTransport) -> None:
        with self._lock:
            for binding in [b for b, (owner, _) in self._serving.items() if owner is transport]:
                del self._serving[binding]

    def _deliver(self, source: str, target: str, request: Request) -> Response:
        if not self._link_up(source, target):
            raise RpcError(f"{source} -> {target}: link down")
        with self._lock:
            served = self._serving.get(target)
        if served is None:
            raise RpcError(f"{target} is not serving")
        method, argument = encode_request(request)
        failure: CKiteError | None
        try:
            value = served[1].dispatch(method, argument)   # the Thrift server's code path
        except ckite_thrift.CKiteErrorST as error:
            value, failure = None, error_from_thrift(error)
        else:
            failure = None
        if not self._link_up(target, source):
            raise RpcError(f"{target} -> {source}: link down, the reply to {method} was lost")
        if failure is not None:
            raise failure
        return decode_response(method, value)


class LocalTransport(Transport):
    """One member's side of a :class:`LocalNetwork`. ``call`` ignores ``timeout``: the handler
    runs in the caller's thread, and the handlers of ckite members never block for long."""

    def __init__(self, network: LocalNetwork, own_address: str) -> None:
        self.network = network
        self.address = own_address
        self._closed = False

    def serve(self, binding: str, handler: RpcHandler) -> None:
        if self._closed:
            raise StoppedError("the transport is closed")
        self.network._register(binding, self, HandlerAdapter(handler, binding))

    def call(self, address: str, request: Request, timeout: float) -> Response:
        if self._closed:
            raise RpcError(f"cannot call {address}: the transport is closed")
        return self.network._deliver(self.address, address, request)

    def close(self) -> None:
        self._closed = True
        self.network._unregister(self)
