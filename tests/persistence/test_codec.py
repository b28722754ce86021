"""The codec: its stored form, its registry, and the errors it raises."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import math
import pathlib
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType

import attrs
import pydantic
import pytest
from trioflow.persistence import (
    CODEC,
    Codec,
    CorruptJournal,
    TrustedTypes,
    Unresolved,
    UnstorableValue,
)

MODULE = __name__
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


class Half(float, enum.Enum):
    HALF = 0.5


@attrs.frozen
class Point:
    x: Any
    y: Any
    _label: str = "p"


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, frozen=True)
    price: Decimal
    at: datetime.datetime
    id: uuid.UUID
    color: Color
    pair: tuple[int, str]


class Celsius:
    def __init__(self, degrees: Decimal) -> None:
        self.degrees = degrees

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Celsius) and self.degrees == other.degrees

    def __hash__(self) -> int:
        return hash(self.degrees)


#: The classes of this module, handed to reads as a pipeline's declared types would be.
TYPES = TrustedTypes.of(Color, Level, Half, Point, Strict)


def celsius_codec() -> Codec:
    codec = Codec()
    codec.register_type(Celsius, lambda c: {"degrees": c.degrees}, lambda d: Celsius(d["degrees"]))
    return codec


# -- the stored form: journals written today must read the same tomorrow -------------------


STORED_FORMS: list[tuple[Any, str]] = [
    (None, "null"),
    ({"a": [1, 2.5, "s", True]}, '{"a":[1,2.5,"s",true]}'),
    (Decimal("1.10"), '{"$decimal":"1.10"}'),
    (
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        '{"$uuid":"12345678-1234-5678-1234-567812345678"}',
    ),
    (
        datetime.datetime(2026, 3, 1, 15, 30, tzinfo=IST),
        '{"$datetime":"2026-03-01T15:30:00+05:30"}',
    ),
    (datetime.date(2026, 3, 1), '{"$date":"2026-03-01"}'),
    (datetime.time(9, 5, 1, 7), '{"$time":"09:05:01.000007"}'),
    ((1, [2]), '{"$tuple":[1,[2]]}'),
    ({3, 1, 2}, '{"$set":[1,2,3]}'),
    (frozenset({"b", "a"}), '{"$frozenset":["a","b"]}'),
    ({1: "one"}, '{"$dict":[[1,"one"]]}'),
    ({"$decimal": "x"}, '{"$dict":[["$decimal","x"]]}'),
    (b"\x00\xff", '{"$bytes":"AP8="}'),
    (-math.inf, '{"$float":"-inf"}'),
    (Color.RED, f'{{"$enum":"{MODULE}:Color","value":"red"}}'),
    (Level.ONE, f'{{"$enum":"{MODULE}:Level","value":1}}'),
    (Half.HALF, f'{{"$enum":"{MODULE}:Half","value":0.5}}'),
    (
        Point(1, Decimal("2.5"), label="q"),
        f'{{"$attrs":"{MODULE}:Point","fields":{{"x":1,"y":{{"$decimal":"2.5"}},"label":"q"}}}}',
    ),
]


@pytest.mark.parametrize(("value", "stored"), STORED_FORMS)
def test_the_stored_form_of_each_kind_of_value(value: Any, stored: str) -> None:
    assert CODEC.encode(value) == stored
    decoded = CODEC.decode(stored, types=TYPES)
    assert type(decoded) is type(value)
    assert decoded == value


def test_enum_members_come_back_as_the_same_members() -> None:
    assert CODEC.decode(CODEC.encode([Color.RED, Level.ONE, Half.HALF]), types=TYPES) == [
        Color.RED,
        Level.ONE,
        Half.HALF,
    ]
    members = CODEC.decode(CODEC.encode((Color.RED, Level.ONE, Half.HALF)), types=TYPES)
    assert (members[0] is Color.RED, members[1] is Level.ONE, members[2] is Half.HALF) == (
        True,
        True,
        True,
    )


def test_a_strict_pydantic_model_round_trips() -> None:
    model = Strict(
        price=Decimal("0.10"),
        at=datetime.datetime(2026, 3, 1, 15, 30, tzinfo=IST),
        id=uuid.UUID(int=5),
        color=Color.RED,
        pair=(1, "a"),
    )

    decoded = CODEC.decode(CODEC.encode(model), types=TYPES)

    assert decoded == model
    assert str(decoded.price) == "0.10"
    assert decoded.at.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert decoded.color is Color.RED


def test_nan_and_nested_containers_round_trip() -> None:
    value = {(1, "a"): {frozenset({2}), (3,)}, "x": [float("nan")]}

    decoded = CODEC.decode(CODEC.encode(value))

    assert list(decoded) == [(1, "a"), "x"]
    assert decoded[(1, "a")] == {frozenset({2}), (3,)}
    assert math.isnan(decoded["x"][0])


# -- the registry -----------------------------------------------------------------------------


def test_a_registered_type_round_trips_through_its_functions() -> None:
    codec = celsius_codec()
    value = {"today": Celsius(Decimal("21.50"))}

    stored = codec.encode(value)

    assert stored == (
        f'{{"today":{{"$type":"{MODULE}:Celsius","value":{{"degrees":{{"$decimal":"21.50"}}}}}}}}'
    )
    assert codec.decode(stored) == value
    assert str(codec.decode(stored)["today"].degrees) == "21.50"


def test_a_type_registered_with_one_codec_is_unknown_to_another() -> None:
    celsius_codec()

    with pytest.raises(UnstorableValue) as raised:
        Codec().encode([Celsius(Decimal(1))], where="output")

    assert raised.value.where == "output[0]"
    assert raised.value.type_name == f"{MODULE}:Celsius"


def test_registering_again_replaces_the_functions() -> None:
    codec = celsius_codec()
    codec.register_type(Celsius, lambda c: str(c.degrees), lambda text: Celsius(Decimal(text)))

    stored = codec.encode(Celsius(Decimal("3.0")))

    assert stored == f'{{"$type":"{MODULE}:Celsius","value":"3.0"}}'
    assert codec.decode(stored) == Celsius(Decimal("3.0"))


def test_register_type_needs_a_class() -> None:
    with pytest.raises(TypeError, match=r"^register_type needs a class, got 'celsius'$"):
        Codec().register_type("celsius", str, str)  # type: ignore[arg-type]


def test_register_type_from_many_threads_at_once() -> None:
    codec = celsius_codec()
    threads_n, classes_n = 8, 25
    start = threading.Barrier(threads_n)
    results: dict[int, list[tuple[Any, Any]]] = {}

    def register_and_use(thread: int) -> None:
        start.wait()
        seen: list[tuple[Any, Any]] = []
        for n in range(classes_n):
            cls = type(f"Box_{thread}_{n}", (Box,), {})
            codec.register_type(cls, _unbox, _boxer(cls))
            value = [cls((thread, n, Decimal("1.5"))), Celsius(Decimal(n))]
            seen.append((value, codec.decode(codec.encode(value))))
        results[thread] = seen

    threads = [threading.Thread(target=register_and_use, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == list(range(threads_n))
    for seen in results.values():
        assert len(seen) == classes_n
        for written, read in seen:
            assert read == written
            assert type(read[0]) is type(written[0])


class Box:
    """The base of the classes each thread makes and registers."""

    def __init__(self, content: Any) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self) and isinstance(other, Box) and other.content == self.content
        )

    __hash__ = None  # type: ignore[assignment]


def _boxer(cls: type[Box]) -> Callable[[Any], Box]:
    return lambda plain: cls(plain["content"])


def _unbox(box: Box) -> Any:
    return {"content": box.content}


# -- what cannot be stored or read ------------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


UNSTORABLE: list[tuple[Any, str, str]] = [
    ({"items": [1, object()]}, "output['items'][1]", "builtins:object"),
    (Point(1, [lambda: 0]), "output.y[0]", "builtins:function"),
    ({object(): 1}, "output<key>", "builtins:object"),
    ({"s": {1j}}, "output['s']{}", "builtins:complex"),
    (_generator(), "output", "builtins:generator"),
    ({"pair": (1, threading.Lock())}, "output['pair'][1]", "_thread:lock"),
]


@pytest.mark.parametrize(("value", "where", "type_name"), UNSTORABLE)
def test_an_unstorable_value_names_where_it_sits_and_its_type(
    value: Any, where: str, type_name: str
) -> None:
    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode(value, where="output")

    assert (raised.value.where, raised.value.type_name) == (where, type_name)
    assert str(raised.value) == (
        f"{where}: cannot store a value of type {type_name}; register it with "
        "trioflow.persistence.register_type(cls, unstructure, structure)"
    )


def test_an_unstorable_field_inside_a_pydantic_model_is_named() -> None:
    class Handle(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        name: str
        lock: Any

    class Outer(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        label: str
        inner: Handle

    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode([Outer(label="x", inner=Handle(name="h", lock=object()))], where="output")

    assert (raised.value.where, raised.value.type_name) == (
        "output[0].inner.lock",
        "builtins:object",
    )


def test_what_a_registered_function_returns_must_be_storable() -> None:
    codec = Codec()
    codec.register_type(Celsius, lambda c: object(), lambda plain: Celsius(Decimal(0)))

    with pytest.raises(UnstorableValue) as raised:
        codec.encode({"t": Celsius(Decimal(1))}, where="output")

    assert raised.value.where == f"output['t']<{MODULE}:Celsius>"


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("{not json", r"^stored JSON cannot be read: "),
        ('{"$nope":1}', r"^unknown tag '\$nope' in stored JSON$"),
    ],
)
def test_stored_json_that_cannot_be_read_is_a_corrupt_journal(stored: str, message: str) -> None:
    with pytest.raises(CorruptJournal, match=message):
        CODEC.decode(stored)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            '{"$enum":"no_such_module_here:Color","value":1}',
            Unresolved("no_such_module_here:Color", 1, "enum"),
        ),
        (
            f'{{"$attrs":"{MODULE}:Missing","fields":{{"x":{{"$decimal":"1.5"}}}}}}',
            Unresolved(f"{MODULE}:Missing", {"x": Decimal("1.5")}, "attrs"),
        ),
        (
            '{"$model":"gone:Model","value":{"a":[1]}}',
            Unresolved("gone:Model", {"a": [1]}, "model"),
        ),
        (
            f'{{"$enum":"{MODULE}:Color","value":"red"}}',
            Unresolved(f"{MODULE}:Color", "red", "enum"),
        ),
    ],
)
def test_a_class_the_read_is_not_handed_reads_back_as_unresolved(
    stored: str, expected: Unresolved
) -> None:
    """Reading a journal never fails for want of code, and never imports it.

    ``Color`` is defined in this (imported) module, yet without ``types``
    the read does not construct it: a name in stored data is only a name.
    """
    assert CODEC.decode(stored) == expected


# -- reads construct only the classes they are handed ------------------------------------------


CRAFTED: list[tuple[str, Unresolved]] = [
    ('{"$enum":"os:system","value":"exit 3"}', Unresolved("os:system", "exit 3", "enum")),
    (
        '{"$attrs":"subprocess:Popen","fields":{"args":["true"]}}',
        Unresolved("subprocess:Popen", {"args": ["true"]}, "attrs"),
    ),
    (
        '{"$model":"builtins:eval","value":{"source":"1"}}',
        Unresolved("builtins:eval", {"source": "1"}, "model"),
    ),
    ('{"$type":"builtins:exec","value":"x = 1"}', Unresolved("builtins:exec", "x = 1", "type")),
    (
        '{"$enum":"os:path.os.system","value":"exit 3"}',
        Unresolved("os:path.os.system", "exit 3", "enum"),
    ),
]


@pytest.mark.parametrize(("stored", "expected"), CRAFTED)
def test_a_crafted_name_is_never_looked_up_or_called(
    stored: str, expected: Unresolved, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[str] = []
    monkeypatch.setattr("os.system", lambda command: called.append(command))
    monkeypatch.setattr("builtins.exec", lambda *args: called.append("exec"))

    assert CODEC.decode(stored, types=TYPES) == expected
    assert called == []


def test_an_unresolved_value_is_encoded_back_to_what_was_read() -> None:
    for stored, _ in CRAFTED:
        assert CODEC.encode(CODEC.decode(stored)) == stored


def test_a_trusted_class_named_with_the_wrong_tag_is_refused_without_a_call() -> None:
    with pytest.raises(
        CorruptJournal, match=rf"^the journal stores {MODULE}:Point as enum, which it is not$"
    ):
        CODEC.decode(f'{{"$enum":"{MODULE}:Point","value":1}}', types=TYPES)


def test_stored_data_that_does_not_fit_its_class_is_a_corrupt_journal() -> None:
    with pytest.raises(
        CorruptJournal,
        match=rf"^the journal holds a {MODULE}:Point that does not fit that class: .*'z'",
    ):
        CODEC.decode(f'{{"$attrs":"{MODULE}:Point","fields":{{"z":1}}}}', types=TYPES)


def test_register_type_without_functions_lets_every_read_construct_the_class() -> None:
    codec = Codec()
    stored = codec.encode(Point(1, Color.RED))
    assert codec.decode(stored) == Unresolved(
        f"{MODULE}:Point",
        {"x": 1, "y": Unresolved(f"{MODULE}:Color", "red", "enum"), "label": "p"},
        "attrs",
    )

    codec.register_type(Point)
    codec.register_type(Color)

    assert codec.decode(stored) == Point(1, Color.RED)
    assert codec.trusts(Point)
    assert not CODEC.trusts(Point)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((Celsius,), rf"^register_type\({MODULE}:Celsius\) without functions needs an enum, "),
        ((Point, str), r"^register_type needs both unstructure and structure, or neither$"),
    ],
)
def test_register_type_refuses_what_it_cannot_store(arguments: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Codec().register_type(*arguments)


# -- which classes a declaration vouches for ------------------------------------------------


class Mood(enum.Enum):
    CALM = "calm"


class Tag(enum.StrEnum):
    A = "a"


class Branch(pydantic.BaseModel):
    moods: list[Mood]
    parent: Branch | None = None


class Twig(Branch):
    pass


@attrs.frozen
class Leaf:
    on: Branch


class Unrelated(pydantic.BaseModel):
    x: int


UserId = NewType("UserId", Strict)


def test_reachable_from_follows_fields_generics_unions_and_subclasses() -> None:
    found = TrustedTypes.reachable_from(dict[str, tuple[Leaf, ...]] | None).by_name

    assert sorted(found) == sorted(
        f"{MODULE}:{name}" for name in ("Branch", "Twig", "Leaf", "Mood")
    )


@pytest.mark.parametrize(
    ("annotation", "names"),
    [
        (Annotated[Point, "meta"], ["Point"]),
        (Literal[Mood.CALM, "x"], ["Mood"]),
        (UserId, ["Strict", "Color"]),
        (Any, []),
        (str, []),  # not every StrEnum the process has loaded (Tag is one)
        (pydantic.BaseModel, []),  # "any model" vouches for no class
        (enum.Enum, []),
    ],
)
def test_reachable_from_each_kind_of_annotation(annotation: Any, names: list[str]) -> None:
    found = TrustedTypes.reachable_from(annotation).by_name
    assert sorted(found) == sorted(f"{MODULE}:{name}" for name in names)


# -- pydantic models: pydantic's JSON mode for what the codec has no form of --------------------


class Source(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, frozen=True)
    url: pydantic.HttpUrl
    path: pathlib.Path
    mirrors: list[pydantic.AnyUrl] = []
    seen: Any = None


SOURCE_TYPES = TrustedTypes.of(Source)


def test_a_strict_model_with_pydantic_field_types_round_trips() -> None:
    source = Source(
        url=pydantic.HttpUrl("https://example.org/a"),
        path=pathlib.Path("/tmp/x"),
        mirrors=[pydantic.AnyUrl("ftp://m.example.org/")],
        seen=Decimal("1.50"),
    )

    stored = CODEC.encode(source)

    assert stored == (
        f'{{"$model":"{MODULE}:Source","value":{{"url":{{"$json":"https://example.org/a"}},'
        '"path":{"$json":"/tmp/x"},"mirrors":{"$json":["ftp://m.example.org/"]},'
        '"seen":{"$decimal":"1.50"}}}'
    )
    decoded = CODEC.decode(stored, types=SOURCE_TYPES)
    assert decoded == source
    assert (type(decoded.path), type(decoded.seen)) == (pathlib.PosixPath, Decimal)


@dataclasses.dataclass
class Spot:
    x: int


def test_a_field_typed_any_holding_what_pydantic_would_turn_into_a_dict_is_refused() -> None:
    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode(
            Source(url=pydantic.HttpUrl("https://e.org"), path=pathlib.Path("/"), seen=Spot(1)),
            where="output",
        )
    assert (raised.value.where, raised.value.type_name) == (
        "output.seen",
        f"{MODULE}:Spot",
    )


class Credentials(pydantic.BaseModel):
    user: str
    password: pydantic.SecretStr


class Vault(pydantic.BaseModel):
    keys: dict[str, pydantic.HttpUrl | pydantic.SecretStr]
    loose: Any = None


SECRET_MESSAGE = (
    "a pydantic.types:SecretStr is never stored: the journal would hold the secret in clear, "
    "or redacted and lost; keep secrets out of outputs and the context (pass them in resources=)"
)


def test_a_field_that_can_hold_a_secret_is_not_written_in_json_mode() -> None:
    """pydantic's JSON mode would write the secret as ``**********``: the value would be lost."""
    vault = Vault(keys={"a": pydantic.HttpUrl("https://e.org")})

    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode(vault, where="output")

    assert str(raised.value) == (
        "output.keys['a']: cannot store a value of type pydantic.networks:HttpUrl in a field "
        "that can hold a pydantic secret (which is never stored)"
    )


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (Credentials(user="u", password="hunter2"), "output.password"),
        (Vault(keys={"b": pydantic.SecretStr("hunter2")}), "output.keys['b']"),
        (Vault(keys={}, loose=[pydantic.SecretStr("hunter2")]), "output.loose[0]"),
        ({"raw": pydantic.SecretBytes(b"hunter2")}, "output['raw']"),
    ],
)
def test_a_secret_is_never_stored(value: Any, where: str) -> None:
    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode(value, where="output")

    kind = "SecretBytes" if where == "output['raw']" else "SecretStr"
    assert str(raised.value) == f"{where}: " + SECRET_MESSAGE.replace("SecretStr", kind)
    assert "hunter2" not in str(raised.value)


# -- subclasses keep their type or are refused --------------------------------------------------


def test_the_collections_dicts_come_back_as_themselves() -> None:
    value = [
        collections.Counter({"a": 2, 3: 1}),
        collections.OrderedDict([("b", 1), ("a", 2)]),
        collections.defaultdict(int, {"x": 1}),
    ]

    stored = CODEC.encode(value)

    assert stored == (
        '[{"$counter":{"$dict":[["a",2],[3,1]]}},{"$ordereddict":{"b":1,"a":2}},'
        '{"$defaultdict":"int","value":{"x":1}}]'
    )
    counter, ordered, default = CODEC.decode(stored)
    assert (type(counter), counter["missing"]) == (collections.Counter, 0)
    assert (type(ordered), list(ordered)) == (collections.OrderedDict, ["b", "a"])
    assert (type(default), default["new"], default.default_factory) == (
        collections.defaultdict,
        0,
        int,
    )
