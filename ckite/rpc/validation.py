"""What a request from a peer may claim, checked before the consensus core sees it.

:mod:`ckite.rpc.thrift_codec` makes sure a request is well typed (every field present, of its
type, terms and indexes not negative, enums known). This module checks what a well-typed
request says against Raft's invariants and against limits, so that a buggy or hostile peer
cannot make the core store a term SQLite cannot hold (a term of 2**63-1 becomes 2**63 at the
next election), wait on a timeout ``threading`` refuses, append a log with holes or with terms
going backwards, or build millions of objects from one call:

- every term, index and offset is at most :data:`MAX_POSITION` (2**62: a member would need to
  hold an election every nanosecond for 146 years to get there honestly);
- timeouts are at most :data:`MAX_TIMEOUT_MS`;
- member ids are 1..:data:`MAX_ID_CHARS` printable characters;
- AppendEntries: ``prev_log_term <= term``; the entries' indexes follow ``prev_log_index``
  without a gap; their terms are at least 1, never decrease and never exceed ``term``; at most
  ``max_entries_per_append`` entries carrying at most ``max_append_bytes`` bytes of data
  (the receiving side's limits; keep them above the sender's ``RaftSettings`` batch limits);
- RequestVote: ``last_log_term <= term``; InstallSnapshot: ``last_term <= term``;
- a forwarded membership change or leadership transfer names its member as UTF-8 text (at most
  :data:`MAX_ID_CHARS` printable characters; empty for "any member" in a transfer);
- a configuration (a CONFIGURATION entry's data, an InstallSnapshot's ``configuration``) decodes.
  The core decodes it only after storing it, so a malformed one would be in the log (or the
  snapshot) for good, and the member could not restart.

A violation raises :class:`~ckite.errors.EncodingError`, which the server logs and returns to
the caller; the request never reaches the core, so nothing changes. The checks live here, at the
edge, and not in the core: a member's own decisions are trusted, what arrives is not.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from ckite.codec import decode_value
from ckite.consensus.membership import Configuration
from ckite.errors import EncodingError
from ckite.log.entry import EntryKind
from ckite.messages import (
    AppendEntries,
    ForwardKind,
    ForwardRequest,
    InstallSnapshot,
    JoinMember,
    Request,
    RequestVote,
    TimeoutNow,
)

#: The largest term, index or byte offset a peer may send.
MAX_POSITION = 2 ** 62
#: The longest a forwarded request or a join may ask the leader to wait (one day).
MAX_TIMEOUT_MS = 24 * 3600 * 1000
#: The longest member id (a "host:port" binding) a peer may send.
MAX_ID_CHARS = 1024
#: Most members one membership change may name (a cluster of a few dozen members is already large).
MAX_CHANGE_MEMBERS = 100

_ID_FIELDS = {"leader_id", "candidate_id", "member_id"}
_TIMEOUT_FIELDS = {"timeout_ms"}


@dataclass(frozen=True)
class RequestLimits:
    """The receiving side's limits on one AppendEntries.

    The defaults are five and sixteen times the sender's defaults
    (:class:`~ckite.consensus.settings.RaftSettings` ``max_entries_per_append`` = 2000,
    ``max_bytes_per_append`` = 4 MiB), and the byte limit matches the transport's default
    maximum frame; a leader whose batches exceed them never replicates to this member.
    """

    max_entries_per_append: int = 10_000
    max_append_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_entries_per_append < 1 or self.max_append_bytes < 1:
            raise ValueError("request limits must be at least 1")


def _invalid(request: Request, reason: str) -> EncodingError:
    return EncodingError(f"invalid {type(request).__name__}: {reason}")


def _generic_checks(cls: type) -> tuple[tuple[str, str], ...]:
    """(field, kind) for the fields of ``cls`` checked the same way in every request."""
    checks = []
    for field in fields(cls):
        if field.name in _ID_FIELDS:
            checks.append((field.name, "id"))
        elif field.name in _TIMEOUT_FIELDS:
            checks.append((field.name, "timeout"))
        elif field.type in ("int", int):
            checks.append((field.name, "position"))
    return tuple(checks)


_GENERIC = {cls: _generic_checks(cls) for cls in (RequestVote, AppendEntries, InstallSnapshot, TimeoutNow,
                                                  ForwardRequest, JoinMember)}


def validate_request(request: Request, limits: RequestLimits) -> None:
    """Raise :class:`EncodingError` naming the first rule ``request`` breaks (see the module's doc)."""
    for name, kind in _GENERIC.get(type(request), ()):
        value = getattr(request, name)
        if kind == "position":
            if value > MAX_POSITION:
                raise _invalid(request, f"{name} {value} is larger than {MAX_POSITION}")
        elif kind == "timeout":
            if value > MAX_TIMEOUT_MS:
                raise _invalid(request, f"{name} {value} is longer than {MAX_TIMEOUT_MS} ms")
        elif not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
            raise _invalid(request, f"{name} must be 1..{MAX_ID_CHARS} printable characters")
    check = _SPECIFIC.get(type(request))
    if check is not None:
        check(request, limits)


def _append_entries(request: AppendEntries, limits: RequestLimits) -> None:
    term = request.term
    if request.prev_log_term > term:
        raise _invalid(request, f"prev_log_term {request.prev_log_term} is after the term {term}")
    entries = request.entries
    if not entries:
        return
    if len(entries) > limits.max_entries_per_append:
        raise _invalid(request, f"{len(entries)} entries, more than the limit of {limits.max_entries_per_append}")
    expected_index = request.prev_log_index + 1
    previous_term = max(request.prev_log_term, 1)
    size = 0
    for entry in entries:
        if entry.index != expected_index:
            raise _invalid(request, f"entry index {entry.index} where {expected_index} was expected "
                                    "(indexes must follow prev_log_index without a gap)")
        if not previous_term <= entry.term <= term:
            raise _invalid(request, f"entry {entry.index} has term {entry.term}, outside {previous_term}..{term} "
                                    "(terms in a log never decrease, and never pass the leader's term)")
        previous_term = entry.term
        expected_index += 1
        size += len(entry.data)
        if entry.kind is EntryKind.CONFIGURATION:
            _configuration(request, entry.data, f"entry {entry.index}")
    if size > limits.max_append_bytes:
        raise _invalid(request, f"{size} bytes of entries, more than the limit of {limits.max_append_bytes}")


def _request_vote(request: RequestVote, limits: RequestLimits) -> None:
    if request.last_log_term > request.term:
        raise _invalid(request, f"last_log_term {request.last_log_term} is after the term {request.term}")


def _install_snapshot(request: InstallSnapshot, limits: RequestLimits) -> None:
    if request.last_term > request.term:
        raise _invalid(request, f"last_term {request.last_term} is after the term {request.term}")
    if request.offset + len(request.data) > request.size:
        raise _invalid(request, f"the chunk at {request.offset} of {len(request.data)} bytes goes past the "
                                f"snapshot's {request.size} bytes")
    _configuration(request, request.configuration, "configuration")


def _forward_request(request: ForwardRequest, limits: RequestLimits) -> None:
    if request.kind in (ForwardKind.WRITE, ForwardKind.CLIENT_REQUEST, ForwardKind.WRITE_INDEXED,
                        ForwardKind.CLIENT_REQUEST_INDEXED):
        return   # an encoded command or client request: its codec checks it
    if request.kind is ForwardKind.READ_INDEX:
        if request.payload:
            raise _invalid(request, "a read_index request carries no payload")
        return
    if request.kind is ForwardKind.CHANGE_MEMBERS:
        _membership_change(request)
        return
    try:
        member = request.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(request, f"the {request.kind.value} payload is not UTF-8 text") from None
    _member_id(request, member, f"the {request.kind.value} payload")


def _membership_change(request: ForwardRequest) -> None:
    """``{"add": [ids], "remove": [ids]}`` and optionally ``"learners": [ids]``, at most
    MAX_CHANGE_MEMBERS ids in all."""
    try:
        change = decode_value(request.payload)
    except EncodingError as exc:
        raise _invalid(request, f"the change_members payload: {exc}") from None
    if not (isinstance(change, dict) and change.keys() in ({"add", "remove"}, {"add", "remove", "learners"})
            and all(isinstance(change[key], list) for key in change)):
        raise _invalid(request, 'the change_members payload must be {"add": [ids], "remove": [ids]} '
                                'and optionally "learners": [ids]')
    members = change["add"] + change["remove"] + change.get("learners", [])
    if len(members) > MAX_CHANGE_MEMBERS:
        raise _invalid(request, f"the change_members payload names more than {MAX_CHANGE_MEMBERS} members")
    for member in members:
        _member_id(request, member, "a change_members id")


def _member_id(request: ForwardRequest, member: object, label: str) -> None:
    if not isinstance(member, str) or len(member) > MAX_ID_CHARS or not member.isprintable():
        raise _invalid(request, f"{label} must be at most {MAX_ID_CHARS} printable characters")


def _configuration(request: Request, data: bytes, label: str) -> None:
    try:
        configuration = Configuration.decode(data)
    except EncodingError as exc:
        raise _invalid(request, f"{label}: {exc}") from None
    members = configuration.voters | (configuration.old_voters or frozenset()) | configuration.learners
    if not configuration.voters or not all(type(member) is str and member for member in members):
        raise _invalid(request, f"{label}: a configuration needs voters, and member ids are non-empty text")


_SPECIFIC: dict[type, Callable[..., None]] = {AppendEntries: _append_entries, RequestVote: _request_vote,
                                              InstallSnapshot: _install_snapshot, ForwardRequest: _forward_request}
