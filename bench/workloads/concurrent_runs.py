"""Workload 4, concurrent runs: many runs at once on one runtime, each paying for its steps.

What is measured, per repetition:

* **trioflow**: ``runs`` runs started at once (a nursery task each) on one
  runtime, each a pipeline of ``steps`` steps that ``await
  trio.sleep(0.01)`` and return ``Completion(x, Usage("0.001"))``. Each run
  has its own governor, trace, context and actors; every step commits its
  cost to its run's governor.
* **floor**: the same ``runs x steps`` sleeping steps in plain trio, in the
  actor shape of the chain floor: per run a task per step, input and
  ``(output, cost)`` over memory channels, the costs summed per run.

Why: a server embedding trioflow runs many pipelines at once (Flujo took
27 s for 1,000 concurrent 5-step runs). The sleeps stand in for model
calls; with them the floor is about ``steps x 10 ms``, and what trioflow
adds on top is its CPU time per run and step, which the sleeps cannot
hide once it exceeds them. Reported as wall milliseconds (target: at
most 1.5x the floor) and runs per second.

Correctness, not timing: the costs summed over every run's result must be
exactly ``runs x steps x $0.001`` as a ``Decimal`` (``5.000`` at the
default size); every repetition of both variants asserts it.
"""

from __future__ import annotations

import functools
from decimal import Decimal

import attrs
import harness
import trio
from harness import Report, Workload
from trioflow.runtime import (
    Completion,
    Pipeline,
    PipelineResult,
    Runtime,
    Usage,
    step,
)

STEP_SECONDS = 0.01
STEP_COST = Decimal("0.001")

#: At most this many times the floor's median (issue 16).
TARGET_RATIO = 1.5


@attrs.frozen
class Size:
    runs: int = 1_000
    steps: int = 5

    def describe(self) -> str:
        return f"{self.runs:,} runs x {self.steps} sleeping steps, at once"

    @property
    def expected_cost(self) -> Decimal:
        return STEP_COST * self.runs * self.steps


@step
async def sleepy(x: int) -> Completion:
    """A stand-in for a model call: waits 10 ms and costs $0.001."""
    await trio.sleep(STEP_SECONDS)
    return Completion(x, Usage(STEP_COST))


def check_total(total: Decimal, size: Size, who: str) -> Decimal:
    """Raise unless ``total`` is exactly the expected cost, down to its printed digits."""
    expected = size.expected_cost
    if total != expected or str(total) != str(expected):
        raise AssertionError(f"{who}: total cost {total!r}, expected exactly {expected!r}")
    return total


async def _one_run(
    runtime: Runtime, pipeline: Pipeline, value: int, results: list[PipelineResult]
) -> None:
    result = await runtime.run(pipeline, value)
    if not result.success or result.output != value:
        raise RuntimeError(f"a trioflow run did not complete: {result.error}")
    results.append(result)


async def trioflow_runs(pipeline: Pipeline, size: Size, totals: list[Decimal]) -> None:
    """``runs`` runs of ``pipeline`` at once; their summed cost goes to ``totals``."""
    results: list[PipelineResult] = []
    async with harness.in_memory_runtime() as runtime, trio.open_nursery() as nursery:
        for value in range(size.runs):
            nursery.start_soon(_one_run, runtime, pipeline, value, results)
    total = sum((result.total_cost_usd for result in results), Decimal(0))
    totals.append(check_total(total, size, "trioflow"))


async def _floor_step(
    inbox: trio.MemoryReceiveChannel[int],
    outbox: trio.MemorySendChannel[tuple[int, Decimal]],
) -> None:
    """One floor "actor": receive the input, sleep, send it back with its cost."""
    async with inbox, outbox:
        value = await inbox.receive()
        await trio.sleep(STEP_SECONDS)
        await outbox.send((value, STEP_COST))


async def _floor_run(steps: int, value: int, costs: list[Decimal]) -> None:
    """One floor run: a task and two channels per step; the run's cost to ``costs``."""
    cost = Decimal(0)
    async with trio.open_nursery() as nursery:
        for _ in range(steps):
            send_input, receive_input = trio.open_memory_channel[int](1)
            send_output, receive_output = trio.open_memory_channel[tuple[int, Decimal]](1)
            nursery.start_soon(_floor_step, receive_input, send_output)
            async with send_input, receive_output:
                await send_input.send(value)
                value, spent = await receive_output.receive()
                cost += spent
    costs.append(cost)


async def floor_runs(size: Size, totals: list[Decimal]) -> None:
    """The same sleeping steps in plain trio, all runs at once."""
    costs: list[Decimal] = []
    async with trio.open_nursery() as nursery:
        for value in range(size.runs):
            nursery.start_soon(_floor_run, size.steps, value, costs)
    totals.append(check_total(sum(costs, Decimal(0)), size, "floor"))


def measure(size: Size, repeats: int) -> Report:
    pipeline = Pipeline.of(*[sleepy] * size.steps)
    trioflow_totals: list[Decimal] = []
    floor_totals: list[Decimal] = []
    comparison = harness.compare(
        "ms wall",
        harness.timed(
            functools.partial(trioflow_runs, pipeline, size, trioflow_totals), scale=harness.MS
        ),
        harness.timed(functools.partial(floor_runs, size, floor_totals), scale=harness.MS),
        repeats,
    )
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    trioflow_rate = size.runs / (comparison.trioflow.median / 1e3)
    floor_rate = size.runs / (comparison.floor.median / 1e3)
    return Report(
        4,
        "concurrent_runs",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"ms trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}; "
            f"{trioflow_rate:,.0f} runs/s against {floor_rate:,.0f} runs/s.",
            f"exact total cost over every run's result: {trioflow_totals[-1]} "
            f"(asserted equal to {size.expected_cost} in all {len(trioflow_totals)} "
            "trioflow and floor repetitions).",
        ),
    )


WORKLOAD = Workload(4, "concurrent_runs", measure, default=Size(), tiny=Size(runs=4, steps=2))
