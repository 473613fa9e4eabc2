"""How stored values (str or bytes) appear in JSON.

Commands and key-value pairs may carry arbitrary bytes, which JSON cannot hold. Text stays
text; bytes that are valid UTF-8 become text too (an HTTP body arrives as bytes even when a
person typed it); anything else becomes ``{"base64": "..."}`` so that nothing is lost or
mangled on the way to a browser.
"""
from __future__ import annotations

import base64
from typing import Any


def json_value(value: Any) -> Any:
    """A JSON-serialisable copy of a msgpack-native value (bytes made readable, recursively)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    return value
