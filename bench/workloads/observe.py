"""Workload 11, observe: what OpenTelemetry export and logging cost on the chain.

The chain of workload 1 (``steps`` no-op steps, ``runs`` runs one after
the other, in-memory store), measured three ways in one process, the
repetitions alternating:

* **off**: ``open_runtime()`` as every program gets it: no OpenTelemetry
  (the module is not even imported), logging at its default level
  (warnings), so a successful step logs nothing. This is the "floor" of
  the table: what the on variant is compared with.
* **on**: ``open_runtime(tracer_provider=..., meter_provider=...)`` with the
  OpenTelemetry SDK as production configures it: a ``BatchSpanProcessor``
  (spans leave on its own thread) whose exporter drops them, and a meter
  provider. Every step is a span and a function step's attempt another.
* **verbose logging** (a note): off, with the ``trioflow`` loggers at DEBUG
  into a ``NullHandler``: every step's outcome becomes a record.

What "off" costs against the code without any of this cannot be measured
in one process: run ``python bench/run.py chain`` on this commit and on the
one before OpenTelemetry and logging came in (the figures are in the
change's note).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import harness
from harness import Report, Workload
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Pipeline, Runtime, open_runtime

from workloads.chain import noop


@attrs.frozen
class Size:
    steps: int = 100
    runs: int = 100

    def describe(self) -> str:
        return f"{self.steps} steps x {self.runs} runs"


class DroppingExporter(SpanExporter):
    """Takes every batch and drops it: the export's own cost, not a network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def exported_runtime() -> AbstractAsyncContextManager[Runtime]:
    tracing = TracerProvider()
    tracing.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    return open_runtime(
        store=InMemoryStore(), tracer_provider=tracing, meter_provider=MeterProvider()
    )


async def chain(
    steps: int, runs: int, runtime: Callable[[], AbstractAsyncContextManager[Any]]
) -> None:
    pipeline = Pipeline.of(*[noop] * steps)
    async with runtime() as opened:
        for _ in range(runs):
            result = await opened.run(pipeline, 1)
            if not result.success or result.output != 1:  # never time a failing path
                raise RuntimeError(f"the chain did not complete: {result.error}")


async def verbose_chain(steps: int, runs: int) -> None:
    """The off chain with every trioflow record made (DEBUG), into a handler that drops it."""
    root = logging.getLogger("trioflow")
    level, handler = root.level, logging.NullHandler()
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        await chain(steps, runs, harness.in_memory_runtime)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def measure(size: Size, repeats: int) -> Report:
    per = size.steps * size.runs
    on, off, verbose = (
        harness.timed(functools.partial(*call), scale=harness.US, per=per)
        for call in (
            (chain, size.steps, size.runs, exported_runtime),
            (chain, size.steps, size.runs, harness.in_memory_runtime),
            (verbose_chain, size.steps, size.runs),
        )
    )
    comparison = harness.compare("µs/step", on, off, repeats)
    [logged] = harness.alternate([verbose], repeats)
    ratio = comparison.ratio
    return Report(
        11,
        "observe",
        size.describe(),
        comparison,
        f"{ratio:.2f}x",
        "on: reported (off is the floor)",
        True,
        (
            f"µs/step with OpenTelemetry on {harness.spread(comparison.trioflow)}, "
            f"off {harness.spread(comparison.floor)}: "
            f"{comparison.trioflow.median - comparison.floor.median:+.1f} µs/step for spans.",
            f"every step logged at DEBUG into a NullHandler: {logged.median:.1f} µs/step "
            f"({logged.median - comparison.floor.median:+.1f} µs/step against off).",
        ),
    )


WORKLOAD = Workload(11, "observe", measure, default=Size(), tiny=Size(steps=3, runs=2))
