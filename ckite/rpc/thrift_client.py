"""The client side of the Thrift transport: one connection, and a pipeline of requests over one.

A :class:`ClientConnection` is thriftpy2's own client (``TClient`` over ``TSocket`` +
``TCyFramedTransport`` + ``TCyBinaryProtocol``) for blocking calls.

:class:`ThriftPipeline` keeps several requests in flight to one peer on one such connection,
writing with the ``TClient`` and reading replies with our own frame reader. Our server answers
the frames of a connection one at a time and in order (standard Thrift does too), so the
replies come back in the order the requests went out.
"""
from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any

from thriftpy2.protocol.cybin import TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TClient, TMessageType
from thriftpy2.transport import TSocket, TSSLSocket, TTransportException
from thriftpy2.transport.framed import TCyFramedTransport

from ckite.errors import CKiteError, EncodingError, RpcError, UnreachableError
from ckite.messages import Request, Response
from ckite.rpc.framing import BadFrame, FrameDecoder, FrameReader
from ckite.rpc.idl import CKiteService, ckite_thrift
from ckite.rpc.thrift_codec import METHODS, decode_response, encode_request, error_from_thrift
from ckite.rpc.transport import Outcome, Pipeline

#: A call never runs with a socket timeout shorter than this (0 would make the socket non-blocking).
MIN_TIMEOUT = 0.001
#: Replies are small (a term, a flag, a few indexes): a longer reply frame is garbage.
MAX_REPLY_FRAME_BYTES = 1024 * 1024
#: The name of each method's single argument, as ``TClient._send`` wants it.
_ARGUMENT_NAMES = {method: getattr(CKiteService, method + "_args").thrift_spec[1][1] for method in METHODS}


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> (host, port); raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not a host:port address")
    return host.removeprefix("[").removesuffix("]"), int(port)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def shut_down(sock: socket.socket) -> None:
    """End both directions of ``sock`` so that a thread blocked reading it wakes (errors ignored).

    The plain socket's shutdown, also under TLS: ``SSLSocket.shutdown`` would drop the TLS state
    the blocked thread is using. Callers hold a lock that the socket's closer holds too: CPython
    reads the descriptor number after releasing the GIL, so a shutdown racing a close could hit
    whatever socket reused the number.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class ClientConnection:
    """One open client connection: a TClient over a framed, binary-protocol socket."""

    __slots__ = ("socket", "client", "_frames", "_decoder", "_closing")

    def __init__(self, address: str, connect_timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise UnreachableError(str(exc)) from None
        timeout_ms = connect_timeout * 1000
        if ssl_context is None:
            self.socket = TSocket(host, port, socket_family=family(host), socket_timeout=timeout_ms,
                                  connect_timeout=timeout_ms)
        else:
            self.socket = TSSLSocket(host, port, socket_family=family(host), socket_timeout=timeout_ms,
                                     connect_timeout=timeout_ms, ssl_context=ssl_context)
        try:
            self.socket.open()
        except TTransportException as exc:
            raise UnreachableError(f"cannot connect to {address}: {exc.__context__ or exc}") from exc
        self.client = TClient(CKiteService, TCyBinaryProtocol(TCyFramedTransport(self.socket), strict_decode=True))
        self._frames: FrameReader | None = None
        self._decoder: FrameDecoder | None = None
        self._closing = threading.Lock()   # shutdown() from another thread vs close() (see shut_down)

    def send(self, method: str, argument: Any) -> None:
        """Write one request frame without waiting for its reply."""
        self.client._send(method, **{_ARGUMENT_NAMES[method]: argument})

    def start_reading_replies(self) -> None:
        """Read replies through our own frame reader from now on (see :meth:`receive_frame`)."""
        self._frames = FrameReader(self.socket.sock, MAX_REPLY_FRAME_BYTES)
        self._decoder = FrameDecoder()

    def read_available(self) -> bool:
        """Take every reply byte that has arrived, without waiting; False once the peer closed.

        Unlike ``TClient``, which reads ahead into a buffer a selector cannot see, this leaves
        nothing behind that a selector would miss (under TLS: nothing in the TLS layer either),
        and never waits for a reply that is not there: readable may mean a TLS session ticket.
        """
        assert self._frames is not None
        sock = self.socket.sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return self._frames.fill_available()
        finally:
            sock.settimeout(timeout)

    def has_buffered_reply(self) -> bool:
        """A whole reply is buffered: :meth:`receive_frame` will not block."""
        return self._frames is not None and self._frames.has_frame()

    def receive_frame(self) -> tuple[str, int]:
        """The next reply frame, whole in the buffer (:meth:`has_buffered_reply`); its method name
        and Thrift message type. Raises BadFrame for a length no reply can have."""
        assert self._frames is not None and self._decoder is not None
        frame = self._frames.next_frame()
        if frame is None:
            raise BadFrame("the peer closed the connection")
        method, message_type, _ = self._decoder.load(frame).read_message_begin()
        return method, message_type

    def decode_reply(self, method: str, message_type: int) -> Any:
        """The value of the frame :meth:`receive_frame` returned (already in memory, so this
        never blocks); raises the peer's ``CKiteErrorST`` or thriftpy2's application error."""
        assert self._decoder is not None
        protocol = self._decoder.protocol
        if message_type == TMessageType.EXCEPTION:
            failure = TApplicationException()
            failure.read(protocol)
            protocol.read_message_end()
            raise failure
        result = getattr(CKiteService, method + "_result")()
        result.read(protocol)
        protocol.read_message_end()
        if result.success is not None:
            return result.success
        if result.error is not None:
            raise result.error
        raise TApplicationException(TApplicationException.MISSING_RESULT)

    def is_stale(self) -> bool:
        """True when an idle connection was closed by the peer (or holds bytes nobody asked for)."""
        sock = self.socket.sock
        if sock is None:
            return True
        try:
            sock.setblocking(False)
            if isinstance(sock, ssl.SSLSocket):
                # TLS cannot peek; reading is harmless, since any byte here makes the connection unusable.
                # It also consumes TLS 1.3 session tickets, which are no application data.
                sock.recv(1)
            else:
                sock.recv(1, socket.MSG_PEEK)   # b"" (closed) or unexpected bytes: either way unusable
            return True
        except (BlockingIOError, ssl.SSLWantReadError):   # nothing to read: healthy
            return False
        except OSError:
            return True

    def settimeout(self, timeout: float) -> None:
        self.socket.sock.settimeout(max(timeout, MIN_TIMEOUT))

    def shutdown(self) -> None:
        """Wake a call blocked on this connection, from another thread (it then fails and closes it)."""
        with self._closing:
            sock = self.socket.sock
            if sock is not None:
                shut_down(sock)

    def close(self) -> None:
        """Close the socket (a second close does nothing)."""
        with self._closing:
            sock, self.socket.sock = self.socket.sock, None
            if sock is not None:
                shut_down(sock)
                sock.close()


class _InFlight:
    """One request sent on a pipeline's connection, waiting for its reply."""

    __slots__ = ("request", "context", "method", "sent_at")

    def __init__(self, request: Request, context: Any, method: str, sent_at: float) -> None:
        self.request = request
        self.context = context
        self.method = method
        self.sent_at = sent_at


