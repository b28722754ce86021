"""Workload 10, long-lived runtime: many runs on one open runtime, time and memory flat.

What is measured, one pass of each (the samples are its windows):

* **trioflow, one at a time**: ``runs`` runs of a ``steps``-step no-op
  chain, one after another, on one runtime over
  ``InMemoryStore(max_ended_runs=retained)``, so the store keeps the last
  ``retained`` runs and forgets older ones. Every ``window`` runs, the
  CPU time of that window (µs per step, ``time.process_time()``) and the
  memory blocks Python holds (``sys.getallocatedblocks()`` after a
  ``gc.collect()``, outside the timing) are noted.
* **trioflow, in flight**: the same ``runs`` runs, ``in_flight`` at a
  time (a semaphore), windows of ``window`` completed runs.
* **floor**: workload 1's plain-trio chain, ``runs`` runs one after
  another, timed by the same windows.

Windows are timed in this process's CPU time, not wall time: the
question is whether a step costs more after many runs, and on a shared
machine other processes' load moves wall-clock windows by 2x or more (the
first full run of this workload, timed by the wall clock under a load of 7
on 2 cores, had windows from 220 to 690 µs/step).

Why: a service keeps one runtime open for days. Its per-step time must
not grow with the runs it has executed (the issue: a store that keeps
every run grows 1.3 KB per step and slows the collector with every run),
and its memory must level off once retention is full. Targets (issue 16):
the last window's µs/step within 10% of the first window's, in both
trioflow passes, and the memory after the last window within 5% of the
memory after the second (the first fills the store: warm-up). The ratio
column is the one-at-a-time pass's median window against the floor's.
Peak MB is tracemalloc's peak over ``retained`` runs of each (the store
full: the steady state), untimed.

Correctness, not timing: every run must complete with the chain's output,
and the store must hold exactly ``retained`` runs at the end.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import attrs
import harness
import trio
from harness import Comparison, Report, Samples, Workload
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Pipeline, Runtime, open_runtime

from workloads.chain import floor_run, noop

#: The last window's time per step at most this much over the first's (issue 16).
TARGET_DRIFT = 1.10
#: The memory after the last window at most this much over that after the second.
TARGET_MEMORY_GROWTH = 1.05


@attrs.frozen
class Size:
    runs: int = 10_000
    steps: int = 20
    window: int = 1_000
    retained: int = 1_000
    in_flight: int = 1_000

    def describe(self) -> str:
        return (
            f"{self.runs:,} runs x {self.steps} steps on one runtime keeping {self.retained:,}; "
            f"one at a time, and {self.in_flight:,} in flight"
        )


@attrs.define
class Windows:
    """Each window's µs per step, and the memory blocks held after it."""

    us_per_step: list[float] = attrs.field(factory=list)
    blocks: list[int] = attrs.field(factory=list)

    @property
    def drift(self) -> float:
        """The last window's time over the first's."""
        return self.us_per_step[-1] / self.us_per_step[0]

    @property
    def memory_growth(self) -> float:
        """The blocks held after the last window over those after the second (or the first)."""
        settled = self.blocks[1] if len(self.blocks) > 1 else self.blocks[0]
        return self.blocks[-1] / settled


async def _checked_run(runtime: Runtime, pipeline: Pipeline) -> None:
    result = await runtime.run(pipeline, 1)
    if not result.success or result.output != 1:
        raise RuntimeError(f"a long-lived run did not complete: {result.error}")


def _blocks_after_collecting() -> int:
    gc.collect()
    return sys.getallocatedblocks()


async def _check_retained(store: InMemoryStore, size: Size, who: str) -> None:
    held = len(await store.list_runs())
    expected = min(size.retained, size.runs)
    if held != expected:
        raise RuntimeError(f"{who}: the store holds {held} runs, expected {expected}")


