"""Which classes a read may construct: the types the running program vouches for.

A stored value names its class (``module:qualname``). Decoding must never
import that name or call whatever it points to: a journal is data, and a
tampered one would run code (``{"$enum": "os:system", "value": "..."}``).
So the codec constructs only classes it is handed as objects, here or by
:func:`~trioflow.persistence.register_type`; any other name reads back as
an inert :class:`~trioflow.persistence.Unresolved` value.

:meth:`TrustedTypes.reachable_from` collects the classes a set of type
annotations can hold: the pipeline's declared input, output and context
types, followed through fields of pydantic models and attrs classes,
generic arguments, unions, ``Annotated``, ``Literal`` members, ``NewType``
and type aliases, and the subclasses the program defined of every class
found. Only enums, pydantic models and attrs classes are collected: they
are the classes the codec stores by name.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import pydantic


def class_name(cls: type) -> str:
    """How the journal names ``cls``: ``module:qualname``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def is_stored_by_name(cls: type) -> bool:
    """Whether the codec stores values of ``cls`` under its name (enum, model, attrs class)."""
    return issubclass(cls, enum.Enum | pydantic.BaseModel) or attrs.has(cls)


@attrs.frozen
class TrustedTypes:
    """Classes a read may construct, by the name the journal gives them."""

    by_name: Mapping[str, type] = attrs.field(factory=dict)

    @classmethod
    def of(cls, *classes: type) -> TrustedTypes:
        """Exactly ``classes`` (no walk): for callers that name every class themselves."""
        return cls({class_name(found): found for found in classes})

    @classmethod
    def reachable_from(cls, *annotations: Any) -> TrustedTypes:
        """The enums, models and attrs classes values of ``annotations`` can hold."""
        return cls.of(*_Walk().classes(annotations))

    def __or__(self, other: TrustedTypes) -> TrustedTypes:
        return TrustedTypes({**self.by_name, **other.by_name})

    def get(self, name: str) -> type | None:
        return self.by_name.get(name)


#: No classes beyond the codec's own and the registered ones.
NO_TYPES = TrustedTypes()

#: Bases no walk vouches for: "any model" or "any enum" names no class of the program.
_ROOTS = frozenset(
    {
        pydantic.BaseModel,
        pydantic.RootModel,
        enum.Enum,
        enum.ReprEnum,
        enum.IntEnum,
        enum.StrEnum,
        enum.Flag,
        enum.IntFlag,
    }
)


class _Walk:
    """One walk over annotations; ``seen`` keeps it finite on recursive types."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.found: dict[type, None] = {}

    def classes(self, annotations: Iterable[Any]) -> list[type]:
        for annotation in annotations:
            self.visit(annotation)
        return list(self.found)

    def visit(self, annotation: Any) -> None:
        if id(annotation) in self.seen or annotation is typing.Any:
            return
        self.seen.add(id(annotation))
        for inner in _parts(annotation):
            self.visit(inner)
        if isinstance(annotation, type):
            self.visit_class(annotation)

    def visit_class(self, cls: type) -> None:
        # Only classes stored by name, and their subclasses: a declared ``str`` must not
        # vouch for every ``StrEnum`` the process happens to have loaded.
        if cls in _ROOTS or not is_stored_by_name(cls):
            return
        self.found[cls] = None
        for annotation in _field_annotations(cls):
            self.visit(annotation)
        subclasses: list[type] = cls.__subclasses__()
        for subclass in subclasses:
            self.visit(subclass)


def walk_parts(annotation: Any) -> Iterator[Any]:
    """``annotation`` and everything it is made of, without following classes' fields."""
    seen: set[int] = set()
    pending = [annotation]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        yield part
        pending.extend(_parts(part))


def _parts(annotation: Any) -> Iterator[Any]:
    """What an annotation is made of: generic origin and arguments, members, aliases."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        yield from (type(value) for value in typing.get_args(annotation))
        return
    if origin is typing.Annotated:
        yield typing.get_args(annotation)[0]
        return
    if origin is not None:
        yield origin
    yield from (arg for arg in typing.get_args(annotation) if arg is not Ellipsis)
    supertype = getattr(annotation, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        yield supertype
    value = getattr(annotation, "__value__", None)  # a ``type X = ...`` alias
    if value is not None and not isinstance(annotation, type):
        yield value
    if isinstance(annotation, typing.TypeVar):
        yield annotation.__bound__
        yield from annotation.__constraints__


def _field_annotations(cls: type) -> list[Any]:
    """The declared types of a model's or attrs class's fields (none for an enum)."""
    if issubclass(cls, pydantic.BaseModel):
        return [field.annotation for field in cls.model_fields.values()]
    if not attrs.has(cls):
        return []
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # a forward reference this module cannot see
        hints = {}
    return [hints.get(field.name, field.type) for field in attrs.fields(cls)]
