"""What every workload shares: timing, medians, peak memory and the results table.

A *variant* is one side of a comparison (trioflow, or its plain-trio
floor) packaged as a function that does a whole ``trio.run`` and returns
the quantity measured, in the unit of its :class:`Comparison`
(microseconds per step, milliseconds of latency, ...). :func:`compare` runs the
variants of a workload the same way for all of them:

1. one untimed repetition of each under ``tracemalloc``, for peak memory.
   tracemalloc slows allocation a lot, so it never runs while time is
   measured; this repetition doubles as the warm-up.
2. ``repeats`` timed repetitions, the variants alternating (a, b, a, b,
   ...) so that drift in the machine affects them alike, each after a
   ``gc.collect()`` so no variant inherits the other's garbage.

Medians are reported, with the spread. Nothing here asserts on a time: the
suite reports, people judge; the targets are printed next to the values.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Generic, TypeVar

import attrs
import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Runtime, UsageLimits, open_runtime

Variant = Callable[[], float]
"""One side of a comparison: a whole ``trio.run``, returning the measured quantity."""

S = TypeVar("S")


# --- measuring ----------------------------------------------------------------


@attrs.frozen
class Samples:
    """The values of every timed repetition of one variant."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@attrs.frozen
class Comparison:
    """trioflow against its floor on one quantity, and the two peaks of memory."""

    #: What one value means, as printed: ``"µs/step"``, ``"ms wall"``.
    unit: str
    trioflow: Samples
    floor: Samples
    trioflow_peak_mb: float
    floor_peak_mb: float

    @property
    def ratio(self) -> float:
        """trioflow's median over the floor's."""
        return self.trioflow.median / self.floor.median


def peak_mb(variant: Variant) -> float:
    """Run ``variant`` once under tracemalloc; the peak traced memory in MB."""
    gc.collect()
    tracemalloc.start()
    try:
        variant()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def traced_mb() -> float | None:
    """Memory traced right now in MB, or None when tracemalloc is off (a timed run)."""
    if not tracemalloc.is_tracing():
        return None
    current, _ = tracemalloc.get_traced_memory()
    return current / 1e6


def alternate(variants: Sequence[Variant], repeats: int) -> list[Samples]:
    """Run each variant ``repeats`` times, interleaved: a, b, a, b, ..."""
    kept: list[list[float]] = [[] for _ in variants]
    for _ in range(repeats):
        for variant, values in zip(variants, kept, strict=True):
            gc.collect()
            values.append(variant())
    return [Samples(tuple(values)) for values in kept]


def compare(unit: str, trioflow: Variant, floor: Variant, repeats: int) -> Comparison:
    """Peak memory of both variants (also the warm-up), then the alternating timings."""
    trioflow_peak = peak_mb(trioflow)
    floor_peak = peak_mb(floor)
    timed_trioflow, timed_floor = alternate([trioflow, floor], repeats)
    return Comparison(unit, timed_trioflow, timed_floor, trioflow_peak, floor_peak)


def timed_run(body: Callable[[], Awaitable[object]]) -> float:
    """Run ``body`` in a fresh ``trio.run``; the seconds it took.

    The clock starts and stops inside the run, so trio's own start-up and
    shutdown, the same for every variant, are not counted.
    """

    async def main() -> float:
        started = time.perf_counter()
        await body()
        return time.perf_counter() - started

    return trio.run(main)


def in_memory_runtime(*, limits: UsageLimits | None = None) -> AbstractAsyncContextManager[Runtime]:
    """``open_runtime`` over a fresh :class:`InMemoryStore`, as every workload here uses.

    ``open_runtime()`` alone opens the SQLite journal in the working
    directory; these workloads measure the runtime, not a disk (the
    durable store's workloads, 5 and 8, are separate).
    """
    return open_runtime(store=InMemoryStore(), limits=limits)


#: Scales for :func:`timed`: seconds to milliseconds, to microseconds.
MS = 1e3
US = 1e6


