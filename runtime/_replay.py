"""Comparing a replayed run with its original, record by record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from trioflow.persistence import StepRecord

from ._results import PipelineResult
from ._usage import UsageLimits

#: What must match for a step to count as reproduced (a usage limit's breach included).
_COMPARED = ("success", "output", "patch", "breach")


@attrs.frozen
class Difference:
    """The first place a replay differs: ``path``, what (``field``), before and now."""

    path: str
    field: str
    original: Any
    replayed: Any

    def __str__(self) -> str:
        return f"{self.path}: {self.field} was {self.original!r}, now {self.replayed!r}"


@attrs.frozen
class Replay:
    """A replay of run ``run_id``: its result, how many steps completed, the first difference.

    ``limits`` are the original run's usage limits, under which it replayed
    (``None``: the original ran without run limits, and so did the replay).
    """

    run_id: str
    result: PipelineResult
    steps: int
    difference: Difference | None
    limits: UsageLimits | None = None

    @property
    def identical(self) -> bool:
        return self.difference is None


def first_difference(
    original: Sequence[StepRecord], replayed: Sequence[StepRecord]
) -> Difference | None:
    """The first step, in the order the replay completed them, that differs from the original.

    A step the original did not have counts as a difference where it
    completed; a step of the original the replay never completed comes last.
    """
    before = {step.path: step for step in original}
    for after in replayed:
        earlier = before.get(after.path)
        if earlier is None:
            return Difference(after.path, "completed", False, True)
        for field in _COMPARED:
            if getattr(earlier, field) != getattr(after, field):
                return Difference(after.path, field, getattr(earlier, field), getattr(after, field))
    again = {step.path for step in replayed}
    for earlier in original:
        if earlier.path not in again:
            return Difference(earlier.path, "completed", True, False)
    return None
