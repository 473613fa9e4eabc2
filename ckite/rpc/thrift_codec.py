"""Pure mapping between the :mod:`ckite.messages` dataclasses and the structs of ``ckite.thrift``.

Encoding trusts our own dataclasses; decoding trusts nothing: a missing required field, a
negative term or index, a value of the wrong type, an unknown entry kind or forward kind
raises :class:`~ckite.errors.EncodingError`, which the server returns to the caller as a
``CKiteErrorST``. Both transports use these functions (the in-process one too), so a message
that could not cross the wire fails in every test.

Each dataclass field maps to the struct field of the same name in camelCase (a few keep CKite's
names, :data:`_CKITE_NAMES`), checked according to its type; the tables are built at import,
which fails if the IDL and a dataclass do not carry the same fields. Log entries, the hot path
(thousands per AppendEntries), have their own loop, checked in place.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, get_type_hints

from ckite import errors
from ckite.errors import CKiteError, EncodingError, RpcError
from ckite.log.entry import EntryBatch, EntryKind, LogEntry
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
from ckite.rpc.idl import ckite_thrift as T

# --- checks on values that came from the network ------------------------------------------------


def _missing(label: str) -> EncodingError:
    return EncodingError(f"malformed message: {label} is missing")


def _typed(kind: type, description: str) -> Callable[[Any, str], Any]:
    """The check that a value is exactly of type ``kind`` (``bool`` is not an ``int`` here)."""
    def check(value: Any, label: str) -> Any:
        if type(value) is not kind:
            raise _missing(label) if value is None else EncodingError(
                f"malformed message: {label} is not {description}")
        return value
    return check


_integer, _text, _blob, _flag = (_typed(int, "an integer"), _typed(str, "UTF-8 text"), _typed(bytes, "binary"),
                                 _typed(bool, "a boolean"))


def _count(value: Any, label: str) -> int:
    """A term, an index, an offset or a timeout: a non-negative integer."""
    count: int = _integer(value, label)
    if count < 0:
        raise EncodingError(f"malformed message: {label} is negative ({value})")
    return count


def _forward_kind(value: Any, label: str) -> ForwardKind:
    try:
        return ForwardKind(_text(value, label))
    except ValueError:
        raise EncodingError(f"malformed message: {label} {value!r} is not one of "
                            f"{', '.join(kind.value for kind in ForwardKind)}") from None


_ENTRY_KINDS = {kind.value: kind for kind in EntryKind}


def _entries_to_thrift(entries: list[LogEntry]) -> list[Any]:
    """The thrift form of a batch, built once: a leader sends the same batch object to every
    follower (:meth:`~ckite.log.raft_log.RaftLog.batch_from`), which keeps it here."""
    wire = getattr(entries, "wire", None)
    if wire is None:
        st = T.LogEntryST
        wire = [st(entry.term, entry.index, entry.data, entry.kind) for entry in entries]
        if isinstance(entries, EntryBatch):
            entries.wire = wire
    return wire


def _entries_from_thrift(items: Any, label: str) -> list[LogEntry]:
    """Absent means a heartbeat; every entry is checked once, in the loop that builds it."""
    if items is None:
        return []
    entries: list[LogEntry] = []
    append, kinds = entries.append, _ENTRY_KINDS
    for item in items:
        index, term, data = item.index, item.term, item.command
        if type(index) is not int or type(term) is not int or index < 0 or term < 0 or type(data) is not bytes:
            _count(index, f"{label}.index")
            _count(term, f"{label}.term")
            _blob(data, f"{label}.command")
        kind = kinds.get(item.kind)
        if kind is None:
            raise EncodingError(f"malformed message: {label}.kind {item.kind!r} at index {index} is unknown")
        append(LogEntry(index, term, data, kind))
    return entries


# --- the field tables ------------------------------------------------------------------------------

#: Each dataclass and the struct that carries it.
#: Message dataclass -> the thriftpy2 struct class that carries it (built at run time from the IDL).
_STRUCTS: dict[type[Request | Response], Any] = {
    RequestVote: T.RequestVoteST, RequestVoteResponse: T.RequestVoteResponseST,
    AppendEntries: T.AppendEntriesST, AppendEntriesResponse: T.AppendEntriesResponseST,
    InstallSnapshot: T.InstallSnapshotST, InstallSnapshotResponse: T.InstallSnapshotResponseST,
    TimeoutNow: T.TimeoutNowST, TimeoutNowResponse: T.TimeoutNowResponseST,
    ForwardRequest: T.ForwardRequestST, JoinMember: T.JoinMemberST, JoinMemberResponse: T.JoinMemberResponseST,
}

#: A struct field is the dataclass field in camelCase, except where CKite's IDL named it otherwise.
_CKITE_NAMES = {(RequestVote, "candidate_id"): "memberId", (RequestVoteResponse, "term"): "currentTerm",
                (AppendEntries, "leader_commit"): "commitIndex"}

#: Dataclass field type -> check on decode (which also converts), and conversion on encode when needed.
_CHECKS: dict[Any, Callable[[Any, str], Any]] = {
    int: _count, str: _text, bytes: _blob, bool: _flag, ForwardKind: _forward_kind,
    list[LogEntry]: _entries_from_thrift}
_ENCODINGS: dict[Any, Callable[[Any], Any]] = {ForwardKind: lambda kind: kind.value,
                                               list[LogEntry]: _entries_to_thrift}


def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def _field_table(cls: type, st: Any) -> tuple[tuple[str, str, Any, Any, str], ...]:
    """(dataclass field, struct field, check, encoding or None, "Struct.field") for each field of ``cls``;
    raises TypeError at import when the IDL and the dataclass do not carry the same fields."""
    hints = get_type_hints(cls)
    table = []
    for field in fields(cls):
        st_attr = _CKITE_NAMES.get((cls, field.name)) or _camel_case(field.name)
        hint = hints[field.name]
        table.append((field.name, st_attr, _CHECKS[hint], _ENCODINGS.get(hint), f"{st.__name__}.{st_attr}"))
    carried = {spec[1] for spec in st.thrift_spec.values()}
    if carried != {row[1] for row in table}:
        raise TypeError(f"ckite.thrift's {st.__name__} carries {sorted(carried)}, "
                        f"but {cls.__name__} maps to {sorted(row[1] for row in table)}")
    return tuple(table)


_ENCODERS = {cls: (st, _field_table(cls, st)) for cls, st in _STRUCTS.items()}
_DECODERS = {st: (cls, table) for cls, (st, table) in _ENCODERS.items()}

#: Service method -> (request dataclass, response dataclass). sendCommand answers bare ``binary``
#: (the ForwardResponse's result), the only reply that is not a struct.
METHODS: dict[str, tuple[type, type]] = {
    "sendRequestVote": (RequestVote, RequestVoteResponse),
    "sendAppendEntries": (AppendEntries, AppendEntriesResponse),
    "sendCommand": (ForwardRequest, ForwardResponse),
    "sendInstallSnapshot": (InstallSnapshot, InstallSnapshotResponse),
    "sendJoinMember": (JoinMember, JoinMemberResponse),
    "sendTimeoutNow": (TimeoutNow, TimeoutNowResponse),
}
_METHOD_OF = {request: method for method, (request, _) in METHODS.items()}


def to_thrift(message: Request | Response) -> Any:
    """The thrift value that carries ``message`` (a struct; bytes for a ForwardResponse)."""
    if type(message) is ForwardResponse:
        return message.result
    try:
        st, table = _ENCODERS[type(message)]
    except KeyError:
        raise EncodingError(f"{type(message).__name__} is not a ckite message") from None
    return st(**{st_attr: getattr(message, attr) if encode is None else encode(getattr(message, attr))
                 for attr, st_attr, _, encode, _ in table})


def from_thrift(value: Any) -> Request | Response:
    """The dataclass a decoded thrift struct stands for; raises EncodingError when it is malformed."""
    try:
        cls, table = _DECODERS[type(value)]
    except KeyError:
        raise _missing("the message") if value is None else EncodingError(
            f"malformed message: {type(value).__name__} is not a ckite message") from None
    return cls(**{attr: check(getattr(value, st_attr), label) for attr, st_attr, check, _, label in table})


def encode_request(request: Request) -> tuple[str, Any]:
    """The service method to call and its argument."""
    try:
        method = _METHOD_OF[type(request)]
    except KeyError:
        raise EncodingError(f"{type(request).__name__} is not a ckite request") from None
    return method, to_thrift(request)


def decode_request(method: str, value: Any) -> Request:
    """The argument of ``method``, checked to be the request that method takes."""
    request: Request = _decode_as(method, value, 0)
    return request


def decode_response(method: str, value: Any) -> Response:
    """The reply of ``method``, checked to be the response that method gives."""
    response: Response = _decode_as(method, value, 1)
    return response


def _decode_as(method: str, value: Any, side: int) -> Any:
    expected = METHODS[method][side]
    if expected is ForwardResponse:
        return ForwardResponse(_blob(value, f"{method} result"))
    message = from_thrift(value)
    if type(message) is not expected:
        raise EncodingError(f"malformed message: {method} carried {type(message).__name__}, "
                            f"not {expected.__name__}")
    return message


# --- errors ---------------------------------------------------------------------------------------

_ERROR_CLASSES = {name: cls for name, cls in vars(errors).items()
                  if isinstance(cls, type) and issubclass(cls, CKiteError)}


def error_to_thrift(exc: CKiteError) -> Any:
    """The CKiteErrorST that carries ``exc`` back to the caller."""
    return T.CKiteErrorST(errorClass=type(exc).__name__, message=str(exc),
                          leader=getattr(exc, "leader", None), errorType=getattr(exc, "error_type", None))


def error_from_thrift(error: Any) -> CKiteError:
    """The ckite.errors exception a CKiteErrorST names; an unknown name becomes RpcError.

    The two classes whose constructor decorates the message (NotLeaderError appends the leader,
    CommandError prefixes the error type) get the undecorated message back, so that the
    caller's ``str(exc)`` is the remote one.
    """
    name, message = error.errorClass, error.message if isinstance(error.message, str) else ""
    cls = _ERROR_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        return RpcError(f"remote error {name!r}: {message}")
    if issubclass(cls, errors.NotLeaderError):
        leader = error.leader if isinstance(error.leader, str) else None
        suffix = f" (leader: {leader})"
        return cls(message.removesuffix(suffix) if leader is not None else message, leader=leader)
    if issubclass(cls, errors.CommandError):
        error_type = error.errorType if isinstance(error.errorType, str) else "Exception"
        return cls(message.removeprefix(f"{error_type}: "), error_type)
    return cls(message)
