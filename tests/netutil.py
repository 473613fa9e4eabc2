"""Helpers for the transport tests: free loopback ports, one sample of every message, a fake member."""
from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable

import msgpack

from ckite.consensus.membership import Configuration
from ckite.log.entry import EntryKind, LogEntry
from ckite.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ForwardKind,
    ForwardRequest,
    ForwardResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    JoinMember,
    JoinMemberResponse,
    Request,
    RequestVote,
    RequestVoteResponse,
    Response,
    TimeoutNow,
    TimeoutNowResponse,
)

#: Where test ports come from: below Linux's ephemeral range (32768-60999 by default), so that
#: no outgoing connection or port-0 listener (a test proxy, a browser) is handed one of them
#: between the pick and the bind. Capped so that a port + 1000 (its admin port) stays below too.
TEST_PORTS = range(20000, 31000)

_pick = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, picked at random from :data:`TEST_PORTS`.

    The kernel's pick for port 0 comes from the ephemeral range, where any process's next
    outgoing connection may take it before the caller binds it (seen in CI: a member's admin
    port taken while its cluster started). Another test process may still pick the same port;
    a test that loses that race fails with "address in use", not silently.
    """
    for _ in range(200):
        port = _pick.choice(TEST_PORTS)
        if is_free(host, port):
            return port
    raise RuntimeError(f"no free port in {TEST_PORTS} on {host}")


def is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


#: A real encoded configuration: the receiving side checks configurations (ckite.rpc.validation).
CONFIGURATION = Configuration.of(["10.0.0.1:9091", "10.0.0.2:9091"]).encode()


def entries_of_every_kind(first: int, count: int, size: int = 100) -> list[LogEntry]:
    """``count`` entries from index ``first``, cycling through every EntryKind (a CONFIGURATION
    entry carries :data:`CONFIGURATION`, the others ``size`` bytes)."""
    kinds = list(EntryKind)
    return [LogEntry(index, 2, CONFIGURATION if kind is EntryKind.CONFIGURATION else bytes([index % 256]) * size,
                     kind)
            for index, kind in ((index, kinds[index % len(kinds)]) for index in range(first, first + count))]


#: One sample of every request, including the edge cases (no entries, empty and large binaries).
SAMPLE_REQUESTS: list[Request] = [
    RequestVote(7, "10.0.0.1:9091", 42, 6, pre_vote=True, transfer=True),
    RequestVote(0, "m", 0, 0),
    AppendEntries(5, "10.0.0.1:9091", 10, 2, entries_of_every_kind(11, 9), leader_commit=9),   # entries of term 2
    AppendEntries(5, "10.0.0.1:9091", 10, 4),                    # a heartbeat: no entries
    AppendEntries(3, "l", 0, 0, [LogEntry(1, 3, b"")], 0),       # an entry with empty data
    InstallSnapshot(9, "l:1", 1000, 8, CONFIGURATION, 4096, bytes(range(256)) * 8192, done=True,  # 2 MiB chunk
                    size=4096 + 2 * 1024 * 1024, checksum=0xCAFEF00D),
    InstallSnapshot(9, "l:1", 1000, 8, CONFIGURATION, 0, b"", done=False),
    TimeoutNow(4, "l:1"),
    ForwardRequest(ForwardKind.WRITE, b"write\x00\xff", 1500),   # commands are bytes, bindings text
    ForwardRequest(ForwardKind.READ_INDEX, b"", 1500),
    ForwardRequest(ForwardKind.CHANGE_MEMBERS, msgpack.packb({"add": ["new:9095"], "remove": ["old:9091"]}), 1500),
    ForwardRequest(ForwardKind.TRANSFER_LEADERSHIP, b"transfer:9091", 1500),
    JoinMember("new:9095", 2000),
]

#: One sample of every response.
SAMPLE_RESPONSES: list[Response] = [
    RequestVoteResponse(7, True),
    AppendEntriesResponse(5, True, match_index=19),
    AppendEntriesResponse(6, False, conflict_index=3, conflict_term=2),
    InstallSnapshotResponse(9, True, next_offset=4096 + 2 ** 21),
    TimeoutNowResponse(4, False),
    ForwardResponse(b"\x93\x01\x02\x03"),
    ForwardResponse(b""),
    JoinMemberResponse(True),
]


def answer(request: Request) -> Response:
    """What :class:`FakeHandler` answers: derived from the request, so a test can check both ways."""
    if isinstance(request, RequestVote):
        return RequestVoteResponse(request.term, not request.pre_vote)
    if isinstance(request, AppendEntries):
        return AppendEntriesResponse(request.term, True, request.prev_log_index + len(request.entries),
                                     len(request.entries), request.leader_commit)
    if isinstance(request, InstallSnapshot):
        return InstallSnapshotResponse(request.term, request.done, request.offset + len(request.data))
    if isinstance(request, TimeoutNow):
        return TimeoutNowResponse(request.term, True)
    if isinstance(request, ForwardRequest):
        return ForwardResponse(request.kind.value.encode() + b"=" + request.payload)
    if isinstance(request, JoinMember):
        return JoinMemberResponse(request.member_id.endswith("9095"))
    raise AssertionError(f"unexpected request {request!r}")


class FakeHandler:
    """A member that answers with :func:`answer`, or with ``behaviour(request)`` when set
    (which may raise or block); it records every request it receives."""

    def __init__(self, behaviour: Callable[[Request], Response] | None = None) -> None:
        self.behaviour = behaviour or answer
        self.received: list[Request] = []
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.received.append(request)
        return self.behaviour(request)
