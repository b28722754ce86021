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
import importlib
import json
import math
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs
import pydantic

T = TypeVar("T")

_TAG = "$"


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


class CorruptJournal(ValueError):
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

    def encode(self, value: Any, *, where: str = "value") -> str:
        """``value`` as JSON text; :class:`UnstorableValue` if some part cannot be stored."""
        return json.dumps(self._to_json(value, where), separators=(",", ":"), allow_nan=False)

    def decode(self, text: str) -> Any:
        """The value :meth:`encode` turned into ``text``."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorruptJournal(f"stored JSON cannot be read: {error}") from error
        return self._from_json(document)

    # -- encoding ------------------------------------------------------------------------

    def _to_json(self, value: Any, where: str) -> Any:
        # Enums first: an int, str or float enum member is also an int, str or float.
        if isinstance(value, enum.Enum):
            return self._enum(value, where)
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        registered = self._registered.get(type(value))
        if registered is not None:
            plain = self._converter.unstructure(value)
            return {"$type": registered, "value": self._to_json(plain, f"{where}<{registered}>")}
        encoder = _ENCODERS.get(type(value))
        if encoder is not None:
            return encoder(value)
        return self._composite(value, where)

    def _composite(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self._to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {
                "$tuple": [self._to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
            }
        if isinstance(value, set | frozenset):
            tag = "$frozenset" if isinstance(value, frozenset) else "$set"
            items = sorted((self._to_json(item, f"{where}{{}}") for item in value), key=_sort_key)
            return {tag: items}
        if isinstance(value, dict):
            return self._dict(value, where)
        if isinstance(value, pydantic.BaseModel):
            try:
                dumped = value.model_dump(mode="json")
            except ValueError as error:  # PydanticSerializationError, UnicodeDecodeError
                raise _unstorable_field(value, where) from error
            return {"$model": _class_name(type(value)), "value": dumped}
        if attrs.has(type(value)):
            # Keyed by the __init__ argument (a private ``_x`` field's is ``x``).
            fields = {
                field.alias or field.name: self._to_json(
                    getattr(value, field.name), f"{where}.{field.name}"
                )
                for field in attrs.fields(type(value))
                if field.init
            }
            return {"$attrs": _class_name(type(value)), "fields": fields}
        raise UnstorableValue(where, value)

    def _enum(self, value: enum.Enum, where: str) -> Any:
        return {
            "$enum": _class_name(type(value)),
            "value": self._to_json(value.value, f"{where}.value"),
        }

    def _dict(self, value: dict[Any, Any], where: str) -> Any:
        if all(isinstance(key, str) and not key.startswith(_TAG) for key in value):
            return {key: self._to_json(item, f"{where}[{key!r}]") for key, item in value.items()}
        return {
            "$dict": [
                [self._to_json(key, f"{where}<key>"), self._to_json(item, f"{where}[{key!r}]")]
                for key, item in value.items()
            ]
        }

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
                # JSON-mode validation is the inverse of the JSON-mode dump, strict models too.
                return cls.model_validate_json(json.dumps(document["value"]))
            case "$attrs":
                return cls(**{k: self._from_json(v) for k, v in document["fields"].items()})
        return self._converter.structure(self._from_json(document["value"]), cls)


def _unstorable_field(model: pydantic.BaseModel, where: str) -> UnstorableValue:
    """The error for a model pydantic cannot dump, naming the first field that fails."""
    for name in type(model).model_fields:
        try:
            model.model_dump(mode="json", include={name})
        except ValueError:
            field_value = getattr(model, name)
            if isinstance(field_value, pydantic.BaseModel):
                return _unstorable_field(field_value, f"{where}.{name}")
            return UnstorableValue(f"{where}.{name}", field_value)
    return UnstorableValue(where, model)


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _isoformat(value: datetime.date | datetime.time) -> str:
    return value.isoformat()


_ENCODERS: dict[type, Callable[[Any], Any]] = {
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
