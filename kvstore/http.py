"""The key-value routes, added to ckite's admin server as a Blueprint.

Two forms of the same operations: CKite's original GET-only routes (``/put/k/v``,
``/get/k``, ``/cas/k/expected/new``: easy with curl or a browser; keys and values cannot
contain "/") and REST routes (``/kv/<key>`` with the value as the request body, any bytes).

Only ckite's public API is used: writes go through ``CKite.write`` (forwarded to the leader
by ckite itself, through the member's client session, so its own retries never apply twice),
reads through ``CKite.read`` (linearizable) or ``read_local``. Every writing route takes an
``Idempotency-Key`` header: a retry under the same key, on any member, gets the first outcome
(same status and body) and the write applies once; the same key for another request (route,
key or body) is a 422. ckite's exceptions are not caught here: the admin server turns them
into JSON errors (503 when no leader or quorum answered in time, with the leader when known
and ``"outcome"``: ``"not-applied"`` or ``"unknown"``). Bad input is a 400.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.parse
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from werkzeug.routing import BaseConverter

from ckite import CKite, WriteCommand
from ckite.admin import json_error, json_value, mutating
from ckite.codec import encode_command
from kvstore.store import CompareAndSet, Delete, Get, Increment, Put, Value

logger = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 256
#: The largest step /incr takes at once (far from overflowing anything, and from abuse).
MAX_INCREMENT = 10 ** 15
_INTEGER = re.compile(r"-?[0-9]+")
#: Larger values belong in a blob store; every member keeps every value in memory.
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024

_TRUE = ("1", "true", "yes", "on")


class _Segment(BaseConverter):
    """A path segment that may be empty, so that ``/get/`` is a 400 "empty key", not a 404."""

    regex = "[^/]*"


def kv_blueprint(member: CKite, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Blueprint:
    """The kvstore routes over ``member`` (whose state machine is a :class:`~kvstore.store.KVStore`)."""
    bp = Blueprint("kvstore", __name__)

    def add_converter(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault("kvseg", _Segment)
    bp.record_once(add_converter)

    def checked_value(value: Value) -> Value:
        size = len(_utf8(value, "value")) if isinstance(value, str) else len(value)
        if size > max_value_bytes:
            abort(400, f"value of {size} bytes is larger than the limit of {max_value_bytes} bytes")
        return value

    def write(command: WriteCommand) -> Any:
        """Through the member's client session; with an ``Idempotency-Key`` header, a retry under
        that key (on any member) gets the first outcome: the same answer, applied once."""
        key = _idempotency_key()
        if key is None:
            return member.write(command)
        fingerprint = hashlib.sha256(f"{request.endpoint}\0".encode() + encode_command(command)).hexdigest()
        return member.write(command, idempotency_key=key, fingerprint=fingerprint)

    def read(key: str) -> Any:
        command = Get(_checked_key(key))
        local = request.args.get("local", "").lower() in _TRUE
        return member.read_local(command) if local else member.read(command)

    def compare_and_set(key: str, expected: Value | None, new: Value) -> ResponseReturnValue:
        if isinstance(expected, str):
            _utf8(expected, "expected value")
        command = CompareAndSet(_checked_key(key), expected, checked_value(new))
        result = write(command)
        if result["swapped"]:
            return jsonify({"key": key, "value": json_value(new), "swapped": True})
        return json_error(409, "current value differs from the expected one", key=key,
                          value=json_value(result["value"]), expected=json_value(expected))

    # --- CKite's GET routes -------------------------------------------------------------

    @bp.get("/put/<kvseg:key>/<kvseg:value>")
    @mutating   # a GET that writes (CKite's): it needs the admin token when one is set
    def put_get_style(key: str, value: str) -> ResponseReturnValue:
        write(Put(_checked_key(key), checked_value(value)))
        return jsonify({"key": key, "value": json_value(value)})

    @bp.get("/get/<kvseg:key>")
    def get_get_style(key: str) -> ResponseReturnValue:
        value = read(key)
        if value is None:
            return _not_found(key)
        return jsonify({"key": key, "value": json_value(value)})

    @bp.get("/cas/<kvseg:key>/<kvseg:expected>/<kvseg:new>")
    @mutating
    def cas_get_style(key: str, expected: str, new: str) -> ResponseReturnValue:
        return compare_and_set(key, expected, new)

    # --- REST routes ----------------------------------------------------------------------

    @bp.put("/kv/", defaults={"key": ""})
    @bp.put("/kv/<path:key>")
    def put_rest(key: str) -> ResponseReturnValue:
        value = _as_text_if_utf8(_read_body(max_value_bytes))
        write(Put(_checked_key(key), value))
        return jsonify({"key": key, "length": len(value.encode("utf-8")) if isinstance(value, str) else len(value)})

    @bp.get("/kv/", defaults={"key": ""})
    @bp.get("/kv/<path:key>")
    def get_rest(key: str) -> ResponseReturnValue:
        value = read(key)
        if value is None:
            return _not_found(key)
        if isinstance(value, str):
            return Response(value.encode("utf-8"), mimetype="text/plain", content_type="text/plain; charset=utf-8")
        return Response(value, mimetype="application/octet-stream")

    @bp.delete("/kv/", defaults={"key": ""})
    @bp.delete("/kv/<path:key>")
    def delete_rest(key: str) -> ResponseReturnValue:
        previous = write(Delete(_checked_key(key)))
        if previous is None:
            return _not_found(key)
        return jsonify({"key": key, "deleted": True, "previous": json_value(previous)})

    @bp.post("/cas/", defaults={"key": ""})
    @bp.post("/cas/<path:key>")
    def cas_rest(key: str) -> ResponseReturnValue:
        body = _read_body(2 * max_value_bytes + 1024)   # two values and the JSON around them
        try:
            document = json.loads(body)
        except ValueError as exc:
            abort(400, f"body must be JSON {{\"expected\": ..., \"new\": ...}}: {exc}")
        if not (isinstance(document, dict) and {"expected", "new"} <= document.keys()
                and isinstance(document["new"], str) and isinstance(document["expected"], (str, type(None)))):
            abort(400, 'body must be {"expected": string or null, "new": string}')
        return compare_and_set(key, document["expected"], document["new"])

    @bp.post("/incr/", defaults={"key": ""})
    @bp.post("/incr/<path:key>")
    def increment(key: str) -> ResponseReturnValue:
        """Add ``?by=N`` (default 1) to an integer value; a missing key counts as 0. Deliberately
        not idempotent: send it with an Idempotency-Key to have a retry apply it once."""
        by = request.args.get("by", "1")
        if not _INTEGER.fullmatch(by) or abs(int(by)) > MAX_INCREMENT:
            abort(400, f"by={by!r}: expected an integer from -{MAX_INCREMENT} to {MAX_INCREMENT}")
        result = write(Increment(_checked_key(key), int(by)))
        if "error" in result:
            return json_error(409, "the value is not an integer; nothing changed", key=key,
                              value=json_value(result["value"]))
        return jsonify({"key": key, "value": result["value"]})

    return bp


def _idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` (the IETF httpapi draft's header): printable ASCII, at
    most MAX_IDEMPOTENCY_KEY bytes; 400 otherwise."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not all(" " <= char <= "~" for char in key):
        abort(400, f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


def _checked_key(key: str) -> str:
    """Every route takes its key (and the GET routes their values) from the URL: check it once here."""
    if not key:
        abort(400, "empty key")
    _check_url_is_utf8()
    if len(_utf8(key, "key")) > MAX_KEY_BYTES:
        abort(400, f"key longer than {MAX_KEY_BYTES} bytes")
    return key


def _check_url_is_utf8() -> None:
    """Refuse a path whose bytes (percent-escapes decoded) are not UTF-8. Werkzeug would decode
    ``%FF`` to U+FFFD, so that different keys (``%FF`` and ``%FE``) would silently become one."""
    environ = request.environ
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")   # as sent (waitress, gunicorn, the test client)
    try:
        if uri is not None:
            raw = urllib.parse.unquote_to_bytes(uri.encode("latin-1").partition(b"?")[0])
        else:
            raw = environ.get("PATH_INFO", "").encode("latin-1")   # WSGI: the path's bytes as latin-1 characters
        raw.decode("utf-8")
    except UnicodeEncodeError:   # a server that hands over decoded text: nothing left to check
        pass
    except UnicodeDecodeError as exc:
        abort(400, f"the URL is not valid UTF-8 (byte {exc.start} of the path); keys and values are UTF-8 text")


def _utf8(text: str, what: str) -> bytes:
    """``text`` in UTF-8; a lone surrogate (possible in a JSON body: "\\ud800") is the client's error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        abort(400, f"{what} is not valid Unicode text (it holds a lone surrogate)")


def _read_body(limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.content_length
    if declared is not None and declared > limit:
        abort(400, f"value of {declared} bytes is larger than the limit of {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        abort(400, f"value is larger than the limit of {limit} bytes")
    return body


def _as_text_if_utf8(body: bytes) -> Value:
    """Text stays text (readable in /status and JSON answers); other bytes stay bytes.
    ``GET /kv`` returns the same bytes either way."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _not_found(key: str) -> ResponseReturnValue:
    return json_error(404, "key not found", key=key)
