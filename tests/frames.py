"""Helpers of the hostile-input tests: valid Thrift calls to mutate, a raw exchange with a server, and
what a refused input must not change on a member."""
from __future__ import annotations

import socket
import struct

from thriftpy2.protocol.cybin import TCyBinaryProtocol
from thriftpy2.transport.memory import TCyMemoryBuffer

from ckite.api import CKite
from ckite.messages import Request
from ckite.rpc.idl import CKiteService
from ckite.rpc.thrift_codec import encode_request
from ckite.rpc.thrift_transport import split_address


def call_frame(request: Request, seqid: int = 1) -> bytes:
    """The framed binary-protocol CALL ckite's client sends for ``request`` (4-byte length included)."""
    method, argument = encode_request(request)
    arguments = getattr(CKiteService, f"{method}_args")(argument)
    out = TCyMemoryBuffer()
    protocol = TCyBinaryProtocol(out)
    protocol.write_message_begin(method, 1, seqid)   # 1: CALL
    arguments.write(protocol)
    message = out.getvalue()
    return struct.pack(">i", len(message)) + message


def exchange(address: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, half-close it, and return everything the server sends
    back until it closes (a reply, or b"" when it refused). Raises TimeoutError if it neither
    answers nor closes within ``timeout``."""
    host, port = split_address(address)
    received = []
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            while chunk := raw.recv(65536):
                received.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
    return b"".join(received)


def fingerprint(member: CKite) -> dict:
    """What a refused request must not change: term, vote, role, leader and the log."""
    status = member.status()
    return {key: status[key] for key in ("term", "state", "leader", "votedFor", "log")}
