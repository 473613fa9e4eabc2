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
from dataclasses import dataclass

import msgpack

from ckite.errors import EncodingError

_STAMP = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ClientRequest:
    session: int                       #: the session's id (0: open a new session)
    seq: int                           #: the request's number in its session (from 1)
    acked: int                         #: the client holds the results of every request below this number
    command: bytes                     #: the encoded command (empty to open a session)
    key: str | None = None             #: an idempotency key, if the request has one...
    fingerprint: str | None = None     #: ...and what the request asks, to tell another request under that key

    def encode(self) -> bytes:
        encoded: bytes = msgpack.packb([self.session, self.seq, self.acked, self.command, self.key,
                                        self.fingerprint], use_bin_type=True)
        return encoded

    @classmethod
    def decode(cls, data: bytes) -> ClientRequest:
        """Raises EncodingError for anything but a well-formed request."""
        try:
            session, seq, acked, command, key, fingerprint = msgpack.unpackb(data, raw=False)
        except Exception as exc:   # msgpack raises several unrelated types, and the unpacking too
            raise EncodingError(f"malformed client request: {exc}") from None
        if not (all(type(n) is int and n >= 0 for n in (session, seq, acked)) and type(command) is bytes
                and (key is None or type(key) is str) and (fingerprint is None or type(fingerprint) is str)):
            raise EncodingError("malformed client request: expected [session, seq, acked, command, key, fingerprint]")
        return cls(session, seq, acked, command, key, fingerprint)


OPEN_SESSION = ClientRequest(0, 0, 0, b"")


def stamped(milliseconds: int, request: bytes) -> bytes:
    """The entry's data: the leader's clock, then the encoded request."""
    return _STAMP.pack(milliseconds) + request


def unstamped(data: bytes) -> tuple[int, ClientRequest]:
    """(the leader's clock when it appended the entry, the request)."""
    if len(data) < _STAMP.size:
        raise EncodingError("malformed client request entry: no time stamp")
    return _STAMP.unpack_from(data)[0], ClientRequest.decode(data[_STAMP.size:])
