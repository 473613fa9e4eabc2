"""Which received frames are safe to hand to thriftpy2's Cython decoder.

thriftpy2 skips a field it does not know, or whose type is not the declared one, with a C loop
that trusts the sizes in the frame: a list of 2**31 elements of a type that takes no bytes (0,
or any unknown type code) costs it 2**31 iterations, about 4 s, holding the GIL, so every
thread of the member stops; lists of such lists multiply that. Forty bytes from a stranger
would freeze a member for as long as the stranger likes.

:func:`check_frame` walks a frame's structure first, in Python, and refuses any container whose
element type is unknown or whose size cannot fit in the bytes left, and any nesting deeper than
thriftpy2's own limit. After that, every loop of the decoder is bounded by the frame's length.
It also counts the elements of every container against a budget (``max_items``): an empty
struct takes one byte, so a 64 MiB frame could otherwise make thriftpy2 build 64 million
``LogEntryST`` objects, gigabytes of memory.
The walk costs about 1.5 µs per frame plus 0.3 µs per log entry (a 100-entry AppendEntries
round trip on loopback goes from about 217 to 259 µs); entries laid out as ckite (and any
thriftpy2 client) writes them take a fast path, anything else the general walk.
"""
from __future__ import annotations

import struct
from collections.abc import Callable


class MalformedFrame(Exception):
    """The frame is not a Thrift binary-protocol call that can be decoded safely."""


_STOP, _STRUCT, _MAP, _SET, _LIST = 0, 12, 13, 14, 15
_STRING, _BINARY = 11, 18   # thriftpy2 accepts 18 (its own BINARY code) as a string
#: Wire type -> size of a value of fixed size: BOOL, BYTE, DOUBLE, I16, I32, I64.
_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8}
#: Wire type -> fewest bytes a value takes (a string's length, a struct's STOP, a container's header).
_MIN_SIZE = {**_FIXED, _STRING: 4, _BINARY: 4, _STRUCT: 1, _MAP: 6, _SET: 5, _LIST: 5}
_MAX_DEPTH = 64   # thriftpy2's DEFAULT_MAX_DEPTH
#: Container elements a frame may hold in all (the transport passes its entries-per-append limit).
DEFAULT_MAX_ITEMS = 10_000

_i32: Callable[[bytes, int], tuple[int]] = struct.Struct(">i").unpack_from
#: A LogEntryST as written: fields 1 (i64 term), 2 (i64 index), 3 (binary command) -> the three
#: field headers and the command's length; then field 4 (i8 kind) and STOP.
_entry_head = struct.Struct(">3s8x3s8x3si").unpack_from
_ENTRY_HEAD_SIZE = 29
_ENTRY_FIELDS = (b"\x0a\x00\x01", b"\x0a\x00\x02", b"\x0b\x00\x03")
_ENTRY_TAILS = frozenset(b"\x03\x00\x04" + bytes([kind]) + b"\x00" for kind in range(256))


def check_frame(frame: bytes, max_items: int = DEFAULT_MAX_ITEMS) -> None:
    """Raise :class:`MalformedFrame` unless ``frame`` (4-byte length included) is safe to decode and
    its containers hold at most ``max_items`` elements in all."""
    budget = [max_items, max_items]   # [left, limit], spent by every container met
    try:
        version, = _i32(frame, 4)
        if version >= 0:
            raise MalformedFrame("no binary protocol version header")
        name_length, = _i32(frame, 8)
        if name_length < 0:
            raise MalformedFrame("negative method name length")
        end = _walk_struct(frame, 16 + name_length, 0, budget)   # the arguments, after the name and the seqid
    except (IndexError, struct.error):
        end = len(frame) + 1
    if end > len(frame):
        raise MalformedFrame("the frame ends in the middle of a value")


def _walk_struct(frame: bytes, position: int, depth: int, budget: list[int]) -> int:
    if depth > _MAX_DEPTH:
        raise MalformedFrame(f"structures nested deeper than {_MAX_DEPTH}")
    while True:
        field_type = frame[position]
        if field_type == _STOP:
            return position + 1
        position = _walk_value(frame, position + 3, field_type, depth, budget)   # after the type and the i16 id


def _walk_value(frame: bytes, position: int, value_type: int, depth: int, budget: list[int]) -> int:
    size = _FIXED.get(value_type)
    if size is not None:
        return position + size
    if value_type == _STRING or value_type == _BINARY:
        length, = _i32(frame, position)
        if length < 0:
            raise MalformedFrame("negative string length")
        return position + 4 + length
    if value_type == _STRUCT:
        return _walk_struct(frame, position, depth + 1, budget)
    if value_type == _MAP:
        key_type, item_type = frame[position], frame[position + 1]
        count, = _i32(frame, position + 2)
        position += 6
        _check_count(frame, position, count, budget, key_type, item_type)
        for _ in range(count):
            position = _walk_value(frame, position, key_type, depth + 1, budget)
            position = _walk_value(frame, position, item_type, depth + 1, budget)
        return position
    if value_type == _LIST or value_type == _SET:
        item_type = frame[position]
        count, = _i32(frame, position + 1)
        position += 5
        _check_count(frame, position, count, budget, item_type)
        size = _FIXED.get(item_type)
        if size is not None:
            return position + count * size
        if item_type == _STRUCT:
            return _walk_structs(frame, position, count, depth + 1, budget)
        for _ in range(count):
            position = _walk_value(frame, position, item_type, depth + 1, budget)
        return position
    raise MalformedFrame(f"unknown value type {value_type}")


def _check_count(frame: bytes, position: int, count: int, budget: list[int], *item_types: int) -> None:
    if count < 0:
        raise MalformedFrame("negative container size")
    if count == 0:
        return
    sizes = [size for size in map(_MIN_SIZE.get, item_types) if size is not None]
    if len(sizes) < len(item_types):
        raise MalformedFrame(f"container of unknown element type {item_types}")
    if count * sum(sizes) > len(frame) - position:
        raise MalformedFrame(f"container claims {count} elements, more than the frame holds")
    budget[0] -= count
    if budget[0] < 0:
        raise MalformedFrame(f"the frame's containers hold more than {budget[1]} elements in all")


def _walk_structs(frame: bytes, position: int, count: int, depth: int, budget: list[int]) -> int:
    """A list of structs; log entries in the usual layout are checked without the general walk."""
    if depth > _MAX_DEPTH:
        raise MalformedFrame(f"structures nested deeper than {_MAX_DEPTH}")
    end = len(frame)
    for _ in range(count):
        if position + _ENTRY_HEAD_SIZE <= end:
            term_field, index_field, command_field, length = _entry_head(frame, position)
            if (term_field, index_field, command_field) == _ENTRY_FIELDS and length >= 0:
                tail = position + _ENTRY_HEAD_SIZE + length
                if frame[tail:tail + 5] in _ENTRY_TAILS:
                    position = tail + 5
                    continue
        position = _walk_struct(frame, position, depth, budget)
    return position
