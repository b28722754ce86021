"""Workload 3, map-over: many items through a bounded number of concurrent bodies.

What is measured, per repetition one run:

* **trioflow**: ``Step.map_over`` of a no-op step over ``items`` integers
  with ``max_concurrency``; each item is a branch (the step's actor: a
  one-step body runs as its step) started when a running one finishes;
  the output must be the input list, in input order.
* **floor**: plain trio: a ``CapacityLimiter(max_concurrency)`` the parent
  acquires for each item before starting its task; the task receives the
  item over a memory channel, sends ``(index, item)`` back over a shared
  one and releases the limiter; a collector puts the results in input
  order.

Why: map-over is the step of long batch jobs; its per-item overhead
bounds how fine-grained a map can be. Reported as microseconds per item
(target: at most 1.5x the floor).
"""

from __future__ import annotations

import functools

import attrs
import harness
import trio
from harness import Report, Workload
from trioflow.runtime import Pipeline, Step, step

#: At most this many times the floor's median (issue 16).
TARGET_RATIO = 1.5


@attrs.frozen
class Size:
    items: int = 10_000
    max_concurrency: int = 100

    def describe(self) -> str:
        return f"{self.items:,} items, max_concurrency {self.max_concurrency}"


@step
async def item_noop(x: int) -> int:
    """The body under test: costs nothing, so what is measured is the map itself."""
    return x


def build_pipeline(max_concurrency: int) -> Pipeline:
    return Pipeline.of(Step.map_over("map", item_noop, max_concurrency=max_concurrency))


async def trioflow_map(pipeline: Pipeline, items: list[int]) -> None:
    """One run of the map; its output is checked."""
    async with harness.in_memory_runtime() as runtime:
        result = await runtime.run(pipeline, items)
    if not result.success or result.output != items:
        raise RuntimeError(f"the trioflow map did not return its items in order: {result.error}")


async def _floor_item(
    index: int,
    inbox: trio.MemoryReceiveChannel[int],
    replies: trio.MemorySendChannel[tuple[int, int]],
    limiter: trio.CapacityLimiter,
) -> None:
    """One floor item: receive it, send it back tagged with its index, free a slot."""
    try:
        async with inbox, replies:
            await replies.send((index, await inbox.receive()))
    finally:
        limiter.release_on_behalf_of(index)


async def _collect(
    replies: trio.MemoryReceiveChannel[tuple[int, int]], results: list[int | None]
) -> None:
    async with replies:
        async for index, value in replies:
            results[index] = value


async def floor_map(items: list[int], max_concurrency: int) -> None:
    """The map in plain trio: a limiter, a task per item, results in input order."""
    limiter = trio.CapacityLimiter(max_concurrency)
    results: list[int | None] = [None] * len(items)
    send_reply, receive_reply = trio.open_memory_channel[tuple[int, int]](max_concurrency)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_collect, receive_reply, results)
        async with send_reply:
            for index, item in enumerate(items):
                await limiter.acquire_on_behalf_of(index)
                send_input, receive_input = trio.open_memory_channel[int](1)
                nursery.start_soon(_floor_item, index, receive_input, send_reply.clone(), limiter)
                async with send_input:
                    await send_input.send(item)
    if results != items:
        raise RuntimeError("the floor map did not return its items in order")


def measure(size: Size, repeats: int) -> Report:
    items = list(range(size.items))
    pipeline = build_pipeline(size.max_concurrency)
    comparison = harness.compare(
        "µs/item",
        harness.timed(
            functools.partial(trioflow_map, pipeline, items), scale=harness.US, per=size.items
        ),
        harness.timed(
            functools.partial(floor_map, items, size.max_concurrency),
            scale=harness.US,
            per=size.items,
        ),
        repeats,
    )
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    return Report(
        3,
        "map",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"µs/item trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}.",
            "every run checked: the output is the input list, in input order.",
        ),
    )


WORKLOAD = Workload(3, "map", measure, default=Size(), tiny=Size(items=7, max_concurrency=3))
