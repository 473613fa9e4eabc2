"""Turn ``CKite.status()`` into the JSON shape CKite's admin console made familiar.

CKite answered ``/status`` with ``{"cluster": {term, state, stateInfo}, "log": {length,
commitIndex, lastLog}}``, durations written for people ("2.minutes+13.seconds+148.milliseconds").
We keep that shape so that CKite's README still reads true, and add what an operator needs
beside it: members and configuration, per-follower matchIndex/nextIndex/lag, lastApplied,
the leader, and every duration also as a number of milliseconds (``...Ms``) for machines.

Input: the dict :meth:`ckite.consensus.consensus.Consensus.status` returns. Keys this view
does not know are passed through, so the core can add fields without breaking the console.
The optional ``log.lastEntry`` (``{"kind", "data"}``, raw bytes) is decoded here rather than
in the core, which builds the status under its lock.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgpack

from ckite.admin.jsonvalues import json_value
from ckite.codec import decode_command
from ckite.consensus.membership import Configuration
from ckite.errors import CKiteError
from ckite.log.entry import EntryKind
from ckite.sessions.request import unstamped

logger = logging.getLogger(__name__)

NEVER = "Never"

#: The largest encoded command /status shows in full.
PREVIEW_BYTES = 4096

_UNITS = (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000), ("seconds", 1_000),
          ("milliseconds", 1))


def format_duration(ms: int | float | None) -> str:
    """CKite's human form of a duration: ``2.minutes+13.seconds+148.milliseconds``; None is "Never"."""
    if ms is None:
        return NEVER
    remaining = max(int(round(ms)), 0)
    parts = []
    for name, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}.{name}")
    return "+".join(parts) or "0.milliseconds"


def render_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/status`` document for one member (see the module docstring for the shape)."""
    log = status.get("log", {})
    configuration = status.get("configuration") or {}
    cluster = {
        "term": status.get("term"),
        "state": status.get("state"),
        "leader": status.get("leader"),
        "votedFor": status.get("votedFor"),
        "members": _members(configuration),
        "configuration": configuration,
        "membershipChange": status.get("membershipChange"),
        "stateInfo": render_state_info(status.get("stateInfo") or {}, log.get("lastIndex", 0)),
    }
    extra = {key: json_value(value) for key, value in status.items()
             if key not in ("id", "term", "state", "leader", "votedFor", "stateInfo", "configuration",
                            "membershipChange", "log")}
    return {"id": status.get("id"), "cluster": cluster, "log": render_log(log), **extra}


def render_state_info(info: Mapping[str, Any], last_index: int) -> dict[str, Any]:
    """Role details: every ``xMs`` gains a human ``x``; a leader's followers gain lag and CKite's
    ``lastHeartbeatsACKs`` map; a follower's ``following`` stays as CKite named it."""
    view = _with_human_durations(info)
    followers = info.get("followers")
    if isinstance(followers, Mapping):
        view["followers"] = {peer: _follower_view(progress, last_index) for peer, progress in followers.items()}
        view["lastHeartbeatsACKs"] = {peer: entry["lastHeartbeatACK"] for peer, entry in view["followers"].items()}
    return view


def _follower_view(progress: Mapping[str, Any], last_index: int) -> dict[str, Any]:
    view = {key: value for key, value in progress.items() if key != "lastAckMs"}
    ack_ms = progress.get("lastAckMs")
    view["lastHeartbeatACK"] = format_duration(ack_ms)
    view["lastHeartbeatACKMs"] = ack_ms
    match_index = progress.get("matchIndex")
    view["lag"] = None if match_index is None else max(last_index - match_index, 0)
    return view


def _with_human_durations(info: Mapping[str, Any]) -> dict[str, Any]:
    """A copy where each ``xMs`` number is preceded by ``x``, its human form (None: "Never")."""
    view: dict[str, Any] = {}
    for key, value in info.items():
        if key.endswith("Ms") and len(key) > 2 and (value is None or isinstance(value, (int, float))):
            view.setdefault(key[:-2], format_duration(value))
        view[key] = json_value(value)
    return view


def render_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """CKite's ``log`` block (length, commitIndex, lastLog) plus first/last index and lastApplied."""
    view = {key: json_value(value) for key, value in log.items() if key not in ("lastEntry", "lastTerm")}
    last_log = {"term": log.get("lastTerm"), "index": log.get("lastIndex"), "kind": None, "command": None}
    entry = log.get("lastEntry")
    if isinstance(entry, Mapping):
        data = entry.get("data", b"")
        last_log.update(describe_entry(entry.get("kind"), data, entry.get("bytes", len(data))))
    view["lastLog"] = last_log
    return view


def describe_entry(kind: Any, data: bytes, size: int | None = None) -> dict[str, Any]:
    """``{"kind", "command"[, "commandType"]}`` for a log entry's payload, never raising:
    a console must show a member whose log holds something it cannot decode. A command larger
    than PREVIEW_BYTES shows only its type and size (a /status polled every second must not
    decode and send a 16 MiB value each time). A client-session entry shows its command, and
    the session and number it came with."""
    name = _kind_name(kind)
    try:
        size = len(data) if size is None else size
        if len(data) < size:   # left on disk by the log view
            return {"kind": name, "command": None, "bytes": size, "truncated": True}
        if name == "client_request":
            _, request = unstamped(data)
            session = {"session": request.session, "seq": request.seq}
            if not request.command:
                return {"kind": name, "command": None, **session, "opensSession": True}
            return {**_describe_command(request.command), "kind": name, **session}
        if name == "command":
            return {"kind": name, **_describe_command(data)}
        if name == "configuration":
            return {"kind": name, "command": Configuration.decode(data).describe()}
    except CKiteError as exc:
        return {"kind": name, "command": None, "undecodable": str(exc)}
    return {"kind": name, "command": None}


def _describe_command(data: bytes) -> dict[str, Any]:
    if len(data) > PREVIEW_BYTES:
        return {"commandType": _command_type(data), "command": None, "bytes": len(data), "truncated": True}
    command = decode_command(data)
    return {"commandType": command.type_name, "command": json_value(command.fields())}


def _command_type(data: bytes) -> str | None:
    """The type name an encoded command starts with (``[type_name, {fields}]``), read from its first bytes."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=PREVIEW_BYTES)
    unpacker.feed(data[:PREVIEW_BYTES])
    try:
        unpacker.read_array_header()
        type_name = unpacker.unpack()
    except (msgpack.OutOfData, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    return type_name if isinstance(type_name, str) else None


def _kind_name(kind: Any) -> str | None:
    """EntryKind, its int value, or its name: all become "command" / "noop" / "configuration"."""
    if kind is None:
        return None
    if isinstance(kind, str):
        return kind.lower()
    try:
        return EntryKind(int(kind)).name.lower()
    except ValueError:
        return str(kind)


def _members(configuration: Mapping[str, Any]) -> list[str]:
    members: set[str] = set()
    for key in ("voters", "oldVoters", "learners"):
        members.update(configuration.get(key) or ())
    return sorted(members)
