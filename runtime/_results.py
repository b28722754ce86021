"""What a run produces: one result per step, and one for the whole run."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from ._dsl._context import EMPTY_PATCH, BaseContext, Patch
from ._usage import NO_USAGE, Usage


class RunStatus(enum.StrEnum):
    """Where a run ended. A ``StrEnum``, so ``result.status == "paused"`` works."""

    #: Submitted to the run queue (or answered and re-queued): a worker will take it.
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    USAGE_LIMIT = "usage_limit"
    CANCELLED = "cancelled"
    #: Stopped by something other than its steps (Ctrl-C, the journal failing):
    #: resumable, like a crash.
    INTERRUPTED = "interrupted"


@attrs.frozen
class StepResult:
    """How one step went.

    ``attempts``, ``usage`` and ``latency_s`` cover everything the step ran:
    every attempt, redirect and fallback. ``feedback`` is the last failure's
    message (or a validator's feedback); ``metadata`` holds details such as
    ``fallback_triggered``, ``original_error``, ``cache_hit`` and
    ``validation_passed``. ``step_history`` lists the inner steps of a
    nested pipeline.
    """

    name: str
    path: str
    output: Any = None
    success: bool = False
    attempts: int = 0
    latency_s: float = 0.0
    usage: Usage = NO_USAGE
    feedback: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    patch: Patch = EMPTY_PATCH
    step_history: tuple[StepResult, ...] = ()

    @property
    def cost_usd(self) -> Decimal:
        return self.usage.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.usage.total_tokens


@attrs.frozen
class PipelineResult:
    """How a run went: its output, every step's result and exact totals."""

    run_id: str
    status: RunStatus
    output: Any
    step_history: tuple[StepResult, ...]
    usage: Usage
    context: BaseContext
    error: str | None = None
    #: The human-input steps a paused run waits for (answer with ``rt.resume``).
    paused_at: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        return self.status is RunStatus.COMPLETED

    @property
    def total_cost_usd(self) -> Decimal:
        return self.usage.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.usage.total_tokens

    def step(self, name: str) -> StepResult:
        """The last result of the top-level step called ``name``."""
        for result in reversed(self.step_history):
            if result.name == name:
                return result
        raise KeyError(f"no step named {name!r} in this run's history")
