"""The codec: how every value the journal holds becomes JSON text and back.

One codec serves both stores, so a value read back from memory or from
SQLite is the same: an equal copy of what was written, of the same type.
JSON's own types pass through; everything else is tagged with a
one-key object naming what it is:

* ``Decimal``, ``UUID``, ``datetime``/``date``/``time`` (offset kept),
  ``bytes``, tuples, sets, non-finite floats and dicts whose keys are not
  plain strings (``{"$dict": [[key, value], ...]}``);
* ``Counter``, ``OrderedDict`` and ``defaultdict`` (whose factory is a
  builtin container or number type), as themselves;
* enums, as their value, restored as the member of their class;
* pydantic models, field by field (so a field typed ``Any`` keeps its
  value's type), a field the codec has no form for (``HttpUrl``, ``Path``)
  through pydantic's own JSON mode (``{"$json": ...}``); restored by
  validation against the model; attrs classes, field by field;
* user types registered with :func:`register_type`, through the cattrs
  converter that holds the registry.

A value of any other type raises :class:`UnstorableValue` naming where it
sits (``output.items[2]``) and its type: nothing is written. So does a
subclass of a builtin type (a ``str`` or ``list`` subclass would come back
as the plain type), and a pydantic secret (``SecretStr``), which is never
written, in clear or redacted.

Reading never imports anything. Classes are named in the JSON by
``module:qualname``, but a read constructs only the classes it is handed
as objects (:mod:`._trusted`): the codec's own records, registered types,
and the :class:`TrustedTypes` the caller passes (the runtime passes the
classes its pipeline declares). Any other name reads back as an inert
:class:`Unresolved` value.

The one piece of process-wide state in trioflow is the registry of
:data:`CODEC` (``register_type``); everything else belongs to a runtime or
a run. It is process-wide on purpose:

* a registration says how a *class* is stored, which is a property of the
  class, not of a store or a run: two registries holding different
  functions for one class would write journals the other cannot read;
* a pipeline registers its types when its module is imported, and the
  command line imports the module (``trioflow run module:pipeline``)
  before it has opened a store or a runtime: there is nothing else yet to
  register with (pickle's ``copyreg`` is global for the same reason);
* sharing it is safe: registering takes a lock, and a concurrent encode
  or read sees a class's old entry or its new one, never half of one; a
  registration vouches only for a class that code hands over, never for a
  name read from stored data.

Code that needs a registry of its own (a test) makes its own
:class:`Codec`.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import enum
import functools
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
import pydantic
import pydantic_core

from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._store import StoreError
from ._trusted import NO_TYPES, TrustedTypes, class_name, is_stored_by_name, walk_parts

T = TypeVar("T")

_TAG = "$"

#: Types stored as they are (exactly these: subclasses such as enums go through dispatch).
_PLAIN = frozenset({str, int, bool, type(None)})

#: Builtin types whose subclasses would come back as the plain type: refused instead.
_BUILTINS = (str, int, float, list, tuple, set, frozenset, dict, bytes)

#: pydantic's secret types: never written, in clear or redacted.
_SECRETS = (pydantic.SecretStr, pydantic.SecretBytes, pydantic.Secret)

#: The ``default_factory`` values a stored ``defaultdict`` may have, by stored name.
_FACTORIES: dict[str, Callable[[], Any] | None] = {
    "None": None,
    **{
        factory.__name__: factory
        for factory in (list, dict, set, frozenset, tuple, int, float, str, decimal.Decimal)
    },
}

# One encoder, made once: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class UnstorableValue(TypeError):
    """A value the codec cannot store; ``where`` says where it sits."""

    def __init__(self, where: str, value: object, reason: str | None = None) -> None:
        kind = class_name(type(value))
        super().__init__(
            f"{where}: {reason}"
            if reason is not None
            else f"{where}: cannot store a value of type {kind}; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)"
        )
        self.where = where
        self.type_name = kind


class CorruptJournal(StoreError, ValueError):
    """Stored JSON that the codec cannot read back (a damaged or foreign record)."""


#: The tag of each kind of class-named value, and the key holding its data.
_DATA_KEY = {"$enum": "value", "$model": "value", "$attrs": "fields", "$type": "value"}

#: The journal's own records: every read may construct them.
_OWN_TYPES = (RunRecord, StepRecord, PauseRecord, LedgerEntry)


@attrs.frozen
class Unresolved:
    """A stored value whose class this read was not handed: its name and data, inert.

    Reading a journal never imports the class a value names, nor calls
    anything: a class the reader does not vouch for (see
    :class:`TrustedTypes`) comes back as this. Listing or showing runs works
    anywhere, and shows what was stored; code that needs the real object
    (resuming a run) checks for this and says which class is missing. Stored
    again, it is written back exactly as it was read.
    """

    class_name: str
    data: Any
    #: What the value was stored as: ``enum``, ``model``, ``attrs`` or ``type``.
    kind: str = attrs.field(validator=attrs.validators.in_(("enum", "model", "attrs", "type")))

    def __repr__(self) -> str:
        return f"<unresolved {self.class_name}: {self.data!r}>"


class Codec:
    """Encodes values to JSON text and back; see the module docstring.

    ``register_type`` may be called from any thread or task at any time: the
    registry is guarded by a lock and each lookup sees a complete entry.
    """

    def __init__(self) -> None:
        self._converter = cattrs.Converter()
        self._registered: dict[type, str] = {}
        #: The classes every read may construct: the journal's records and registered types.
        self._trusted: dict[str, type] = {class_name(cls): cls for cls in _OWN_TYPES}
        # Per class, how its values are encoded (decided on first sight; reset by
        # register_type). Replaced, never mutated, so lookups need no lock.
        self._dispatch: dict[type, Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    def register_type(
        self,
        cls: type[T],
        unstructure: Callable[[T], Any] | None = None,
        structure: Callable[[Any], T] | None = None,
    ) -> None:
        """Store ``cls`` values as ``unstructure(value)``, read them with ``structure``.

        ``unstructure`` must return something the codec can store itself.
        Registering a class again replaces its functions. Without functions,
        ``cls`` must be an enum, a pydantic model or an attrs class: it is
        stored as such, and every read may construct it (no pipeline needs
        to declare it).
        """
        if not isinstance(cls, type):
            raise TypeError(f"register_type needs a class, got {cls!r}")
        if (unstructure is None) != (structure is None):
            raise TypeError("register_type needs both unstructure and structure, or neither")
        if unstructure is None and not is_stored_by_name(cls):
            raise TypeError(
                f"register_type({class_name(cls)}) without functions needs an enum, a pydantic "
                "model or an attrs class; give unstructure and structure for any other class"
            )
        with self._lock:
            name = class_name(cls)
            if unstructure is not None and structure is not None:
                self._converter.register_unstructure_hook(cls, unstructure)
                self._converter.register_structure_hook(cls, _structure_hook(structure))
                self._registered = {**self._registered, cls: name}
            self._trusted = {**self._trusted, name: cls}
            self._dispatch = {}

    def trusts(self, cls: type) -> bool:
        """Whether every read may construct ``cls`` (a record of the journal, or registered)."""
        return self._trusted.get(class_name(cls)) is cls

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

    def from_document(self, document: Any, *, types: TrustedTypes = NO_TYPES) -> Any:
        """The value :meth:`to_document` turned into ``document``.

        Classes are constructed only if the codec trusts them or ``types``
        holds them; any other becomes :class:`Unresolved`.
        """
        return _Reading(self._trusted, self._registered, types, self._converter).value(document)

    def decode(self, text: str, *, types: TrustedTypes = NO_TYPES) -> Any:
        """The value :meth:`encode` turned into ``text`` (see :meth:`from_document`)."""
        return self.from_document(parse(text), types=types)

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
        encoder = self._special_encoder(cls) or self._container_encoder(cls)
        if encoder is None:
            encoder = _refusal(cls)
        self._dispatch = {**self._dispatch, cls: encoder}
        return encoder

    def _special_encoder(self, cls: type) -> Callable[[Any], Any] | None:
        registered = self._registered.get(cls)
        if registered is not None:
            return functools.partial(self._registered_value, registered)
        if cls is Unresolved:
            return self._unresolved
        if issubclass(cls, enum.Enum):  # before int/str/float: members are those too
            return self._enum
        if cls in _ENCODERS:
            return _ENCODERS[cls]
        if issubclass(cls, pydantic.BaseModel):
            return self._model
        if attrs.has(cls):
            return functools.partial(self._attrs, _attrs_fields(cls))
        return None

    def _container_encoder(self, cls: type) -> Callable[[Any], Any] | None:
        """Exactly the builtin containers, and the ``collections`` dicts kept as themselves."""
        encoders: dict[type, Callable[[Any], Any]] = {
            list: self._items,
            tuple: self._tuple,
            set: self._set,
            frozenset: self._set,
            dict: self._dict,
            collections.Counter: functools.partial(self._dict_kind, "$counter"),
            collections.OrderedDict: functools.partial(self._dict_kind, "$ordereddict"),
            collections.defaultdict: self._defaultdict,
        }
        return encoders.get(cls)

    def _registered_value(self, name: str, value: Any) -> Any:
        try:
            plain = self._to_json(self._converter.unstructure(value))
        except _Unplaced as error:
            raise error.inside(f"<{name}>") from None
        return {"$type": name, "value": plain}

    def _unresolved(self, value: Unresolved) -> Any:
        """Written back as it was read, so a store round trip never loses it."""
        tag = f"${value.kind}"
        data = value.data
        if tag in ("$model", "$attrs") and isinstance(data, dict):  # fields, as _Reading reads them
            fields = {key: self._to_json(item) for key, item in data.items()}
            return {tag: value.class_name, _DATA_KEY[tag]: fields}
        return {tag: value.class_name, _DATA_KEY[tag]: self._to_json(data)}

    def _enum(self, value: enum.Enum) -> Any:
        try:
            plain = self._to_json(value.value)
        except _Unplaced as error:
            raise error.inside(".value") from None
        return {"$enum": class_name(type(value)), "value": plain}

    def _items(self, items: Iterable[Any]) -> list[Any]:
        encoded = []
        for index, item in enumerate(items):
            try:
                encoded.append(self._to_json(item))
            except _Unplaced as error:
                raise error.inside(f"[{index}]") from None
        return encoded

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

    def _dict_kind(self, tag: str, value: dict[Any, Any]) -> Any:
        return {tag: self._dict(value)}

    def _defaultdict(self, value: collections.defaultdict[Any, Any]) -> Any:
        factory = value.default_factory
        name = "None" if factory is None else getattr(factory, "__name__", "")
        if name not in _FACTORIES or _FACTORIES[name] is not factory:
            allowed = ", ".join(_FACTORIES)
            named = getattr(factory, "__qualname__", type(factory).__qualname__)
            raise _Unplaced(
                value,
                f"cannot store a collections:defaultdict whose default_factory is {named} "
                f"(a function cannot be stored); its factory must be one of {allowed}",
            )
        return {"$defaultdict": name, "value": self._dict(value)}

    def _model(self, value: pydantic.BaseModel) -> Any:
        # Field by field through the codec, so a field typed ``Any`` keeps its value's
        # type (a model, a Decimal, an enum member); pydantic's JSON mode only for the
        # fields the codec has no form for.
        cls = type(value)
        names = [*cls.model_fields, *(value.__pydantic_extra__ or ())]
        fallback = functools.partial(_json_mode, value)
        return {"$model": class_name(cls), "value": self._fields(value, names, names, fallback)}

    def _attrs(self, fields: tuple[tuple[str, ...], tuple[str, ...]], value: Any) -> Any:
        return {"$attrs": class_name(type(value)), "fields": self._fields(value, *fields)}

    def _fields(
        self,
        value: Any,
        names: Sequence[str],
        keys: Sequence[str],
        fallback: Callable[[str, _Unplaced], Any] | None = None,
    ) -> dict[str, Any]:
        """Attribute ``names[i]`` of ``value`` encoded under ``keys[i]``.

        ``fallback(name, error)`` is tried for an attribute the codec cannot
        store; it raises ``error`` if it cannot store it either.
        """
        encoded = {}
        for name, key in zip(names, keys, strict=True):
            field = getattr(value, name)
            if type(field) in _PLAIN:  # most fields of a record: no call, no dispatch
                encoded[key] = field
                continue
            try:
                try:
                    encoded[key] = self._to_json(field)
                except _Unplaced as error:
                    if fallback is None:
                        raise
                    encoded[key] = fallback(name, error)
            except _Unplaced as error:
                raise error.inside(f".{name}") from None
        return encoded


class _Reading:
    """One read: the classes it may construct, and the document walk that uses them."""

    def __init__(
        self,
        trusted: dict[str, type],
        registered: dict[type, str],
        types: TrustedTypes,
        converter: cattrs.Converter,
    ) -> None:
        self._trusted = trusted
        self._registered = registered
        self._types = types
        self._converter = converter

    def value(self, document: Any) -> Any:
        if isinstance(document, list):
            return [self.value(item) for item in document]
        if not isinstance(document, dict):
            return document
        tag = next(iter(document), None) if len(document) <= 2 else None
        if tag is None or not tag.startswith(_TAG):
            return {key: self.value(item) for key, item in document.items()}
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(document[tag])
        return self._tagged(tag, document)

    def _tagged(self, tag: str, document: dict[str, Any]) -> Any:
        match tag:
            case "$tuple":
                return tuple(self.value(item) for item in document[tag])
            case "$set":
                return {self.value(item) for item in document[tag]}
            case "$frozenset":
                return frozenset(self.value(item) for item in document[tag])
            case "$dict":
                return {self.value(k): self.value(v) for k, v in document[tag]}
            case "$counter":
                return collections.Counter(self.value(document[tag]))
            case "$ordereddict":
                return collections.OrderedDict(self.value(document[tag]))
            case "$defaultdict":
                return self._defaultdict(document)
        if tag not in _DATA_KEY:
            raise CorruptJournal(f"unknown tag {tag!r} in stored JSON")
        return self._named(tag, document)

    def _defaultdict(self, document: dict[str, Any]) -> Any:
        name = document["$defaultdict"]
        if name not in _FACTORIES:
            raise CorruptJournal(f"a stored defaultdict names an unknown factory {name!r}")
        return collections.defaultdict(_FACTORIES[name], self.value(document["value"]))

    def _named(self, tag: str, document: dict[str, Any]) -> Any:
        """A value stored under its class's name: constructed only if this read trusts it."""
        name = document[tag]
        data = document[_DATA_KEY[tag]]
        if not isinstance(name, str):
            raise CorruptJournal(f"a stored {tag} value names its class with {name!r}")
        cls = self._types.get(name) or self._trusted.get(name)
        decoded = self._data(tag, name, data)
        if cls is None:
            return Unresolved(name, decoded, tag[1:])
        if not _FITS[tag](cls, self._registered):
            raise CorruptJournal(f"the journal stores {name} as {tag[1:]}, which it is not")
        try:
            return self._construct(tag, cls, decoded)
        except pydantic.ValidationError:
            # A trusted model whose stored fields no longer validate: its class changed
            # since the value was stored. That is the code's change, not damage to the
            # journal, so pydantic's error goes to the caller, who can name the field.
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise CorruptJournal(
                f"the journal holds a {name} that does not fit that class: {error}"
            ) from None

    def _data(self, tag: str, name: str, data: Any) -> Any:
        """The decoded data of a named value; a model's or attrs class's fields one by one.

        One by one: a field (a model's extra) named like a tag is a field, not a tag.
        """
        if tag not in ("$model", "$attrs"):
            return self.value(data)
        if not isinstance(data, dict):
            raise CorruptJournal(f"the journal holds a {name} whose fields are not a mapping")
        return {key: self.value(item) for key, item in data.items()}

    def _construct(self, tag: str, cls: Any, decoded: Any) -> Any:
        match tag:
            case "$enum":
                return cls(decoded)
            case "$model":
                # Not strict: a field kept in pydantic's JSON mode is validated from JSON values.
                return cls.model_validate(decoded, by_name=True, strict=False)
            case "$attrs":
                return cls(**decoded)
        return self._converter.structure(decoded, cls)


