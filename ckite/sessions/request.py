"""What a write through a client session carries in the log.

The client numbers its requests (``seq``, from 1) within a session and tells, with each, the
lowest number whose result it still waits for (``acked``: it has all the results below): the
members then forget those results. A request may also carry an idempotency key (the HTTP
``Idempotency-Key``) and a fingerprint of what it asks, so that a retry under the same key, from
any client, gets the first outcome. ``session`` 0 asks to open a session: the entry's index
becomes its id.

The leader *stamps* each entry with its clock (milliseconds since the epoch) as it appends it;
members expire sessions by that time, carried in the log, never by their own clocks, so every
member expires the same sessions at the same entry.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ckite.errors import EncodingError

_STAMP = struct.Struct(">Q")
#: flags (bit 0: a key follows, bit 1: a fingerprint follows), session, seq, acked; then each
#: present string as a 2-byte length and its UTF-8 bytes; then the command, to the end. A fixed
#: header rather than msgpack: it is built and read once per write on the hot path.
_HEAD = struct.Struct(">BQQQ")
_STAMPED_HEAD = struct.Struct(">Q" + _HEAD.format[1:])   # the stamp and the header, read at once
_LENGTH = struct.Struct(">H")
_HAS_KEY, _HAS_FINGERPRINT = 1, 2


class ClientRequest(NamedTuple):
    session: int                       #: the session's id (0: open a new session)
    seq: int                           #: the request's number in its session (from 1)
    acked: int                         #: the client holds the results of every request below this number
    command: bytes                     #: the encoded command (empty to open a session)
    key: str | None = None             #: an idempotency key, if the request has one...
    fingerprint: str | None = None     #: ...and what the request asks, to tell another request under that key

    def encode(self) -> bytes:
        return encode_request(*self)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ClientRequest:
        """Raises EncodingError for anything but a well-formed request."""
        try:
            flags, session, seq, acked = _HEAD.unpack_from(data)
            at = _HEAD.size
            key = fingerprint = None
            if flags & _HAS_KEY:
                key, at = _read_text(data, at)
            if flags & _HAS_FINGERPRINT:
                fingerprint, at = _read_text(data, at)
        except (struct.error, UnicodeDecodeError) as exc:
            raise EncodingError(f"malformed client request: {exc}") from None
        if flags & ~(_HAS_KEY | _HAS_FINGERPRINT):
            raise EncodingError(f"malformed client request: unknown flags {flags:#x}")
        return cls(session, seq, acked, bytes(data[at:]), key, fingerprint)


def encode_request(session: int, seq: int, acked: int, command: bytes, key: str | None = None,
                   fingerprint: str | None = None) -> bytes:
    """A request's bytes, without building a :class:`ClientRequest` (the client's hot path)."""
    if key is None and fingerprint is None:
        return _HEAD.pack(0, session, seq, acked) + command
    parts = [b""]
    flags = 0
    for flag, text in ((_HAS_KEY, key), (_HAS_FINGERPRINT, fingerprint)):
        if text is not None:
            raw = text.encode()
            if len(raw) > 0xFFFF:
                raise EncodingError(f"a client request's key or fingerprint is over {0xFFFF} bytes")
            flags |= flag
            parts += (_LENGTH.pack(len(raw)), raw)
    parts[0] = _HEAD.pack(flags, session, seq, acked)
    parts.append(command)
    return b"".join(parts)


def _read_text(data: bytes | memoryview, at: int) -> tuple[str, int]:
    (length,) = _LENGTH.unpack_from(data, at)
    start = at + _LENGTH.size
    if start + length > len(data):
        raise struct.error("a string runs past the end")
    return bytes(data[start:start + length]).decode(), start + length


OPEN_SESSION = ClientRequest(0, 0, 0, b"")


def stamped(milliseconds: int, request: bytes) -> bytes:
    """The entry's data: the leader's clock, then the encoded request."""
    return _STAMP.pack(milliseconds) + request


def unstamped(data: bytes) -> tuple[int, ClientRequest]:
    """(the leader's clock when it appended the entry, the request). Run for every session entry
    on every member: a request with neither key nor fingerprint (nearly all) is read with one
    unpack, the others by :meth:`ClientRequest.decode`."""
    try:
        stamp, flags, session, seq, acked = _STAMPED_HEAD.unpack_from(data)
    except struct.error:
        raise EncodingError("malformed client request entry: shorter than its time stamp and header") from None
    if not flags:
        return stamp, ClientRequest(session, seq, acked, data[_STAMPED_HEAD.size:])
    return stamp, ClientRequest.decode(memoryview(data)[_STAMP.size:])
