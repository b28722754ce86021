"""How much a trioflow step costs over the actor-shaped floor, and what tracing adds.

What is measured, in one process:

1. **trioflow chain**: a pipeline of ``--steps`` no-op steps
   (``async def noop(x: int) -> int: return x``) run ``--runs`` times through
   ``open_runtime()`` / ``Runtime.run``. This is everything a step pays for
   in the runtime: its actor and supervisor, the Execute/StepDone asks, the
   always-on trace, the step result and the in-memory journal record.
2. **trio floor**: the same chain written directly in trio in the shape the
   design asks for, an "actor" per step. For each step a task is started in
   the run's nursery; it receives its input over one memory channel and
   sends its result back over another. No trioflow code runs. This is the
   least an actor-per-step runtime on trio can cost, so the ratio
   trioflow/floor (target <= 2.0) is the runtime's own overhead.
3. **trace cost**: a chain of one-shot actors built on ``trioflow.actors``
   alone (``open_supervisor`` + ``spawn`` + ``ask``; each actor replies and
   stops), once with a :class:`MemoryTraceSink` and once with a sink whose
   ``record`` does nothing. The difference is what keeping the kernel's
   events costs per step. The kernel still builds every event for the
   no-op sink, so this isolates the sink, not the events' construction.

Every measurement is repeated ``--repeats`` times, the variants alternating
so that drift in the machine affects both alike, and reported as the
median microseconds per step. Peak memory (``tracemalloc``) is taken in one
extra repetition of each variant, run before the timed ones: tracemalloc
slows allocation a lot, so it never runs while time is measured, and that
extra repetition doubles as a warm-up.

Nothing here asserts on times: the script reports, people judge.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio
from trioflow.actors import Actor, MemoryTraceSink, TraceEvent, TraceSink, open_supervisor
from trioflow.runtime import Pipeline, open_runtime, step

#: Per-step overhead the runtime aims for, relative to the trio floor.
TARGET_RATIO = 2.0

Chain = Callable[[int, int], Awaitable[float]]
"""An async benchmark body: ``(steps, runs) -> elapsed seconds``."""


# --- the chains ---------------------------------------------------------------


@step
async def noop(x: int) -> int:
    """The step under test: costs nothing, so what is measured is trioflow."""
    return x


async def trioflow_chain(steps: int, runs: int) -> float:
    """Run a ``steps``-long no-op pipeline ``runs`` times; return seconds taken."""
    pipeline = Pipeline.of(*[noop] * steps)
    started = time.perf_counter()
    async with open_runtime() as runtime:
        for _ in range(runs):
            result = await runtime.run(pipeline, 1)
    elapsed = time.perf_counter() - started
    if not result.success or result.output != 1:  # never time a failing path
        raise RuntimeError(f"the trioflow chain did not complete: {result.error}")
    return elapsed


async def _floor_step(
    inbox: trio.MemoryReceiveChannel[int], outbox: trio.MemorySendChannel[int]
) -> None:
    """One floor "actor": receive the input, send it back, exit."""
    async with inbox, outbox:
        await outbox.send(await inbox.receive())


async def _floor_run(steps: int, value: int) -> int:
    """One run of the floor chain: a task and two channels per step."""
    async with trio.open_nursery() as nursery:
        for _ in range(steps):
            send_input, receive_input = trio.open_memory_channel[int](1)
            send_output, receive_output = trio.open_memory_channel[int](1)
            nursery.start_soon(_floor_step, receive_input, send_output)
            async with send_input, receive_output:
                await send_input.send(value)
                value = await receive_output.receive()
    return value


async def floor_chain(steps: int, runs: int) -> float:
    """The same chain in plain trio, actor-shaped; return seconds taken."""
    started = time.perf_counter()
    for _ in range(runs):
        value = await _floor_run(steps, 1)
    elapsed = time.perf_counter() - started
    if value != 1:
        raise RuntimeError(f"the floor chain returned {value!r}, not 1")
    return elapsed


class OneShot(Actor[int]):
    """Replies with the message it got, then stops (like a step actor)."""

    async def receive(self, message: int) -> int:
        self.stop()  # takes effect once this message is answered
        return message


class NullTraceSink:
    """A trace sink that drops every event: the baseline for the trace cost."""

    def record(self, event: TraceEvent) -> None:
        pass


async def _actor_chain(steps: int, runs: int, sink_factory: Callable[[], TraceSink]) -> float:
    """``runs`` chains of ``steps`` one-shot actors, a fresh sink per run."""
    started = time.perf_counter()
    for _ in range(runs):
        value = 1
        async with open_supervisor("chain", sink_factory()) as supervisor:
            for index in range(steps):
                actor = supervisor.spawn(str(index), OneShot)
                value = await actor.ask(value)
    return time.perf_counter() - started


async def traced_actor_chain(steps: int, runs: int) -> float:
    """The kernel chain with the in-memory sink trioflow uses for every run."""
    return await _actor_chain(steps, runs, MemoryTraceSink)


async def untraced_actor_chain(steps: int, runs: int) -> float:
    """The kernel chain with a sink that keeps nothing."""
    return await _actor_chain(steps, runs, NullTraceSink)


# --- measuring ----------------------------------------------------------------


@attrs.frozen
class Timing:
    """Per-step microseconds of each timed repetition of one variant."""

    samples_us: tuple[float, ...]

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)


@attrs.frozen
class ChainReport:
    """trioflow against the trio floor: times, ratio and peak memory."""

    steps: int
    runs: int
    trioflow: Timing
    floor: Timing
    trioflow_peak_mb: float
    floor_peak_mb: float

    @property
    def ratio(self) -> float:
        """trioflow's median per-step time over the floor's (target <= 2.0)."""
        return self.trioflow.median_us / self.floor.median_us


@attrs.frozen
class TraceCostReport:
    """The kernel chain with the in-memory trace sink and with a no-op sink."""

    steps: int
    runs: int
    memory_sink: Timing
    null_sink: Timing

    @property
    def difference_us(self) -> float:
        """What keeping the events costs per step (median against median)."""
        return self.memory_sink.median_us - self.null_sink.median_us


def time_per_step_us(chain: Chain, steps: int, runs: int) -> float:
    """Run ``chain`` once in a fresh trio run; microseconds per step."""
    elapsed = trio.run(chain, steps, runs)
    return elapsed / (steps * runs) * 1e6


def peak_memory_mb(chain: Chain, steps: int, runs: int) -> float:
    """Run ``chain`` once under tracemalloc; the peak traced memory in MB."""
    tracemalloc.start()
    try:
        trio.run(chain, steps, runs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def alternate(chains: Sequence[Chain], steps: int, runs: int, repeats: int) -> list[Timing]:
    """Time each chain ``repeats`` times, interleaved: a, b, a, b, ..."""
    samples: list[list[float]] = [[] for _ in chains]
    for _ in range(repeats):
        for chain, kept in zip(chains, samples, strict=True):
            kept.append(time_per_step_us(chain, steps, runs))
    return [Timing(tuple(kept)) for kept in samples]


def measure_chain(steps: int, runs: int, repeats: int) -> ChainReport:
    """Peak memory of each variant first (also a warm-up), then the timings."""
    trioflow_peak = peak_memory_mb(trioflow_chain, steps, runs)
    floor_peak = peak_memory_mb(floor_chain, steps, runs)
    trioflow, floor = alternate([trioflow_chain, floor_chain], steps, runs, repeats)
    return ChainReport(steps, runs, trioflow, floor, trioflow_peak, floor_peak)


def measure_trace_cost(steps: int, runs: int, repeats: int) -> TraceCostReport:
    """One untimed warm-up of each sink, then the alternating timings."""
    for chain in (traced_actor_chain, untraced_actor_chain):
        trio.run(chain, steps, runs)
    traced, untraced = alternate([traced_actor_chain, untraced_actor_chain], steps, runs, repeats)
    return TraceCostReport(steps, runs, traced, untraced)


# --- reporting ----------------------------------------------------------------

HEADERS = ("measure", "median µs/step", "min..max µs/step", "peak MB")

FOOTNOTE = (
    "peak MB: tracemalloc peak over one untimed repetition. trioflow's includes its\n"
    "in-memory store, which keeps every run's trace events and step records."
)


def _spread(timing: Timing) -> str:
    return f"{min(timing.samples_us):.1f}..{max(timing.samples_us):.1f}"


def _timing_row(name: str, timing: Timing, peak_mb: float | None = None) -> tuple[str, ...]:
    peak = "" if peak_mb is None else f"{peak_mb:.2f}"
    return (name, f"{timing.median_us:.1f}", _spread(timing), peak)


def table_rows(chain: ChainReport, trace: TraceCostReport) -> list[tuple[str, ...]]:
    """The rows of the report table, formatted, in the order printed."""
    verdict = "meets" if chain.ratio <= TARGET_RATIO else "misses"
    target = f"target <= {TARGET_RATIO:.1f}: {verdict}"
    return [
        _timing_row("trioflow chain", chain.trioflow, chain.trioflow_peak_mb),
        _timing_row("trio floor (actor-shaped)", chain.floor, chain.floor_peak_mb),
        ("ratio trioflow / floor", f"{chain.ratio:.2f}x", target, ""),
        _timing_row("kernel chain, MemoryTraceSink", trace.memory_sink),
        _timing_row("kernel chain, no-op sink", trace.null_sink),
        ("trace sink cost (difference)", f"{trace.difference_us:+.2f}", "", ""),
    ]


def render_text(rows: Sequence[tuple[str, ...]]) -> str:
    """An aligned plain-text table."""
    widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = [_text_line(HEADERS, widths), "  ".join("-" * width for width in widths)]
    lines += [_text_line(row, widths) for row in rows]
    return "\n".join(lines)


def _text_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    padded = [first.ljust(widths[0])]
    padded += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
    return "  ".join(padded).rstrip()


def render_markdown(rows: Sequence[tuple[str, ...]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * (len(HEADERS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def describe_setup(steps: int, runs: int, repeats: int) -> str:
    """One line saying what ran where, printed above the table."""
    return (
        f"{steps} steps x {runs} runs, median of {repeats} repetitions; "
        f"Python {platform.python_version()}, trio {trio.__version__}, {platform.machine()}"
    )


# --- command line -------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=_positive, default=100, help="steps per chain")
    parser.add_argument("--runs", type=_positive, default=200, help="chain runs per repetition")
    parser.add_argument("--repeats", type=_positive, default=5, help="timed repetitions")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    chain = measure_chain(args.steps, args.runs, args.repeats)
    trace = measure_trace_cost(args.steps, args.runs, args.repeats)
    rows = table_rows(chain, trace)
    print(describe_setup(args.steps, args.runs, args.repeats))
    print()
    print(render_markdown(rows) if args.markdown else render_text(rows))
    print()
    print(FOOTNOTE)


if __name__ == "__main__":
    main(sys.argv[1:])
