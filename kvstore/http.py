"""The key-value routes, added to ckite's admin server as a Blueprint.

Two forms of the same operations: CKite's original GET-only routes (``/put/k/v``,
``/get/k``, ``/cas/k/expected/new``: easy with curl or a browser; keys and values cannot
contain "/") and REST routes (``/kv/<key>`` with the value as the request body, any bytes).

Only ckite's public API is used: writes go through ``CKite.write`` (forwarded to the leader
by ckite itself), reads through ``CKite.read`` (linearizable) or ``read_local``. ckite's
exceptions are not caught here: the admin server turns them into JSON errors (503 when no
leader or quorum answered in time, with the leader when known). Bad input is a 400.
"""
from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.routing import BaseConverter

from ckite import CKite
from ckite.admin import json_error, json_value, mutating

from kvstore.store import CompareAndSet, Delete, Get, Put, Value

logger = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
#: Larger values belong in a blob store; every member keeps every value in memory.
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024

_TRUE = ("1", "true", "yes", "on")


class _Segment(BaseConverter):
    """A path segment that may be empty, so that ``/get/`` is a 400 "empty key", not a 404."""

    regex = "[^/]*"


def kv_blueprint(member: CKite, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Blueprint:
    """The kvstore routes over ``member`` (whose state machine is a :class:`~kvstore.store.KVStore`)."""
    bp = Blueprint("kvstore", __name__)
    bp.record_once(lambda state: state.app.url_map.converters.setdefault("kvseg", _Segment))

    def checked_value(value: Value) -> Value:
        size = len(_utf8(value, "value")) if isinstance(value, str) else len(value)
        if size > max_value_bytes:
            abort(400, f"value of {size} bytes is larger than the limit of {max_value_bytes} bytes")
        return value

    def read(key: str) -> Any:
        command = Get(_checked_key(key))
        local = request.args.get("local", "").lower() in _TRUE
        return member.read_local(command) if local else member.read(command)

    def compare_and_set(key: str, expected: Value | None, new: Value) -> ResponseReturnValue:
        if isinstance(expected, str):
            _utf8(expected, "expected value")
        command = CompareAndSet(_checked_key(key), expected, checked_value(new))
        result = member.write(command)
        if result["swapped"]:
            return jsonify({"key": key, "value": json_value(new), "swapped": True})
        return json_error(409, "current value differs from the expected one", key=key,
                          value=json_value(result["value"]), expected=json_value(expected))

    # --- CKite's GET routes -------------------------------------------------------------

    @bp.get("/put/<kvseg:key>/<kvseg:value>")
    @mutating   # a GET that writes (CKite's): it needs the admin token when one is set
    def put_get_style(key: str, value: str) -> ResponseReturnValue:
        result = member.write(Put(_checked_key(key), checked_value(value)))
        return jsonify({"key": key, "value": json_value(result)})

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
        member.write(Put(_checked_key(key), value))
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
        previous = member.write(Delete(_checked_key(key)))
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

    return bp


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
