"""The pipeline workload 11's workers import by its path: five no-op steps."""

from __future__ import annotations

from trioflow.runtime import Pipeline, step


@step
async def noop(x: int) -> int:
    return x


five_steps = Pipeline.of(*[noop] * 5, name="five_steps")