class ThriftPipeline(Pipeline):
    """Requests to one peer over one connection (plain TCP or TLS), several in flight.

    One thread owns it: it sends, then waits in a selector on the connection while requests are
    in flight (or on an event while none are), so a reply is handled by the thread that will
    send the next request, with no hand-off between threads. The caller bounds how many are in
    flight (the leader's window per follower). A broken connection (a failed write, no reply
    within ``timeout`` of the request or of the previous reply, garbage) fails every request in
    flight on it; the next :meth:`send` opens a new one. When the selector says readable, the
    owner takes what has arrived without blocking and handles every whole reply; a partial one
    waits for the next wake-up. So a TLS record with no data (a session ticket) or a reply split
    over segments never holds the owner past the time it asked to wait.
    """

    def __init__(self, address: str, timeout: float, connect_timeout: float,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._address = address
        self._ssl_context = ssl_context
        self._timeout = max(timeout, MIN_TIMEOUT)
        self._connect_timeout = max(min(connect_timeout, timeout), MIN_TIMEOUT)
        self._in_flight: deque[_InFlight] = deque()
        self._ready: list[Outcome] = []             # outcomes not yet returned by wait()
        self._connection: ClientConnection | None = None
        self._last_reply_at = float("-inf")
        self._selector = selectors.DefaultSelector()   # the connection's socket, while there is one
        self._woken = threading.Event()

    def send(self, request: Request, context: Any) -> bool:
        method, argument = encode_request(request)
        connection = self._connection
        if connection is None:
            try:
                connection = self._connect()
            except Exception as exc:   # refused, unreachable, out of file descriptors...
                error = exc if isinstance(exc, CKiteError) else RpcError(
                    f"cannot connect to {self._address}: {type(exc).__name__}: {exc}")
                self._ready.append((request, context, error))
                return False
        self._in_flight.append(_InFlight(request, context, method, time.monotonic()))
        try:
            connection.send(method, argument)
        except Exception as exc:   # a reset, or a full socket buffer for a whole timeout
            self._break(RpcError(f"{self._address}: sending {method} failed: {type(exc).__name__}: {exc}"))
            return False
        return True

    def _connect(self) -> ClientConnection:
        connection = ClientConnection(self._address, self._connect_timeout, self._ssl_context)
        try:
            connection.settimeout(self._timeout)
            connection.start_reading_replies()
            self._selector.register(connection.socket.sock, selectors.EVENT_READ)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def wait(self, timeout: float | None) -> list[Outcome]:
        if not self._ready:
            if self._in_flight:
                self._select(timeout)
            elif timeout is None or timeout > 0:
                self._woken.wait(timeout)
        self._woken.clear()   # before the owner looks at the core again: no wake-up is lost
        ready, self._ready = self._ready, []
        return ready

    def _select(self, timeout: float | None) -> None:
        """Wait for replies or ``timeout``; collect every whole reply that arrived."""
        expires_in = self._head_waiting_since() + self._timeout - time.monotonic()
        if self._selector.select(max(expires_in if timeout is None else min(timeout, expires_in), 0)):
            assert self._connection is not None
            self._take_replies(self._connection)
        if self._in_flight and time.monotonic() - self._head_waiting_since() >= self._timeout:
            self._break(RpcError(f"{self._address}: no answer to {self._in_flight[0].method} within "
                                 f"{self._timeout:.3f}s"))

    def _head_waiting_since(self) -> float:
        """Since when the oldest request's reply is overdue: from its sending, or from the
        previous reply if that came later. A follower works through a window of requests one by
        one; one that keeps answering is slow, not gone, however deep the window."""
        return max(self._in_flight[0].sent_at, self._last_reply_at)

    def _take_replies(self, connection: ClientConnection) -> None:
        """File every whole reply that has arrived; a closed or failed connection breaks."""
        failure = "the peer closed it"
        try:
            still_open = connection.read_available()
        except Exception as exc:   # reset, or a TLS error: the replies that came before it still count
            still_open, failure = False, f"{type(exc).__name__}: {exc}"
        while self._connection is connection and connection.has_buffered_reply():
            self._read_reply(connection)
        if not still_open and self._connection is connection:
            self._break(RpcError(f"{self._address}: connection lost: {failure}"))

    def _read_reply(self, connection: ClientConnection) -> None:
        """Read the next reply (whole in the buffer) and file it with its request."""
        try:
            method, message_type = connection.receive_frame()
        except Exception as exc:   # a length no reply can have, or not a Thrift message
            self._break(RpcError(f"{self._address}: connection lost: {type(exc).__name__}: {exc}"))
            return
        if not self._in_flight or self._in_flight[0].method != method:
            self._break(RpcError(f"{self._address} sent a {method} reply nobody asked for"))
            return
        reply: Response | CKiteError
        try:
            reply = decode_response(method, connection.decode_reply(method, message_type))
        except ckite_thrift.CKiteErrorST as error:
            reply = error_from_thrift(error)   # the peer refused this request; the connection is fine
        except EncodingError as exc:
            reply = RpcError(f"{self._address} answered {method} with a malformed reply: {exc}")
        except Exception as exc:   # a reply thriftpy2 could not decode: the stream cannot be trusted
            self._break(RpcError(f"{self._address}: {method} failed: {type(exc).__name__}: {exc}"))
            return
        item = self._in_flight.popleft()
        self._last_reply_at = time.monotonic()
        self._ready.append((item.request, item.context, reply))

    def _break(self, error: CKiteError) -> None:
        """Close the connection; everything in flight on it fails with ``error``."""
        connection, self._connection = self._connection, None
        if connection is not None:
            sock = connection.socket.sock
            if sock is not None:
                self._selector.unregister(sock)
            connection.close()
        self._ready.extend((item.request, item.context, error) for item in self._in_flight)
        self._in_flight.clear()

    def wake(self) -> None:
        # While a request is in flight the owner waits for its reply, not for this: it looks at
        # the core after handling the reply, and the core holds back partial batches meanwhile.
        # No system call here: wake() runs under the consensus lock.
        if not self._in_flight:
            self._woken.set()

    def interrupt(self) -> None:
        self._woken.set()
        connection = self._connection
        if connection is not None:
            connection.shutdown()   # the owner's selector wakes, reads the end, fails what was in flight

    def close(self) -> None:
        self._break(RpcError(f"{self._address}: the pipeline is closed"))
        self._selector.close()
