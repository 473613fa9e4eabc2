"""Base classes of user commands and the registry that lets them cross the wire.

A command is encoded as its registered type name plus its fields, never pickled:
a member only ever constructs classes that the application registered by
subclassing :class:`WriteCommand` or :class:`ReadCommand`. Dataclasses are the
natural form::

    @dataclass
    class Put(WriteCommand):
        key: str
        value: str

The type name defaults to ``module.QualifiedName``; pass ``type_name=`` in the
class statement (``class Put(WriteCommand, type_name="kv.put")``) to keep it
stable across a rename, because it is stored in every log entry.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ckite.errors import UnknownCommandError

_registry: dict[str, type[Command]] = {}


class Command:
    """A request the application sends through ckite; subclass its two children, not this."""

    type_name: ClassVar[str]
    #: The name given with ``type_name=``, kept for the class a dataclass(slots=True) re-creates.
    _explicit_type_name: ClassVar[str]

    def __init_subclass__(cls, type_name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in ("WriteCommand", "ReadCommand") and cls.__module__ == __name__:
            return
        # A dataclass(slots=True) re-creates the class under the same name: inherit the explicit name.
        name = type_name or cls.__dict__.get("type_name") or getattr(cls, "_explicit_type_name", None)
        if name is None:
            name = f"{cls.__module__}.{cls.__qualname__}"
        else:
            cls._explicit_type_name = name
        previous = _registry.get(name)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise ValueError(f"command type name {name!r} is already used by {previous!r}")
        cls.type_name = name
        _registry[name] = cls

    def fields(self) -> dict[str, Any]:
        """The values that define this command: dataclass fields, else the instance attributes."""
        names = _field_names(type(self))
        if names is None:
            return dict(vars(self))
        return {name: getattr(self, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names, looked up once per class (``dataclasses.fields`` costs
    microseconds per call: on the write path, that is per entry); None for other classes."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        _FIELD_NAMES[cls] = names
        return names


class WriteCommand(Command):
    """A command that changes the state machine: replicated through the log, applied on every member."""


class ReadCommand(Command):
    """A command that only reads the state machine: never logged, run on one member."""


def command_class(type_name: str) -> type[Command]:
    """The registered class for ``type_name``; raises :class:`UnknownCommandError` otherwise."""
    try:
        return _registry[type_name]
    except KeyError:
        raise UnknownCommandError(f"unknown command type {type_name!r} (is its module imported?)") from None
