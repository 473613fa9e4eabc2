"""Safe, self-describing encoding of commands and results (msgpack; never pickle).

Wire form of a command: ``[type_name, {field: value}]``. Field values and results
must be msgpack-native (None, bool, int, float, str, bytes, list, dict); a tuple
comes back as a list. Decoding only constructs registered command classes, so a
peer or a stranger can at worst make a member raise :class:`EncodingError`.
"""
from __future__ import annotations

from typing import Any

import msgpack

from ckite.commands import Command, ReadCommand, WriteCommand, command_class
from ckite.errors import EncodingError

#: Largest encoded command or result a member accepts (bounded below the RPC frame limit).
MAX_ENCODED_SIZE = 16 * 1024 * 1024


def encode_command(command: Command) -> bytes:
    """Encode a registered command; raises :class:`EncodingError` for a value msgpack cannot carry."""
    if not isinstance(command, (WriteCommand, ReadCommand)):
        raise EncodingError(f"{type(command).__name__} is not a WriteCommand or ReadCommand")
    try:
        data: bytes = msgpack.packb([command.type_name, command.fields()], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode {type(command).__name__}: {exc}") from exc
    if len(data) > MAX_ENCODED_SIZE:
        raise EncodingError(f"{type(command).__name__} encodes to {len(data)} bytes (limit {MAX_ENCODED_SIZE})")
    return data


def decode_command(data: bytes) -> Command:
    """Rebuild a command from :func:`encode_command` bytes, constructing only registered classes."""
    payload = _unpack(data, "command")
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)
            and isinstance(payload[1], dict)):
        raise EncodingError("malformed command: expected [type_name, {fields}]")
    type_name, fields = payload
    cls = command_class(type_name)
    if not all(isinstance(key, str) for key in fields):
        raise EncodingError(f"malformed command {type_name}: field names must be strings")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise EncodingError(f"malformed command {type_name}: {exc}") from exc


def encode_value(value: Any) -> bytes:
    """Encode a command's result (or any msgpack-native value) for the wire."""
    try:
        encoded: bytes = msgpack.packb(value, use_bin_type=True)
        return encoded
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"result of type {type(value).__name__} cannot cross the wire: {exc}") from exc


def decode_value(data: bytes) -> Any:
    """Inverse of :func:`encode_value`."""
    return _unpack(data, "value")


def _unpack(data: bytes, what: str) -> Any:
    if len(data) > MAX_ENCODED_SIZE:
        raise EncodingError(f"{what} of {len(data)} bytes exceeds the limit of {MAX_ENCODED_SIZE}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise EncodingError(f"malformed {what}: {exc}") from exc
