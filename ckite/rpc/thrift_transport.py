"""The default transport: standard Thrift (framed transport, binary protocol) over TCP.

Any Thrift client of ``ckite.thrift`` can call a member. The client side
(:mod:`ckite.rpc.thrift_client`) is thriftpy2's own client, with a small pool of connections per
peer for calls, and one pipelined connection per peer for a leader's replication. The server side
is ours: thriftpy2's threaded server reads the 4-byte frame length and mallocs whatever a peer
claims (a stranger can ask for 2 GB), so :class:`_FrameServer` reads frames itself, refuses a
length outside ``1..max_frame_bytes``, checks the frame's structure (:mod:`ckite.rpc.frame_check`:
thriftpy2's decoder trusts the sizes inside a frame too), and only then lets thriftpy2's
``TProcessor`` decode the frame and write the reply. A peer that breaks the rules loses its
connection; the others are served on.
A decoded request is checked against Raft's invariants and the receiving limits
(:mod:`ckite.rpc.validation`) before the handler sees it.

With a :class:`~ckite.rpc.tls.TlsConfig`, both sides speak mutual TLS: the server wraps each
accepted connection in its own connection thread, with ``handshake_timeout``, so a peer that
never finishes its handshake costs one thread for that long and stalls nobody else. At most
``max_connections`` connections are served at once; more are closed at once.

Threads (all named, all stopped and joined by :meth:`ThriftTransport.close`):
``ckite-<port>-rpc-accept`` accepts connections, ``ckite-<port>-rpc-conn-<n>`` serves one
connection (one request at a time, answered in the order they arrived: that is what lets a
client pipeline requests on one connection).
"""
from __future__ import annotations

import functools
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time
from typing import Any

from thriftpy2.protocol.cybin import TCyBinaryProtocol
from thriftpy2.thrift import TProcessor
from thriftpy2.transport.framed import TCyFramedTransport

from ckite.errors import CKiteError, EncodingError, RpcError, StoppedError
from ckite.messages import Request, Response
from ckite.rpc.frame_check import check_frame
from ckite.rpc.framing import BadFrame, FrameDecoder, FrameReader
from ckite.rpc.idl import CKiteService, ckite_thrift
from ckite.rpc.thrift_client import MIN_TIMEOUT, ClientConnection, ThriftPipeline, family, shut_down, split_address
from ckite.rpc.thrift_codec import (
    METHODS,
    decode_request,
    decode_response,
    encode_request,
    error_from_thrift,
    error_to_thrift,
    to_thrift,
)
from ckite.rpc.tls import TlsConfig
from ckite.rpc.transport import Pipeline, RpcHandler, Transport
from ckite.rpc.validation import RequestLimits, validate_request

logger = logging.getLogger(__name__)

#: Idle connections kept per peer; more may be open while calls run concurrently.
MAX_IDLE_PER_ADDRESS = 4
#: How long close() waits for the server threads in total.
_JOIN_TIMEOUT = 2.0
#: Defaults of ThriftTransport's server-side limits.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 256


class HandlerAdapter:
    """Answers CKiteService's methods with an :class:`RpcHandler`.

    Converts the argument struct to a request dataclass, checks it (:func:`validate_request`),
    calls ``handler.handle`` and converts the response back. A :class:`CKiteError` (an
    :class:`EncodingError` from a malformed or invalid argument included, which is also logged)
    becomes the ``CKiteErrorST`` the caller re-raises; any other exception is a bug: it is logged
    with its traceback and the caller gets ``RpcError``. Used by the Thrift server and by the
    in-process transport, so both answer the same way.
    """

    def __init__(self, handler: RpcHandler, name: str, limits: RequestLimits | None = None) -> None:
        self._handler = handler
        self._name = name
        self._limits = limits or RequestLimits()
        for method in METHODS:   # TProcessor looks the service's methods up by name
            setattr(self, method, functools.partial(self.dispatch, method))

    def dispatch(self, method: str, argument: Any) -> Any:
        try:
            request = decode_request(method, argument)
            validate_request(request, self._limits)
        except EncodingError as exc:   # the request never reaches the handler: nothing changes
            logger.warning("%s: refused %s: %s", self._name, method, exc)
            raise error_to_thrift(exc) from exc
        try:
            response = self._handler.handle(request)
            if type(response) is not METHODS[method][1]:
                raise TypeError(f"handler answered {type(response).__name__} to {type(request).__name__}")
            return to_thrift(response)
        except CKiteError as exc:
            raise error_to_thrift(exc) from exc
        except Exception as exc:
            logger.exception("%s: the handler failed on %s", self._name, method)
            raise ckite_thrift.CKiteErrorST(errorClass="RpcError", message=f"{method} failed on {self._name}: "
                                            f"{type(exc).__name__}: {exc}") from exc


