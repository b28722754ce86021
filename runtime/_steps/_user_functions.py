"""Calling the user's control-flow functions: conditions, mappers, merge functions.

Their exceptions are the user's bugs, not the engine's: each becomes a
:class:`CallbackError` naming the function's role, which the step reports
as its failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._dsl._checks import call_maybe_async, callable_name


class CallbackError(Exception):
    """A user function raised; the message says which role it played and what it raised."""


async def call_user(role: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (awaited if async); its exception becomes a :class:`CallbackError`."""
    try:
        return await call_maybe_async(fn, *args)
    except Exception as error:  # the user's function failed: reported as the step's failure
        raise CallbackError(
            f"{role} {callable_name(fn)} raised {type(error).__name__}: {error}"
        ) from error
