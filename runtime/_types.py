"""Type checks the DSL makes: adjacent steps at composition, inputs at run start."""

from __future__ import annotations

import types
import typing
from typing import Any

from ._errors import InputTypeError, PipelineTypeError

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


def fits(produced: Any, expected: Any) -> bool:
    """Whether every value of type ``produced`` is acceptable as ``expected``."""
    if _unconstrained(produced) or _unconstrained(expected):
        return True
    if typing.get_origin(expected) in _UNION_ORIGINS:
        if typing.get_origin(produced) in _UNION_ORIGINS:
            return all(fits(arg, expected) for arg in typing.get_args(produced))
        return any(fits(produced, arg) for arg in typing.get_args(expected))
    if typing.get_origin(produced) in _UNION_ORIGINS:
        return all(fits(arg, expected) for arg in typing.get_args(produced))
    produced_class = typing.get_origin(produced) or produced
    expected_class = typing.get_origin(expected) or expected
    if isinstance(produced_class, type) and isinstance(expected_class, type):
        if not issubclass(produced_class, expected_class):
            return False
        produced_args, expected_args = typing.get_args(produced), typing.get_args(expected)
        if produced_args and expected_args and len(produced_args) == len(expected_args):
            return all(fits(p, e) for p, e in zip(produced_args, expected_args, strict=True))
        return True
    return bool(produced == expected)


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
    if _unconstrained(expected):
        return True
    if expected is None or expected is type(None):
        return value is None
    if typing.get_origin(expected) in _UNION_ORIGINS:
        return any(_is_instance(value, arg) for arg in typing.get_args(expected))
    expected_class = typing.get_origin(expected) or expected
    if isinstance(expected_class, type):
        return isinstance(value, expected_class)
    return True
