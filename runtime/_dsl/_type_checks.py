"""Type checks the DSL makes: adjacent steps at composition, inputs at run start.

``a >> b`` is accepted when every value ``a`` may output is a value ``b``
accepts, the way a type checker reads subtyping, with one deliberate
difference: containers are covariant. ``list[Literal["yes"]]`` feeds
``list[str]`` (as do ``tuple``, ``Sequence``, ``set``, and ``dict`` or
``Mapping`` in their keys and values), because a step's output is handed on
to the next step and never used again as its declared type by the step that
made it, so the mutation a type checker guards against cannot hurt it.

``Annotated`` metadata is ignored, a ``NewType`` is a subtype of what it
wraps (not the other way round), a ``Literal`` fits a type its values are
instances of, and a union fits only when each of its members does.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from .._errors import InputTypeError, PipelineTypeError

_UNION_ORIGINS = (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    """How a type reads in an error message: ``int``, ``list[str]``, ``str | None``."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _unconstrained(tp: Any) -> bool:
    return tp is Any or tp is object or isinstance(tp, typing.TypeVar)


def _plain(tp: Any) -> Any:
    """``tp`` without what does not change its values: ``Annotated`` metadata, ``None``."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return type(None) if tp is None else tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in _UNION_ORIGINS


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Literal


def fits(produced: Any, expected: Any) -> bool:
    """Whether every value of type ``produced`` is acceptable as ``expected``."""
    produced, expected = _plain(produced), _plain(expected)
    if _unconstrained(produced) or _unconstrained(expected) or produced == expected:
        return True
    if _is_union(produced):
        return all(fits(member, expected) for member in typing.get_args(produced))
    if _is_literal(produced):
        return all(_is_instance(value, expected) for value in typing.get_args(produced))
    if _is_union(expected):
        return any(fits(produced, member) for member in typing.get_args(expected))
    if _is_literal(expected):
        return False  # only a Literal of its values fits a Literal
    if isinstance(produced, typing.NewType):
        return fits(produced.__supertype__, expected)
    if isinstance(expected, typing.NewType):
        return False  # a NewType is made explicitly, never from its base type
    return _class_fits(produced, expected)


def _class_fits(produced: Any, expected: Any) -> bool:
    """Classes and their generic forms: a subclass fits, its type arguments covariantly."""
    produced_class = typing.get_origin(produced) or produced
    expected_class = typing.get_origin(expected) or expected
    if not (isinstance(produced_class, type) and isinstance(expected_class, type)):
        return False
    if not issubclass(produced_class, expected_class):
        return False
    produced_args, expected_args = typing.get_args(produced), typing.get_args(expected)
    if not (produced_args and expected_args):
        return True  # a bare generic says nothing about its items
    if issubclass(expected_class, tuple):
        return _tuple_fits(produced_args, expected_args)
    if len(produced_args) != len(expected_args):
        return True  # parameters that do not line up (Counter[str] to Mapping[str, int])
    return all(fits(p, e) for p, e in zip(produced_args, expected_args, strict=True))


def _tuple_fits(produced: tuple[Any, ...], expected: tuple[Any, ...]) -> bool:
    """``tuple[...]`` arguments: fixed lengths must match; ``tuple[X, ...]`` takes any length."""
    if len(expected) == 2 and expected[1] is Ellipsis:
        items = produced[:1] if len(produced) == 2 and produced[1] is Ellipsis else produced
        return all(fits(item, expected[0]) for item in items)
    if len(produced) == 2 and produced[1] is Ellipsis:
        return False  # any length cannot feed a fixed length
    if len(produced) != len(expected):
        return False
    return all(fits(p, e) for p, e in zip(produced, expected, strict=True))


def check_adjacent(first: str, produced: Any, second: str, expected: Any) -> None:
    """Raise :class:`PipelineTypeError` if ``first``'s output cannot feed ``second``."""
    if not fits(produced, expected):
        raise PipelineTypeError(
            f"step {first!r} outputs {type_name(produced)} but the next step "
            f"{second!r} expects {type_name(expected)}"
        )


def check_input(value: object, expected: Any, *, step: str) -> None:
    """Raise :class:`InputTypeError` if ``value`` is not of type ``expected``."""
    if not _is_instance(value, expected):
        raise InputTypeError(
            f"the first step {step!r} expects {type_name(expected)}, "
            f"got {type(value).__qualname__}: {value!r:.80}"
        )


def _is_instance(value: object, expected: Any) -> bool:
    """Whether ``value`` is of type ``expected``, as far as its outer type tells."""
    expected = _plain(expected)
    if _unconstrained(expected):
        return True
    if _is_union(expected):
        return any(_is_instance(value, member) for member in typing.get_args(expected))
    if _is_literal(expected):
        return any(
            type(value) is type(allowed) and value == allowed
            for allowed in typing.get_args(expected)
        )
    if isinstance(expected, typing.NewType):
        return _is_instance(value, expected.__supertype__)
    expected_class = typing.get_origin(expected) or expected
    if isinstance(expected_class, type):
        return isinstance(value, expected_class)
    return True