#: Per tag, whether a class is of the kind the tag says (so nothing else is ever called).
_FITS: dict[str, Callable[[type, dict[type, str]], bool]] = {
    "$enum": lambda cls, _: issubclass(cls, enum.Enum),
    "$model": lambda cls, _: issubclass(cls, pydantic.BaseModel),
    "$attrs": lambda cls, _: attrs.has(cls),
    "$type": lambda cls, registered: cls in registered,
}


def parse(text: str) -> Any:
    """The JSON document ``text`` holds; :class:`CorruptJournal` if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptJournal(f"stored JSON cannot be read: {error}") from error


def _structure_hook(structure: Callable[[Any], T]) -> Callable[[Any, Any], T]:
    return lambda value, _: structure(value)


def _json_mode(model: pydantic.BaseModel, name: str, error: _Unplaced) -> Any:
    """Field ``name`` of ``model`` in pydantic's JSON mode, or ``error`` if that would lose it.

    Only a field whose own value failed (not one inside a nested model or
    attrs class, which had its chance), whose declared type pins the class
    down (no ``Any``: validation would not know what to rebuild), and which
    can hold no secret (JSON mode writes it redacted: the value would be lost).
    """
    fields = type(model).model_fields
    if (
        error.reason is not None
        or any(segment.startswith(".") for segment in error.segments)
        or name not in fields
        or not _names_its_classes(fields[name].annotation)
    ):
        raise error
    if _can_hold_a_secret(fields[name].annotation):
        error.reason = (
            f"cannot store a value of type {class_name(type(error.value))} in a field that can "
            "hold a pydantic secret (which is never stored)"
        )
        raise error
    try:
        dumped = model.model_dump(mode="json", include={name}, round_trip=True, warnings="error")
    except pydantic_core.PydanticSerializationError:
        raise error from None
    if name not in dumped:
        raise error
    return {"$json": dumped[name]}


def _names_its_classes(annotation: Any) -> bool:
    """Whether validating JSON against ``annotation`` knows which classes to rebuild."""
    return not any(part is Any or part is object for part in walk_parts(annotation))


def _can_hold_a_secret(annotation: Any) -> bool:
    return any(
        isinstance(part, type) and issubclass(part, _SECRETS) for part in walk_parts(annotation)
    )


class _Unplaced(Exception):
    """An unstorable value, and the path to it collected on the way out."""

    def __init__(self, value: object, reason: str | None = None) -> None:
        super().__init__()
        self.value = value
        self.reason = reason
        self.segments: list[str] = []

    def inside(self, segment: str) -> _Unplaced:
        """This error, one level further out: ``segment`` leads to where it was."""
        self.segments.append(segment)
        return self

    def placed(self, where: str) -> UnstorableValue:
        return UnstorableValue(where + "".join(reversed(self.segments)), self.value, self.reason)


def _refusal(cls: type) -> Callable[[Any], Any]:
    """The encoder of a class the codec cannot store: it raises, saying why when it can."""
    name = class_name(cls)
    reason: str | None = None
    if issubclass(cls, _SECRETS):
        reason = (
            f"a {name} is never stored: the journal would hold the secret in clear, or "
            "redacted and lost; keep secrets out of outputs and the context (pass them in "
            "resources=)"
        )
    elif issubclass(cls, _BUILTINS) and not hasattr(cls, "_fields"):
        base = next(base for base in _BUILTINS if issubclass(cls, base))
        reason = (
            f"cannot store a value of type {name}, a subclass of {base.__name__}: it would "
            f"come back as a plain {base.__name__}; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)"
        )

    def refuse(value: object) -> Any:
        raise _Unplaced(value, reason)

    return refuse


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
    # A model field in pydantic's JSON mode: plain JSON, validated by the model.
    "$json": lambda value: value,
}

#: The process-wide codec every store uses; extend it with :func:`register_type`.
#: Process-wide on purpose: see the module docstring.
CODEC = Codec()
register_type = CODEC.register_type