async def one_at_a_time(pipeline: Pipeline, size: Size, windows: Windows) -> None:
    """``runs`` runs one after another; a window's time excludes its memory reading."""
    store = InMemoryStore(max_ended_runs=size.retained)
    async with open_runtime(store=store) as runtime:
        for _ in range(size.runs // size.window):
            started = time.process_time()
            for _ in range(size.window):
                await _checked_run(runtime, pipeline)
            elapsed = time.process_time() - started
            windows.us_per_step.append(elapsed * harness.US / (size.window * size.steps))
            windows.blocks.append(_blocks_after_collecting())
        await _check_retained(store, size, "one at a time")


async def in_flight(pipeline: Pipeline, size: Size, windows: Windows) -> None:
    """``runs`` runs, ``in_flight`` at once; a window ends with its last completed run."""
    store = InMemoryStore(max_ended_runs=size.retained)
    slots = trio.Semaphore(size.in_flight)
    completed = 0
    window_started = time.process_time()

    async def one() -> None:
        nonlocal completed, window_started
        try:
            await _checked_run(runtime, pipeline)
        finally:
            slots.release()  # acquired by the loop that started this run
        completed += 1
        if completed % size.window == 0:
            now = time.process_time()
            elapsed = now - window_started
            windows.us_per_step.append(elapsed * harness.US / (size.window * size.steps))
            windows.blocks.append(sys.getallocatedblocks())  # no collection: runs go on
            window_started = now

    async with open_runtime(store=store) as runtime, trio.open_nursery() as nursery:
        window_started = time.process_time()
        for _ in range(size.runs):
            await slots.acquire()  # a run starts only when a slot is free: at most in_flight
            nursery.start_soon(one)
    await _check_retained(store, size, "in flight")


async def floor_sequence(size: Size, windows: Windows) -> None:
    """Workload 1's floor chain, ``runs`` times, timed by the same windows."""
    for _ in range(size.runs // size.window):
        started = time.process_time()
        for _ in range(size.window):
            if await floor_run(size.steps, 1) != 1:
                raise RuntimeError("the floor chain did not return 1")
        elapsed = time.process_time() - started
        windows.us_per_step.append(elapsed * harness.US / (size.window * size.steps))
        windows.blocks.append(_blocks_after_collecting())


def _traced_peak_mb(body: Callable[[], Awaitable[object]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        trio.run(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def measure(size: Size, repeats: int) -> Report:
    """One pass of each variant (``repeats`` is not used: the windows are the samples)."""
    del repeats
    pipeline = Pipeline.of(*[noop] * size.steps)
    steady = attrs.evolve(size, runs=size.retained, window=size.retained)
    trioflow_peak = _traced_peak_mb(functools.partial(one_at_a_time, pipeline, steady, Windows()))
    floor_peak = _traced_peak_mb(functools.partial(floor_sequence, steady, Windows()))
    sequential, parallel, floor = Windows(), Windows(), Windows()
    for body in (
        functools.partial(one_at_a_time, pipeline, size, sequential),
        functools.partial(in_flight, pipeline, size, parallel),
        functools.partial(floor_sequence, size, floor),
    ):
        gc.collect()
        trio.run(body)
    comparison = Comparison(
        "CPU µs/step",
        Samples(tuple(sequential.us_per_step)),
        Samples(tuple(floor.us_per_step)),
        trioflow_peak,
        floor_peak,
    )
    met = (
        sequential.drift <= TARGET_DRIFT
        and parallel.drift <= TARGET_DRIFT
        and sequential.memory_growth <= TARGET_MEMORY_GROWTH
    )
    return Report(
        10,
        "long_lived",
        size.describe(),
        comparison,
        f"drift {sequential.drift:.2f}x / {parallel.drift:.2f}x, "
        f"memory {sequential.memory_growth:.2f}x",
        f"drift <= {TARGET_DRIFT:.2f}x, memory <= {TARGET_MEMORY_GROWTH:.2f}x",
        met,
        _notes(size, sequential, parallel, floor),
    )


def _notes(size: Size, sequential: Windows, parallel: Windows, floor: Windows) -> tuple[str, ...]:
    def per_window(windows: Windows) -> str:
        return ", ".join(f"{value:.1f}" for value in windows.us_per_step)

    return (
        f"µs/step per window of {size.window:,} runs, one at a time: {per_window(sequential)}; "
        f"last over first {sequential.drift:.2f}x.",
        f"{size.in_flight:,} in flight: {per_window(parallel)}; last over first "
        f"{parallel.drift:.2f}x.",
        f"floor (one at a time): {per_window(floor)}.",
        "memory blocks held after each window, one at a time: "
        f"{', '.join(f'{blocks:,}' for blocks in sequential.blocks)} "
        f"(last over second {sequential.memory_growth:.2f}x); in flight, without collecting: "
        f"{', '.join(f'{blocks:,}' for blocks in parallel.blocks)}.",
        f"every run checked: completed with the chain's output; the store held exactly "
        f"{min(size.retained, size.runs):,} runs at the end of each pass.",
    )


WORKLOAD = Workload(
    10,
    "long_lived",
    measure,
    default=Size(),
    tiny=Size(runs=6, steps=2, window=2, retained=2, in_flight=2),
)
