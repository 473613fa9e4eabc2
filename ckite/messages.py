"""Transport-neutral Raft messages exchanged between members.

The consensus core only speaks these dataclasses; ``ckite.rpc`` maps them to the
Thrift structs in ``thrift/ckite.thrift`` (and the in-process transport passes
them as they are). Field meanings follow the Raft paper, Figure 2, plus the
extensions named on each class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ckite.log.entry import LogEntry


@dataclass(slots=True)
class RequestVote:
    """§5.2 RequestVote; ``pre_vote`` asks "would you vote?" without anyone changing term (thesis §9.6).

    ``term`` is the term the candidate is (or, for a pre-vote, would be) campaigning in.
    ``transfer`` marks an election started by a leadership transfer, which may override
    a follower's leader lease.
    """

    term: int
    candidate_id: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(slots=True)
class RequestVoteResponse:
    term: int
    granted: bool


@dataclass(slots=True)
class AppendEntries:
    """§5.3 AppendEntries; ``entries`` may be empty (a heartbeat)."""

    term: int
    leader_id: str
    prev_log_index: int
    prev_log_term: int
    entries: list[LogEntry] = field(default_factory=list)
    leader_commit: int = 0


@dataclass(slots=True)
class AppendEntriesResponse:
    """Reply to AppendEntries.

    On success ``match_index`` is the last index known to match the leader (prev + len(entries)).
    On failure ``conflict_index``/``conflict_term`` let the leader skip a whole term per round
    trip: ``conflict_term`` is the follower's term at ``prev_log_index`` (0 when the follower's
    log is too short) and ``conflict_index`` the first index the follower holds for that term
    (or its last index + 1).
    """

    term: int
    success: bool
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0


@dataclass(slots=True)
class InstallSnapshot:
    """§7 InstallSnapshot, sent in chunks of ``data`` starting at byte ``offset``. ``size`` and
    ``checksum`` (CRC-32) describe the whole state, so the follower can check what it gathered."""

    term: int
    leader_id: str
    last_index: int
    last_term: int
    configuration: bytes
    offset: int
    data: bytes
    done: bool
    size: int = 0
    checksum: int = 0


@dataclass(slots=True)
class InstallSnapshotResponse:
    """``next_offset`` is the byte the follower expects next (lets the leader resume after a lost chunk)."""

    term: int
    success: bool
    next_offset: int = 0


@dataclass(slots=True)
class TimeoutNow:
    """Leadership transfer: the leader tells an up-to-date follower to start an election now (thesis §3.10)."""

    term: int
    leader_id: str


@dataclass(slots=True)
class TimeoutNowResponse:
    term: int
    accepted: bool


class ForwardKind(str, Enum):
    """What a forwarded client request asks the leader to do."""

    WRITE = "write"                #: an encoded command (client sessions off)
    CLIENT_REQUEST = "client_request"   #: a session's request (ckite.sessions.request.ClientRequest)
    #: As WRITE and CLIENT_REQUEST, answered with ``[result, index, term]`` (``CKite.apply``). Kinds of
    #: their own, so that a member of an older version, asked a plain write, still gets a plain answer.
    WRITE_INDEXED = "write_indexed"
    CLIENT_REQUEST_INDEXED = "client_request_indexed"
    READ_INDEX = "read_index"      #: a follower asks for a read index (its reads then run on its own state)
    CHANGE_MEMBERS = "change_members"
    TRANSFER_LEADERSHIP = "transfer_leadership"


@dataclass(slots=True)
class ForwardRequest:
    """A client request a non-leader passes to the leader.

    ``payload`` is an encoded command for WRITE, an encoded ClientRequest for CLIENT_REQUEST,
    nothing for READ_INDEX, msgpack ``{"add": [bindings], "remove":
    [bindings]}`` for CHANGE_MEMBERS, a UTF-8 binding (or nothing) for TRANSFER_LEADERSHIP.
    The leader answers with :class:`ForwardResponse` or raises a ``ckite.errors`` exception,
    which the transport carries back and re-raises at the caller.
    """

    kind: ForwardKind
    payload: bytes
    timeout_ms: int


@dataclass(slots=True)
class ForwardResponse:
    """``result`` is the msgpack-encoded value returned by the command."""

    result: bytes


@dataclass(slots=True)
class JoinMember:
    """A new member (CKite's Joiner) asks a seed to add it to the cluster."""

    member_id: str
    timeout_ms: int


@dataclass(slots=True)
class JoinMemberResponse:
    success: bool


Request = RequestVote | AppendEntries | InstallSnapshot | TimeoutNow | ForwardRequest | JoinMember
Response = (RequestVoteResponse | AppendEntriesResponse | InstallSnapshotResponse | TimeoutNowResponse
            | ForwardResponse | JoinMemberResponse)
