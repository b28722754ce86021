"""What runs around an agent call: processors, validators and plugins.

* An input processor maps the data before the call, an output processor
  the output after it; both get ``(data, context)``.
* A validator judges the final output: ``(output, context) ->
  ValidationResult``. A failed one is a *validation failure*, retried with
  its feedback when the step's retry policy says so.
* A plugin sees the output first, in priority order (highest first), and
  returns a :class:`PluginOutcome`: pass, replace the output, redirect the
  call to another agent, or fail with feedback.

Each of these may be a plain or an async function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

T = TypeVar("T")

Processor = Callable[[Any, Any], Any]


@attrs.frozen(slots=True)
class ValidationResult:
    """A validator's verdict; ``feedback`` says what to fix when not valid."""

    valid: bool
    feedback: str | None = None

    @classmethod
    def ok(cls) -> ValidationResult:
        return cls(True)

    @classmethod
    def fail(cls, feedback: str) -> ValidationResult:
        return cls(False, feedback)


Validator = Callable[[Any, Any], "ValidationResult | Awaitable[ValidationResult]"]


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@attrs.frozen(slots=True)
class PluginOutcome:
    """What a plugin decided about an output.

    ``success=False`` fails the attempt with ``feedback`` (a plugin
    failure, retried per policy). ``redirect_to`` re-runs the call with
    another agent. ``new_solution`` replaces the output.
    """

    success: bool = True
    feedback: str | None = None
    redirect_to: Any = None
    new_solution: Any = UNSET


@runtime_checkable
class Plugin(Protocol):
    """Checks or rewrites a step's output; higher ``priority`` runs first."""

    priority: int

    async def validate(self, output: Any, *, context: Any) -> PluginOutcome: ...


async def call_maybe_async(fn: Callable[..., T | Awaitable[T]], *args: Any) -> T:
    """Call ``fn``; await the result if it is awaitable."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def callable_name(fn: object) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__
