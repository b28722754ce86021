"""What a store keeps about a run."""

from __future__ import annotations

import datetime
from typing import Any

import attrs


@attrs.frozen
class RunRecord:
    """One run: what was asked, where it ended, what it cost.

    ``status`` is the run's status value (``running``, ``completed``,
    ``failed``, ``paused``, ``usage_limit``, ``cancelled``); totals are the
    governor's exact committed usage.
    """

    run_id: str
    pipeline_name: str
    status: str
    started_at: datetime.datetime
    input: Any
    finished_at: datetime.datetime | None = None
    output: Any = None
    total_cost_usd: str = "0"
    total_tokens: int = 0
    error: str | None = None


@attrs.frozen
class StepRecord:
    """The completion record of one step path in one run."""

    run_id: str
    path: str
    name: str
    success: bool
    output: Any
    attempts: int
    cost_usd: str
    input_tokens: int
    output_tokens: int
    patch: tuple[Any, ...] = ()
