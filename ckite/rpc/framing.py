"""Reading Thrift frames off a socket ourselves, for the server and for the pipelined client.

thriftpy2's framed transport trusts the 4-byte length a peer sends (and mallocs it), and reads
ahead into a buffer of its own, which a selector cannot see. :class:`FrameReader` grows its
buffer with the bytes that actually arrive, refuses absurd lengths, and says when a whole
frame is already buffered; :class:`FrameDecoder` then decodes one frame at a time.
"""
from __future__ import annotations

import socket
import ssl

from thriftpy2.protocol.cybin import TCyBinaryProtocol
from thriftpy2.transport.framed import TCyFramedTransport

#: Bytes asked of the kernel per recv() (frames are accumulated, never preallocated).
RECV_SIZE = 64 * 1024


class BadFrame(Exception):
    """The peer broke the framing (a length out of bounds, or it closed mid-frame)."""


class FrameReader:
    """Reads whole frames (4-byte big-endian length + payload) from one connection.

    Memory grows with the bytes that actually arrive, never with the length a peer claims.
    """

    def __init__(self, sock: socket.socket, max_frame_bytes: int) -> None:
        self._sock = sock
        self._max = max_frame_bytes
        self._buffer = bytearray()

    def has_frame(self) -> bool:
        """True when :meth:`next_frame` will not block: a whole frame is buffered, or a header
        whose length it refuses at once."""
        buffer = self._buffer
        if len(buffer) < 4:
            return False
        length = self._header_length()
        return not self._acceptable(length) or len(buffer) >= 4 + length

    def _header_length(self) -> int:
        return int.from_bytes(self._buffer[:4], "big", signed=True)

    def _acceptable(self, length: int) -> bool:
        return 0 < length <= self._max

    def next_frame(self) -> bytes | None:
        """The next frame, header included; None when the peer closed between frames."""
        buffer = self._buffer
        while len(buffer) < 4:
            if not self._fill():
                if buffer:
                    raise BadFrame(f"connection closed after {len(buffer)} bytes of a frame header")
                return None
        length = self._header_length()
        if not self._acceptable(length):
            raise BadFrame(f"frame length {length} is outside 1..{self._max}")
        end = 4 + length
        while len(buffer) < end:
            if not self._fill():
                raise BadFrame(f"connection closed after {len(buffer) - 4} of {length} frame bytes")
        frame = bytes(buffer[:end])
        del buffer[:end]
        return frame

    def _fill(self) -> bool:
        chunk = self._sock.recv(RECV_SIZE)
        self._buffer += chunk
        return bool(chunk)

    def fill_available(self) -> bool:
        """Take what has arrived without waiting (the socket must be non-blocking); False once
        the peer has closed. Stops when the kernel and, under TLS, the TLS layer have nothing
        more, or when the buffer holds more than a frame can (:meth:`next_frame` then refuses)."""
        sock = self._sock
        while len(self._buffer) <= self._max + 4:
            try:
                chunk = sock.recv(RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True   # nothing (more); under TLS also a record with no data, like a session ticket
            if not chunk:
                return False
            self._buffer += chunk
            if len(chunk) < RECV_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return True   # drained for now; what comes next wakes the selector again
        return True


class FrameSource:
    """The transport under the decoding ``TCyFramedTransport``: one received frame, then EOF.

    Why not ``TCyMemoryBuffer``: it answers a read past its end with zeros instead of failing, so
    a list length that lies (2**31 entries in a 100-byte frame) makes the Cython protocol build
    two billion empty structs. Ending at the frame's last byte turns every lie into END_OF_FILE.
    """

    __slots__ = ("_data", "_position")

    def __init__(self) -> None:
        self._data = b""
        self._position = 0

    def load(self, frame: bytes) -> None:
        self._data, self._position = frame, 0

    def read(self, size: int) -> bytes:
        start = self._position
        self._position = start + size
        return self._data[start:start + size]


class FrameDecoder:
    """A binary protocol that reads exactly one received frame at a time."""

    def __init__(self) -> None:
        self._source = FrameSource()
        self._transport = TCyFramedTransport(self._source)
        self.protocol = TCyBinaryProtocol(self._transport, strict_decode=True)

    def load(self, frame: bytes) -> TCyBinaryProtocol:
        """Point the protocol at ``frame`` (header included); nothing of an earlier frame leaks in."""
        self._transport.clean()
        self._source.load(frame)
        return self.protocol