# --- server ---------------------------------------------------------------------------------------

class _Sink:
    """The transport under the replying ``TCyFramedTransport``: its flush sends the framed reply."""

    __slots__ = ("write",)

    def __init__(self, sock: socket.socket) -> None:
        self.write = sock.sendall

    def flush(self) -> None:
        pass


class _FrameServer:
    """Listens on one binding; an accept thread and one thread per connection."""

    def __init__(self, binding: str, processor: TProcessor, max_frame_bytes: int,
                 ssl_context: ssl.SSLContext | None, *, max_items: int = RequestLimits.max_entries_per_append,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        host, port = split_address(binding)
        self._processor = processor
        self._max_frame_bytes = max_frame_bytes
        self._max_items = max_items
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout
        self._max_connections = max_connections
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}   # guarded by _lock
        self._numbers = itertools.count(1)
        self._listener = socket.socket(family(host), socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(128)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.port = self._listener.getsockname()[1]
        self.address = f"{binding.rpartition(':')[0]}:{self.port}"
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"ckite-{self.port}-rpc-accept",
                                               daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopping.is_set():
                selector.select()
                try:
                    conn, peer = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue   # woken for close(), or another wake-up without a connection
                except OSError as exc:
                    if self._stopping.is_set():
                        return
                    logger.error("ckite-%s: accept failed: %s", self.port, exc)
                    self._stopping.wait(0.1)   # e.g. out of file descriptors: do not spin
                    continue
                self._start_connection(conn, peer)

    def _start_connection(self, conn: socket.socket, peer: Any) -> None:
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = f"ckite-{self.port}-rpc-conn-{next(self._numbers)}"
        thread = threading.Thread(target=self._serve_connection, args=(conn, f"{peer[0]}:{peer[1]}"),
                                  name=name, daemon=True)
        with self._lock:
            full = len(self._connections) >= self._max_connections
            if self._stopping.is_set() or full:
                conn.close()
                if full:
                    logger.warning("ckite-%s: refused a connection from %s:%s: already serving %d connections",
                                   self.port, peer[0], peer[1], self._max_connections)
                return
            self._connections[thread] = conn
            thread.start()   # under the lock, so close() never sees a thread it cannot join

    def _serve_connection(self, conn: socket.socket, peer: str) -> None:
        try:
            if self._ssl_context is not None:
                tls = self._handshake(conn, peer)
                if tls is None:
                    return
                conn = tls
            self._answer_frames(conn)
        except BadFrame as exc:
            logger.warning("ckite-%s: closing the connection from %s: %s", self.port, peer, exc)
        except OSError as exc:
            if not self._stopping.is_set():
                logger.debug("ckite-%s: connection from %s failed: %s", self.port, peer, exc)
        except Exception as exc:   # refused by check_frame, or thriftpy2 could not decode it (or encode the reply)
            logger.error("ckite-%s: closing the connection from %s after a malformed frame: %s: %s",
                         self.port, peer, type(exc).__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        finally:
            with self._lock:   # close() shuts connections down under this lock (see shut_down)
                self._connections.pop(threading.current_thread(), None)
                conn.close()

    def _handshake(self, conn: socket.socket, peer: str) -> ssl.SSLSocket | None:
        """The TLS connection once the peer proved a certificate of the cluster's CA; None (logged)
        when it could not within the handshake timeout, or close() came first. close() can
        interrupt it: the TLS socket replaces the plain one in ``_connections`` before the
        handshake starts, in one hold of the lock with the wrapping (wrapping detaches the plain
        socket: a close() that shut that one down in between reached nothing, and the handshake
        waited for its timeout)."""
        assert self._ssl_context is not None
        with self._lock:
            if self._stopping.is_set():
                return None   # close() shut the connections down already: the finally closes this one
            tls = self._ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            self._connections[threading.current_thread()] = tls
        try:
            tls.settimeout(self._handshake_timeout)
            tls.do_handshake()
            tls.settimeout(None)
        except OSError as exc:   # ssl.SSLError, TimeoutError, a reset...
            if not self._stopping.is_set():
                logger.warning("ckite-%s: TLS handshake with %s failed: %s", self.port, peer,
                               "timed out" if isinstance(exc, TimeoutError) else exc)
            with self._lock:
                tls.close()
            return None
        return tls

    def _answer_frames(self, conn: socket.socket) -> None:
        reader = FrameReader(conn, self._max_frame_bytes)
        decoder = FrameDecoder()
        oprot = TCyBinaryProtocol(TCyFramedTransport(_Sink(conn)))
        while not self._stopping.is_set():
            frame = reader.next_frame()
            if frame is None:
                return
            check_frame(frame, self._max_items)
            self._processor.process(decoder.load(frame), oprot)

    def close(self) -> None:
        """Stop accepting, shut every connection down and join the threads (bounded)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        self._wake_writer.send(b"x")
        self._accept_thread.join(_JOIN_TIMEOUT)
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        with self._lock:
            connections = dict(self._connections)
            for conn in connections.values():
                shut_down(conn)   # wakes the thread blocked in recv; it closes its socket
        for thread in [self._accept_thread, *connections]:
            thread.join(max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                logger.warning("ckite-%s: thread %s did not stop within %.1fs", self.port, thread.name,
                               _JOIN_TIMEOUT)


# --- client ---------------------------------------------------------------------------------------

class ThriftTransport(Transport):
    """Thrift over TCP; ``call`` is safe from any number of threads.

    ``max_frame_bytes`` bounds what the server accepts from a peer, ``limits`` what one request
    may carry (:class:`~ckite.rpc.validation.RequestLimits`; its ``max_entries_per_append`` also
    bounds the container elements of a frame before it is decoded); ``connect_timeout`` bounds a
    connection attempt, TLS handshake included (a refused connection fails at once with
    :class:`~ckite.errors.UnreachableError`). ``tls`` turns on mutual TLS for both the server and
    the client side (or pass the two contexts yourself); ``handshake_timeout`` bounds a server-side
    handshake and ``max_connections`` the connections served at once.
    """

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, connect_timeout: float = 1.0,
                 tls: TlsConfig | None = None, limits: RequestLimits | None = None,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 ssl_context_server: ssl.SSLContext | None = None,
                 ssl_context_client: ssl.SSLContext | None = None) -> None:
        if not 0 < max_frame_bytes < 2 ** 31:
            raise ValueError(f"max_frame_bytes must be in 1..2**31-1, not {max_frame_bytes}")
        if handshake_timeout <= 0 or max_connections < 1:
            raise ValueError("handshake_timeout must be positive and max_connections at least 1")
        self.max_frame_bytes = max_frame_bytes
        self.connect_timeout = connect_timeout
        self.limits = limits or RequestLimits()
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        if tls is not None:
            ssl_context_server = ssl_context_server or tls.server_context()
            ssl_context_client = ssl_context_client or tls.client_context()
        self.ssl_context_server = ssl_context_server
        self.ssl_context_client = ssl_context_client
        self._lock = threading.Lock()
        self._closed = False                                # guarded by _lock, like the three below
        self._servers: list[_FrameServer] = []
        self._idle: dict[str, list[ClientConnection]] = {}       # per address, most recently used last
        self._open: set[ClientConnection] = set()                # every open client connection, idle or in use

    @property
    def address(self) -> str | None:
        """The binding the (first) server listens on, with the real port when it was bound to port 0."""
        return self._servers[0].address if self._servers else None

    def serve(self, binding: str, handler: RpcHandler) -> None:
        processor = TProcessor(CKiteService, HandlerAdapter(handler, binding, self.limits))
        server = _FrameServer(binding, processor, self.max_frame_bytes, self.ssl_context_server,
                              max_items=self.limits.max_entries_per_append, handshake_timeout=self.handshake_timeout,
                              max_connections=self.max_connections)
        with self._lock:
            closed = self._closed
            if not closed:
                self._servers.append(server)
        if closed:
            server.close()
            raise StoppedError("the transport is closed")

    def call(self, address: str, request: Request, timeout: float) -> Response:
        method, argument = encode_request(request)
        connection = self._take(address, timeout)
        try:
            connection.settimeout(timeout)
            value = getattr(connection.client, method)(argument)
        except ckite_thrift.CKiteErrorST as error:
            self._give_back(address, connection)
            raise error_from_thrift(error) from None
        except TimeoutError as exc:
            self._discard(connection)
            raise RpcError(f"{address}: no answer to {method} within {timeout:.3f}s") from exc
        except Exception as exc:   # broken connection, garbage reply, closed transport...
            self._discard(connection)
            raise RpcError(f"{address}: {method} failed: {type(exc).__name__}: {exc}") from exc
        self._give_back(address, connection)
        try:
            return decode_response(method, value)
        except EncodingError as exc:
            raise RpcError(f"{address} answered {method} with a malformed reply: {exc}") from exc

    def open_pipeline(self, address: str, timeout: float) -> Pipeline:
        """Several requests in flight on one connection (see :class:`ThriftPipeline`)."""
        return ThriftPipeline(address, timeout, self.connect_timeout, self.ssl_context_client)

    def _take(self, address: str, timeout: float) -> ClientConnection:
        stale = []
        with self._lock:
            if self._closed:
                raise RpcError(f"cannot call {address}: the transport is closed")
            idle = self._idle.get(address)
            connection = None
            while idle:
                candidate = idle.pop()
                if not candidate.is_stale():
                    connection = candidate
                    break
                self._open.discard(candidate)
                stale.append(candidate)
        for old in stale:
            old.close()
        if connection is not None:
            return connection
        connection = ClientConnection(address, max(min(self.connect_timeout, timeout), MIN_TIMEOUT),
                                 self.ssl_context_client)
        with self._lock:
            if not self._closed:
                self._open.add(connection)
                return connection
        connection.close()
        raise RpcError(f"cannot call {address}: the transport is closed")

    def _give_back(self, address: str, connection: ClientConnection) -> None:
        with self._lock:
            if not self._closed and connection in self._open:
                idle = self._idle.setdefault(address, [])
                if len(idle) < MAX_IDLE_PER_ADDRESS:
                    idle.append(connection)
                    return
                self._open.discard(connection)
        connection.close()

    def _discard(self, connection: ClientConnection) -> None:
        with self._lock:
            self._open.discard(connection)
        connection.close()

    def close(self) -> None:
        """Stop the servers, close idle connections and wake the calls in flight; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            servers, self._servers = self._servers, []
            idle = [connection for connections in self._idle.values() for connection in connections]
            in_use = self._open.difference(idle)
            self._idle.clear()
            self._open.clear()
        for server in servers:
            server.close()
        for connection in idle:
            connection.close()
        for connection in in_use:
            connection.shutdown()