def timed(body: Callable[[], Awaitable[object]], *, scale: float, per: int = 1) -> Variant:
    """A variant timing ``body`` (see :func:`timed_run`): seconds x ``scale`` / ``per``.

    ``timed(run_chain, scale=US, per=steps)`` reports microseconds per step.
    """

    def variant() -> float:
        return timed_run(body) * scale / per

    return variant


# --- reports ------------------------------------------------------------------


@attrs.frozen
class Report:
    """What one workload found: the comparison, and the value its target judges."""

    #: The workload's number in the benchmark plan, and its name on the command line.
    number: int
    name: str
    #: The size it ran at, as people read it: ``"100 steps x 200 runs"``.
    size: str
    comparison: Comparison
    #: The value the target judges, formatted (``"1.31x"``, ``"$0.00"``, ``"3.2 ms"``).
    value: str
    target: str
    met: bool
    #: Further findings and correctness checks, one sentence each.
    notes: tuple[str, ...] = ()


@attrs.frozen
class Workload(Generic[S]):
    """A workload: how to measure it, at the size of the plan and at a tiny size."""

    number: int
    name: str
    measure: Callable[[S, int], Report]
    default: S
    tiny: S

    def run(self, repeats: int, *, tiny: bool = False) -> Report:
        return self.measure(self.tiny if tiny else self.default, repeats)


def ratio_target(comparison: Comparison, target: float) -> tuple[str, str, bool]:
    """``(value, target, met)`` for workloads judged on the ratio to the floor (issue 16's)."""
    ratio = comparison.ratio
    return f"{ratio:.2f}x", f"ratio <= {target:.1f}x", ratio <= target


# --- tables -------------------------------------------------------------------

HEADERS = (
    "#",
    "workload",
    "unit",
    "trioflow median",
    "floor median",
    "ratio",
    "peak MB trioflow / floor",
    "value",
    "target",
    "verdict",
)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def report_row(report: Report) -> tuple[str, ...]:
    """One report as the cells of a table row."""
    comparison = report.comparison
    return (
        str(report.number),
        report.name,
        comparison.unit,
        _number(comparison.trioflow.median),
        _number(comparison.floor.median),
        f"{comparison.ratio:.2f}x",
        f"{comparison.trioflow_peak_mb:.2f} / {comparison.floor_peak_mb:.2f}",
        report.value,
        report.target,
        "met" if report.met else "MISSED",
    )


def render_text(rows: Sequence[tuple[str, ...]]) -> str:
    """An aligned plain-text table (names left, numbers right)."""
    widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = [_text_line(HEADERS, widths), "  ".join("-" * width for width in widths)]
    lines += [_text_line(row, widths) for row in rows]
    return "\n".join(lines)


def _text_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [
        cell.ljust(width) if index in (1, 2) else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def render_markdown_table(rows: Sequence[tuple[str, ...]]) -> str:
    """A GitHub-flavoured markdown table of the same rows."""
    align = ["---:", ":---", ":---", *["---:"] * (len(HEADERS) - 3)]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def spread(samples: Samples) -> str:
    """``low..high`` of the timed repetitions, for the notes."""
    return f"{_number(samples.low)}..{_number(samples.high)}"


def describe_code() -> str:
    """Which trioflow ran: where it was imported from and, in a git tree, its commit."""
    import trioflow.runtime

    package = Path(trioflow.runtime.__file__).resolve().parent
    root = package.parent
    described = f"trioflow imported from {root}"
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD")
        changed = _git(root, "status", "--porcelain", "--", "actors", "runtime", "persistence")
    except (OSError, subprocess.CalledProcessError):
        return described
    return f"{described}, git {commit}" + (" with uncommitted changes" if changed else "")


def _git(where: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def load_average() -> float | None:
    """The machine's one-minute load average, where the platform has one.

    Other processes make times noisier (ratios less so, the variants
    alternating), so the results note the load before and after.
    """
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def describe_machine() -> str:
    """Where and when the suite ran: platform, CPUs, Python and trio, date."""
    return (
        f"{platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs); "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"trio {trio.__version__}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
