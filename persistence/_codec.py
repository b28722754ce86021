"""The codec: how every value the journal holds becomes JSON text and back.

One codec serves both stores, so a value read back from memory or from
SQLite is the same: an equal copy of what was written, of the same type.
JSON's own types pass through; everything else is tagged with a
one-key object naming what it is:

* ``Decimal``, ``UUID``, ``datetime``/``date``/``time`` (offset kept),
  ``bytes``, tuples, sets, non-finite floats and dicts whose keys are not
  plain strings (``{"$dict": [[key, value], ...]}``);
* enums, as their value, restored as the member of their class;
* pydantic models (their JSON-mode dump, restored by validation), attrs
  classes (field by field, so fields typed ``Any`` keep their types);
* user types registered with :func:`register_type`, through the cattrs
  converter that holds the registry.

A value of any other type raises :class:`UnstorableValue` naming where it
sits (``output.items[2]``) and its type: nothing is written.

Classes are named in the JSON by ``module:qualname`` and imported again
when read, so the journal must be read by code that has those classes.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import functools
import importlib
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
import pydantic

from ._store import StoreError

T = TypeVar("T")

_TAG = "$"

#: Types stored as they are (exactly these: subclasses such as enums go through dispatch).
_PLAIN = frozenset({str, int, bool, type(None)})

# One encoder, made once: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class UnstorableValue(TypeError):
    """A value the codec cannot store; ``where`` says where it sits."""

    def __init__(self, where: str, value: object) -> None:
        kind = _class_name(type(value))
        super().__init__(
            f"{where}: cannot store a value of type {kind}; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)"
        )
        self.where = where
        self.type_name = kind


class CorruptJournal(StoreError, ValueError):
    """Stored JSON that the codec cannot read back (a damaged or foreign record)."""


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_CLASS_TAGS = frozenset({"$enum", "$model", "$attrs", "$type"})


@attrs.frozen
class Unresolved:
    """A stored value whose class cannot be imported in this process.

    Reading a journal never fails because code is missing: listing runs
    works anywhere, and the value shows what was stored. Code that needs
    the real object (resuming a run) checks for this and says which class
    to import.
    """

    class_name: str
    data: Any

    def __repr__(self) -> str:
        return f"<{self.class_name} (not importable here): {self.data!r}>"


def _find_class(name: str) -> Any:
    """The class ``module:qualname`` names, or None when it cannot be imported here."""
    module_name, _, qualname = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found


class Codec:
    """Encodes values to JSON text and back; see the module docstring.

    ``register_type`` may be called from any thread or task at any time: the
    registry is guarded by a lock and each lookup sees a complete entry.
    """

    def __init__(self) -> None:
        self._converter = cattrs.Converter()
        self._registered: dict[type, str] = {}
        self._by_name: dict[str, type] = {}
        # Per class, how its values are encoded (decided on first sight; reset by
        # register_type). Replaced, never mutated, so lookups need no lock.
        self._dispatch: dict[type, Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    def register_type(
        self,
        cls: type[T],
        unstructure: Callable[[T], Any],
        structure: Callable[[Any], T],
    ) -> None:
        """Store ``cls`` values as ``unstructure(value)``, read them with ``structure``.

        ``unstructure`` must return something the codec can store itself.
        Registering a class again replaces its functions.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register_type needs a class, got {cls!r}")
        with self._lock:
            self._converter.register_unstructure_hook(cls, unstructure)
            self._converter.register_structure_hook(cls, lambda value, _: structure(value))
            name = _class_name(cls)
            self._registered = {**self._registered, cls: name}
            self._by_name = {**self._by_name, name: cls}
            self._dispatch = {}

    def encode(self, value: Any, *, where: str = "value") -> str:
        """``value`` as JSON text; :class:`UnstorableValue` if some part cannot be stored."""
        return _JSON.encode(self.to_document(value, where=where))

    def to_document(self, value: Any, *, where: str = "value") -> Any:
        """``value`` as the JSON-ready structure :meth:`encode` writes out.

        For a store that keeps documents in memory: the same checks and the
        same copy semantics as text, without printing and parsing JSON.
        """
        try:
            return self._to_json(value)
        except _Unplaced as error:
            raise error.placed(where) from None

    def from_document(self, document: Any) -> Any:
        """The value :meth:`to_document` turned into ``document``."""
        return self._from_json(document)

    def decode(self, text: str) -> Any:
        """The value :meth:`encode` turned into ``text``."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorruptJournal(f"stored JSON cannot be read: {error}") from error
        return self._from_json(document)

    # -- encoding ------------------------------------------------------------------------
    #
    # The encoder runs on every step's record, so it is built for the common case:
    # one dispatch-table lookup per value, and no description of *where* a value
    # sits unless it turns out to be unstorable (then each level adds its part of
    # the path to the error on the way out).

    def _to_json(self, value: Any) -> Any:
        encoder = self._dispatch.get(type(value))
        if encoder is None:
            encoder = self._encoder_for(type(value))
        return encoder(value)

    def _encoder_for(self, cls: type) -> Callable[[Any], Any]:
        """Decide once per class how its values are encoded."""
        registered = self._registered.get(cls)
        encoder: Callable[[Any], Any]
        if registered is not None:
            encoder = functools.partial(self._registered_value, registered)
        elif issubclass(cls, enum.Enum):  # before int/str/float: members are those too
            encoder = self._enum
        elif cls in _ENCODERS:
            encoder = _ENCODERS[cls]
        elif issubclass(cls, str | int):
            encoder = _same
        elif issubclass(cls, float):
            encoder = _float
        elif issubclass(cls, list):
            encoder = self._list
        elif issubclass(cls, tuple) and not hasattr(cls, "_fields"):
            encoder = self._tuple
        elif issubclass(cls, set | frozenset):
            encoder = self._set
        elif issubclass(cls, dict):
            encoder = self._dict
        elif issubclass(cls, pydantic.BaseModel):
            encoder = self._model
        elif attrs.has(cls):
            encoder = functools.partial(self._attrs, _attrs_fields(cls))
        else:
            encoder = _unstorable
        self._dispatch = {**self._dispatch, cls: encoder}
        return encoder

    def _registered_value(self, name: str, value: Any) -> Any:
        try:
            plain = self._to_json(self._converter.unstructure(value))
        except _Unplaced as error:
            raise error.inside(f"<{name}>") from None
        return {"$type": name, "value": plain}

    def _enum(self, value: enum.Enum) -> Any:
        try:
            plain = self._to_json(value.value)
        except _Unplaced as error:
            raise error.inside(".value") from None
        return {"$enum": _class_name(type(value)), "value": plain}

    def _items(self, items: Iterable[Any]) -> list[Any]:
        encoded = []
        for index, item in enumerate(items):
            try:
                encoded.append(self._to_json(item))
            except _Unplaced as error:
                raise error.inside(f"[{index}]") from None
        return encoded

    def _list(self, value: list[Any]) -> Any:
        return self._items(value)

    def _tuple(self, value: tuple[Any, ...]) -> Any:
        return {"$tuple": self._items(value)}

    def _set(self, value: set[Any] | frozenset[Any]) -> Any:
        tag = "$frozenset" if isinstance(value, frozenset) else "$set"
        try:
            items = sorted((self._to_json(item) for item in value), key=_sort_key)
        except _Unplaced as error:
            raise error.inside("{}") from None
        return {tag: items}

    def _dict(self, value: dict[Any, Any]) -> Any:
        plain = all(type(key) is str and not key.startswith(_TAG) for key in value)
        encoded: Any = {} if plain else []
        for key, item in value.items():
            try:
                encoded_item = self._to_json(item)
            except _Unplaced as error:
                raise error.inside(f"[{key!r}]") from None
            if plain:
                encoded[key] = encoded_item
                continue
            try:
                encoded.append([self._to_json(key), encoded_item])
            except _Unplaced as error:
                raise error.inside("<key>") from None
        return encoded if plain else {"$dict": encoded}

    def _model(self, value: pydantic.BaseModel) -> Any:
        # Field by field through the codec (not pydantic's JSON dump), so a field
        # typed ``Any`` keeps its value's type: a model, a Decimal, an enum member.
        names = [*type(value).model_fields, *(value.__pydantic_extra__ or ())]
        return {"$model": _class_name(type(value)), "value": self._fields(value, names, names)}

    def _attrs(self, fields: tuple[tuple[str, ...], tuple[str, ...]], value: Any) -> Any:
        return {"$attrs": _class_name(type(value)), "fields": self._fields(value, *fields)}

    def _fields(self, value: Any, names: Sequence[str], keys: Sequence[str]) -> dict[str, Any]:
        """Attribute ``names[i]`` of ``value`` encoded under ``keys[i]``."""
        encoded = {}
        for name, key in zip(names, keys, strict=True):
            field = getattr(value, name)
            if type(field) in _PLAIN:  # most fields of a record: no call, no dispatch
                encoded[key] = field
                continue
            try:
                encoded[key] = self._to_json(field)
            except _Unplaced as error:
                raise error.inside(f".{name}") from None
        return encoded

    # -- decoding ------------------------------------------------------------------------

    def _from_json(self, document: Any) -> Any:
        if isinstance(document, list):
            return [self._from_json(item) for item in document]
        if not isinstance(document, dict):
            return document
        tag = next(iter(document), None) if len(document) <= 2 else None
        if tag is None or not tag.startswith(_TAG):
            return {key: self._from_json(item) for key, item in document.items()}
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(document[tag])
        return self._tagged(tag, document)

    def _tagged(self, tag: str, document: dict[str, Any]) -> Any:
        match tag:
            case "$tuple":
                return tuple(self._from_json(item) for item in document[tag])
            case "$set":
                return {self._from_json(item) for item in document[tag]}
            case "$frozenset":
                return frozenset(self._from_json(item) for item in document[tag])
            case "$dict":
                return {self._from_json(k): self._from_json(v) for k, v in document[tag]}
        if tag not in _CLASS_TAGS:
            raise CorruptJournal(f"unknown tag {tag!r} in stored JSON")
        name = document[tag]
        cls: Any = self._by_name.get(name) or _find_class(name)
        if cls is None:
            data = document["fields"] if tag == "$attrs" else document["value"]
            return Unresolved(name, self._from_json(data))
        match tag:
            case "$enum":
                return cls(self._from_json(document["value"]))
            case "$model":
                fields = {k: self._from_json(v) for k, v in document["value"].items()}
                return cls.model_validate(fields, by_name=True)
            case "$attrs":
                return cls(**{k: self._from_json(v) for k, v in document["fields"].items()})
        return self._converter.structure(self._from_json(document["value"]), cls)


class _Unplaced(Exception):
    """An unstorable value, and the path to it collected on the way out."""

    def __init__(self, value: object, segments: list[str] | None = None) -> None:
        super().__init__()
        self.value = value
        self.segments = segments or []

    def inside(self, segment: str) -> _Unplaced:
        """This error, one level further out: ``segment`` leads to where it was."""
        self.segments.append(segment)
        return self

    def placed(self, where: str) -> UnstorableValue:
        return UnstorableValue(where + "".join(reversed(self.segments)), self.value)


def _unstorable(value: object) -> Any:
    raise _Unplaced(value)


def _attrs_fields(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The attributes of the init fields, and their ``__init__`` names (``_x`` is ``x``)."""
    fields = [field for field in attrs.fields(cls) if field.init]
    return (
        tuple(field.name for field in fields),
        tuple(field.alias or field.name for field in fields),
    )


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _isoformat(value: datetime.date | datetime.time) -> str:
    return value.isoformat()


def _float(value: float) -> Any:
    return value if math.isfinite(value) else {"$float": repr(value)}


def _same(value: Any) -> Any:
    return value


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    str: _same,
    int: _same,
    bool: _same,
    type(None): _same,
    float: _float,
    decimal.Decimal: lambda value: {"$decimal": str(value)},
    uuid.UUID: lambda value: {"$uuid": str(value)},
    datetime.datetime: lambda value: {"$datetime": _isoformat(value)},
    datetime.date: lambda value: {"$date": _isoformat(value)},
    datetime.time: lambda value: {"$time": _isoformat(value)},
    bytes: lambda value: {"$bytes": base64.b64encode(value).decode("ascii")},
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$decimal": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$datetime": datetime.datetime.fromisoformat,
    "$date": datetime.date.fromisoformat,
    "$time": datetime.time.fromisoformat,
    "$bytes": lambda text: base64.b64decode(text.encode("ascii")),
    "$float": float,
}

#: The process-wide codec both stores use; extend it with :func:`register_type`.
CODEC = Codec()
register_type = CODEC.register_type
