"""What a fallback leaves in its step's result: the step's own attempts, then the fallback's.

An agent step whose attempts failed and whose fallback then ran reports
one result for both (see ``_agent_actor._fall_back``). Its
``step_history`` holds the two parts, the step's own attempts first, and
its metadata's ``fallback_triggered`` says that this is what the history
is: readers (the trace tree) ask :func:`fallback_history` for the two
parts by name instead of guessing from the history's length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

#: The metadata key that marks a result whose fallback ran.
FALLBACK_TRIGGERED = "fallback_triggered"

T = TypeVar("T")


@attrs.frozen
class FallbackHistory(Generic[T]):
    """The step's own (failed) attempts and what its fallback did."""

    own: T
    fallback: T


def fallback_history(
    metadata: Mapping[str, Any], history: Sequence[T]
) -> FallbackHistory[T] | None:
    """The two parts of a result whose fallback ran, ``None`` for any other result."""
    if metadata.get(FALLBACK_TRIGGERED) is not True or len(history) != 2:
        return None
    own, fallback = history
    return FallbackHistory(own, fallback)
