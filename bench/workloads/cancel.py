"""Workload 7, cancel: how fast a failing branch stops its sleeping siblings.

What is measured, per repetition one run of a parallel step under
``on_branch_failure="propagate"`` (the default):

* ``siblings`` branches each ``await trio.sleep(10)`` on the real clock;
  each counts itself asleep, and records ``trio.current_time()`` in its
  ``finally`` when it is cancelled;
* one more branch, declared last, waits until every sibling is asleep and
  every task of the run is blocked (``trio.testing.wait_all_tasks_blocked``),
  records ``trio.current_time()`` and raises.

The value is the milliseconds from that failure to the last sibling's
exit. In trioflow the failure travels as the branch's result to the
parallel supervisor, which cancels its nursery with a reason; the **floor**
is the same tasks in one plain trio nursery, where the exception itself
cancels the nursery. Why: the design promises siblings stop within one
scheduling round; a thousand sleeping agent calls must not keep spending
after a failure. Target: at most 2x the floor (a ratio: absolute times do
not hold on shared CPUs).

Every run checks that all siblings were asleep and all exited, and that
the run failed naming the failing branch.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import attrs
import harness
import trio
import trio.testing
from harness import Report, Workload
from trioflow.runtime import Pipeline, Step

#: The failure must reach every sibling within this many times the floor's time (issue 16).
TARGET_RATIO = 2.0
SLEEP_SECONDS = 10.0
FAILING = "fails"


@attrs.frozen
class Size:
    siblings: int = 1_000

    def describe(self) -> str:
        return f"{self.siblings:,} sleeping siblings + 1 failing branch"


class BranchFailed(Exception):
    """What the failing branch raises."""


@attrs.define
class Probe:
    """When the failure happened and when each sibling exited (trio's clock)."""

    siblings: int
    asleep: int = 0
    failed_at: float | None = None
    exits: list[float] = attrs.field(factory=list)

    def latency_ms(self, who: str) -> float:
        siblings = self.siblings
        if self.asleep != siblings or len(self.exits) != siblings or self.failed_at is None:
            raise RuntimeError(
                f"{who}: {self.asleep} of {siblings} siblings asleep, "
                f"{len(self.exits)} exited, failure at {self.failed_at}"
            )
        return (max(self.exits) - self.failed_at) * 1e3


async def sleep_long(x: int, *, resources: Probe) -> int:
    """A sibling: asleep for 10 s unless cancelled; its exit time is recorded."""
    resources.asleep += 1
    try:
        await trio.sleep(SLEEP_SECONDS)
    finally:
        resources.exits.append(trio.current_time())
    return x


async def fail_when_all_asleep(x: int, *, resources: Probe) -> int:
    """The failing branch: once every sibling sleeps and every task is blocked, fail.

    Counting as well as ``wait_all_tasks_blocked``: a task waiting for a
    worker thread counts as blocked too, though it has more to do.
    """
    await trio.testing.wait_all_tasks_blocked()
    while resources.asleep < resources.siblings:
        await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
    resources.failed_at = trio.current_time()
    raise BranchFailed("failing on purpose")


def build_pipeline(siblings: int) -> Pipeline:
    sleeper = Step.from_callable(sleep_long, name="sleep")
    branches = {f"s{index}": sleeper for index in range(siblings)}
    branches[FAILING] = Step.from_callable(fail_when_all_asleep, name=FAILING)
    return Pipeline.of(Step.parallel("cancel", branches))


async def trioflow_cancel(pipeline: Pipeline, siblings: int) -> float:
    """One run; milliseconds from the failure to the last sibling's exit."""
    probe = Probe(siblings)
    async with harness.in_memory_runtime() as runtime:
        result = await runtime.run(pipeline, 1, resources=probe)
    if result.success or FAILING not in (result.error or ""):
        raise RuntimeError(f"the run did not fail because of {FAILING!r}: {result.error}")
    return probe.latency_ms("trioflow")


async def floor_cancel(siblings: int) -> float:
    """The same in one plain trio nursery; the same milliseconds."""
    probe = Probe(siblings)
    try:
        async with trio.open_nursery() as nursery:
            for value in range(siblings):
                nursery.start_soon(functools.partial(sleep_long, value, resources=probe))
            nursery.start_soon(functools.partial(fail_when_all_asleep, 0, resources=probe))
    except* BranchFailed:
        pass
    return probe.latency_ms("floor")


def _latency(body: Callable[[], Awaitable[float]]) -> harness.Variant:
    """A variant returning what ``body`` measured itself (not its wall time)."""

    def variant() -> float:
        return trio.run(body)

    return variant


def measure(size: Size, repeats: int) -> Report:
    pipeline = build_pipeline(size.siblings)
    comparison = harness.compare(
        "ms to stop",
        _latency(functools.partial(trioflow_cancel, pipeline, size.siblings)),
        _latency(functools.partial(floor_cancel, size.siblings)),
        repeats,
    )
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    return Report(
        7,
        "cancel",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"ms from the failure to the last sibling's exit, trioflow "
            f"{harness.spread(comparison.trioflow)}, floor {harness.spread(comparison.floor)}.",
            "every run checked: all siblings asleep before the failure, all exited, and the "
            "run failed naming the failing branch.",
        ),
    )


WORKLOAD = Workload(7, "cancel", measure, default=Size(), tiny=Size(siblings=5))
