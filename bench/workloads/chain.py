"""Workload 1, chain: what a trioflow step costs over the actor-shaped floor.

What is measured, in one process:

* **trioflow**: a pipeline of ``steps`` no-op steps
  (``async def noop(x: int) -> int: return x``) run ``runs`` times, one
  after the other, through ``Runtime.run`` on a runtime over an
  in-memory store. This is everything a step pays for in the runtime: its
  actor and supervisor, the Execute/StepDone asks, the always-on trace,
  the step result and its journal record (kept in memory).
* **floor**: the same chain written directly in trio in the shape the
  design asks for, an "actor" per step. For each step a task is started in
  the run's nursery; it receives its input over one memory channel and
  sends its result back over another. No trioflow code runs. This is the
  least an actor-per-step runtime on trio can cost, so the ratio
  trioflow/floor (target <= 2.0) is the runtime's own overhead per step.
* **trace cost** (a note): a chain of one-shot actors built on
  ``trioflow.actors`` alone (``open_supervisor`` + ``spawn`` + ``ask``; each
  actor replies and stops), once with a :class:`MemoryTraceSink` and once
  with a sink whose ``record`` does nothing. The difference is what keeping
  the kernel's events costs per step. The kernel still builds every event
  for the no-op sink, so this isolates the sink, not the events'
  construction.

Reported as microseconds per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import attrs
import harness
import trio
from harness import Report, Samples, Workload
from trioflow.actors import Actor, MemoryTraceSink, TraceEvent, TraceSink, open_supervisor
from trioflow.runtime import Pipeline, step

#: At most this many times the floor's median (issue 16).
TARGET_RATIO = 1.3


@attrs.frozen
class Size:
    steps: int = 100
    runs: int = 200

    def describe(self) -> str:
        return f"{self.steps} steps x {self.runs} runs"


# --- trioflow -----------------------------------------------------------------


@step
async def noop(x: int) -> int:
    """The step under test: costs nothing, so what is measured is trioflow."""
    return x


async def trioflow_chain(steps: int, runs: int) -> None:
    """Run a ``steps``-long no-op pipeline ``runs`` times on one runtime."""
    pipeline = Pipeline.of(*[noop] * steps)
    async with harness.in_memory_runtime() as runtime:
        for _ in range(runs):
            result = await runtime.run(pipeline, 1)
            if not result.success or result.output != 1:  # never time a failing path
                raise RuntimeError(f"the trioflow chain did not complete: {result.error}")


# --- the floor ----------------------------------------------------------------


#: What a floor step may do besides passing its value on: called with the step's
#: index in the run and its value, in the step's task, before the value is sent.
StepWork = Callable[[int, int], None]


async def _floor_step(
    index: int,
    inbox: trio.MemoryReceiveChannel[int],
    outbox: trio.MemorySendChannel[int],
    work: StepWork | None,
) -> None:
    """One floor "actor": receive the input, do ``work`` if any, send it back, exit."""
    async with inbox, outbox:
        value = await inbox.receive()
        if work is not None:
            work(index, value)
        await outbox.send(value)


async def floor_run(steps: int, value: int, work: StepWork | None = None) -> int:
    """One run of the floor chain: a task and two channels per step.

    ``work`` is for other workloads' floors (workload 5 commits a row per
    step); this workload's steps do nothing else.
    """
    async with trio.open_nursery() as nursery:
        for index in range(steps):
            send_input, receive_input = trio.open_memory_channel[int](1)
            send_output, receive_output = trio.open_memory_channel[int](1)
            nursery.start_soon(_floor_step, index, receive_input, send_output, work)
            async with send_input, receive_output:
                await send_input.send(value)
                value = await receive_output.receive()
    return value


async def floor_chain(steps: int, runs: int) -> None:
    """The same chain in plain trio, actor-shaped."""
    for _ in range(runs):
        value = await floor_run(steps, 1)
        if value != 1:
            raise RuntimeError(f"the floor chain returned {value!r}, not 1")


# --- the trace sink's cost ----------------------------------------------------


class OneShot(Actor[int]):
    """Replies with the message it got, then stops (like a step actor)."""

    async def receive(self, message: int) -> int:
        self.stop()  # takes effect once this message is answered
        return message


class NullTraceSink:
    """A trace sink that drops every event: the baseline for the trace cost."""

    def record(self, event: TraceEvent) -> None:
        pass


async def actor_chain(steps: int, runs: int, sink_factory: Callable[[], TraceSink]) -> None:
    """``runs`` chains of ``steps`` one-shot actors, a fresh sink per run."""
    for _ in range(runs):
        value = 1
        async with open_supervisor("chain", sink_factory()) as supervisor:
            for index in range(steps):
                actor = supervisor.spawn(str(index), OneShot)
                value = await actor.ask(value)


@attrs.frozen
class TraceCost:
    """The kernel chain with the in-memory trace sink and with a no-op sink, µs/step."""

    memory_sink: Samples
    null_sink: Samples

    @property
    def difference_us(self) -> float:
        """What keeping the events costs per step (median against median)."""
        return self.memory_sink.median - self.null_sink.median


def measure_trace_cost(size: Size, repeats: int) -> TraceCost:
    """One untimed warm-up of each sink, then the alternating timings."""
    variants = [
        harness.timed(
            functools.partial(actor_chain, size.steps, size.runs, sink),
            scale=harness.US,
            per=size.steps * size.runs,
        )
        for sink in (MemoryTraceSink, NullTraceSink)
    ]
    for variant in variants:
        variant()
    memory_sink, null_sink = harness.alternate(variants, repeats)
    return TraceCost(memory_sink, null_sink)


# --- the workload -------------------------------------------------------------


def measure(size: Size, repeats: int) -> Report:
    trioflow, floor = (
        harness.timed(
            functools.partial(chain, size.steps, size.runs),
            scale=harness.US,
            per=size.steps * size.runs,
        )
        for chain in (trioflow_chain, floor_chain)
    )
    comparison = harness.compare("µs/step", trioflow, floor, repeats)
    trace = measure_trace_cost(size, repeats)
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    return Report(
        1,
        "chain",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"µs/step trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}.",
            f"trace sink: MemoryTraceSink {trace.memory_sink.median:.1f} µs/step against a "
            f"no-op sink {trace.null_sink.median:.1f} µs/step in a kernel-only chain: "
            f"{trace.difference_us:+.2f} µs/step for keeping the events.",
            "trioflow's peak includes its in-memory store, which keeps every run's trace "
            "events and step records.",
        ),
    )


WORKLOAD = Workload(1, "chain", measure, default=Size(), tiny=Size(steps=3, runs=2))
