"""Workload 6, governor race: concurrent branches spending against one cost limit.

What is measured, per repetition one run under
``UsageLimits(total_cost_usd=limit)``, of a ``Step.parallel`` of
``branches`` branches, each an agent call (a checkpoint, so every branch
is in flight before any finishes) that costs ``$0.01``:

* **strict**: the step declares ``usage_estimate=Usage("0.01")``; every
  branch reserves with the governor before its call, and the governor
  grants only while committed plus reserved plus the estimate stays within
  the limit. The recorded overshoot must be zero under any schedule.
* **optimistic**: no estimate; the breach is found at commit, the run is
  cancelled, and every commit the governor took counts. Its overshoot is
  reported, not judged: it is what strict mode exists to prevent.
* **floor** (for the time): plain trio, a task per branch and one ledger
  object doing the same strict reserve/commit bookkeeping with no actor
  and no messages; a refused branch does not call.

The overshoot is the committed total minus the limit, read from
``UsageLimitExceeded.result.usage`` (a negative value means reserved
branches were cancelled before they paid). Why: Flujo's usage totals raced
between branches; the governor serializes them by construction, and this
shows it holds with many branches racing, and what it costs. Timed as wall
milliseconds per run, strict against the floor.
"""

from __future__ import annotations

import functools
import statistics
from decimal import Decimal

import attrs
import harness
import trio
import trio.lowlevel
from harness import Report, Workload
from trioflow.runtime import (
    Completion,
    Pipeline,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
)

BRANCH_COST = Decimal("0.01")


@attrs.frozen
class Size:
    branches: int = 200
    limit: Decimal = Decimal("1.00")

    def describe(self) -> str:
        return f"{self.branches} branches x ${BRANCH_COST} under a ${self.limit} limit"


async def spend(x: int) -> Completion:
    """An agent call: a checkpoint (others get to run), then $0.01 spent."""
    await trio.lowlevel.checkpoint()
    return Completion(x, Usage(BRANCH_COST))


def build_pipeline(branches: int, *, strict: bool) -> Pipeline:
    estimate = Usage(BRANCH_COST) if strict else None
    spender = Step.from_callable(spend, name="spend", usage_estimate=estimate)
    race = Step.parallel("race", {f"b{index}": spender for index in range(branches)})
    return Pipeline.of(race, name="strict" if strict else "optimistic")


async def trioflow_race(pipeline: Pipeline, limit: Decimal, overshoots: list[Decimal]) -> None:
    """One run, which must breach the limit; its overshoot goes to ``overshoots``."""
    async with harness.in_memory_runtime(limits=UsageLimits(total_cost_usd=limit)) as runtime:
        try:
            await runtime.run(pipeline, 1)
        except UsageLimitExceeded as breach:
            if breach.result is None:
                raise RuntimeError("UsageLimitExceeded carries no result") from breach
            overshoots.append(breach.result.usage.cost_usd - limit)
            return
    raise RuntimeError(f"{pipeline.name}: the run did not breach its ${limit} limit")


@attrs.define
class Ledger:
    """The floor's governor: strict bookkeeping on one object, no actor, no messages."""

    limit: Decimal
    committed: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)

    def reserve(self, estimate: Decimal) -> bool:
        if self.committed + self.reserved + estimate > self.limit:
            return False
        self.reserved += estimate
        return True

    def commit(self, estimate: Decimal, actual: Decimal) -> None:
        self.reserved -= estimate
        self.committed += actual


async def _floor_branch(ledger: Ledger) -> None:
    if not ledger.reserve(BRANCH_COST):
        return
    await trio.lowlevel.checkpoint()
    ledger.commit(BRANCH_COST, BRANCH_COST)


async def floor_race(size: Size, overshoots: list[Decimal]) -> None:
    """The race in plain trio with a strict ledger."""
    ledger = Ledger(size.limit)
    async with trio.open_nursery() as nursery:
        for _ in range(size.branches):
            nursery.start_soon(_floor_branch, ledger)
    overshoots.append(ledger.committed - size.limit)


def _money(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):.2f}"


def measure(size: Size, repeats: int) -> Report:
    strict_pipeline = build_pipeline(size.branches, strict=True)
    optimistic_pipeline = build_pipeline(size.branches, strict=False)
    strict: list[Decimal] = []
    optimistic: list[Decimal] = []
    floor: list[Decimal] = []
    comparison = harness.compare(
        "ms wall",
        harness.timed(
            functools.partial(trioflow_race, strict_pipeline, size.limit, strict),
            scale=harness.MS,
        ),
        harness.timed(functools.partial(floor_race, size, floor), scale=harness.MS),
        repeats,
    )
    optimistic_variant = harness.timed(
        functools.partial(trioflow_race, optimistic_pipeline, size.limit, optimistic),
        scale=harness.MS,
    )
    optimistic_ms = harness.alternate([optimistic_variant], repeats)[0]
    worst = max(strict)
    return Report(
        6,
        "governor_race",
        size.describe(),
        comparison,
        f"strict overshoot {_money(worst)}",
        "strict overshoot <= $0",
        worst <= 0,
        (
            f"strict overshoot per run (committed - limit): "
            f"{', '.join(_money(amount) for amount in strict)}.",
            f"optimistic (no estimate) overshoot: median {_money(statistics.median(optimistic))}, "
            f"max {_money(max(optimistic))} over {len(optimistic)} runs; "
            f"{optimistic_ms.median:.1f} ms per run.",
            f"floor (strict ledger, no actor): overshoot max {_money(max(floor))}.",
            f"ms strict {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}.",
        ),
    )


WORKLOAD = Workload(
    6, "governor_race", measure, default=Size(), tiny=Size(branches=20, limit=Decimal("0.10"))
)
