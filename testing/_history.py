"""Reading back what a run did, to assert on it: steps, order, attempts, cost.

Everything comes from the store, as the run journaled it (completion
records, the run record and the trace events), never from the
:class:`~trioflow.runtime.PipelineResult` alone, so a test checks what a
resume or ``trioflow runs show`` would see. Nothing here reads a clock, so
tests run the same under trio's ``MockClock``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import RunStore, StepRecord
from trioflow.runtime import PipelineResult, Runtime, Usage
from trioflow.runtime._paths import ROOT, SEPARATOR, is_step_path


@attrs.frozen
class StepRun:
    """One step of a run as its completion record says.

    ``attempts`` and ``usage`` cover everything the step ran (every
    attempt, and its fallback).
    """

    path: str
    name: str
    success: bool
    attempts: int
    usage: Usage
    output: Any
    feedback: str | None
    metadata: dict[str, Any]

    @property
    def cost_usd(self) -> Decimal:
        return self.usage.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.usage.total_tokens


@attrs.frozen
class RunHistory:
    """A run's steps in the order they ran, its totals and its trace events.

    ``steps`` holds every step that ran: agent and function steps,
    control-flow steps, nested pipelines used as steps, routers' choosers,
    in execution order (a step before the steps inside it, branches in
    declaration order, loop iterations and map items in order). The
    pipelines that are a branch, an iteration or a map item are not steps
    (their paths are the prefixes of their steps' paths), nor is the top
    pipeline ``main``. A step the governor refused to start (a usage limit)
    is there too, failed, with no attempt.
    """

    run_id: str
    status: str
    usage: Usage
    error: str | None
    steps: tuple[StepRun, ...]
    events: tuple[TraceEvent, ...]

    @property
    def paths(self) -> list[str]:
        return [step.path for step in self.steps]

    @property
    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    @property
    def total_cost_usd(self) -> Decimal:
        return self.usage.cost_usd

    def step(self, which: str) -> StepRun:
        """The step at path ``which`` or, when it has no ``/``, the one step named ``which``."""
        if SEPARATOR in which:
            for step in self.steps:
                if step.path == which:
                    return step
            raise KeyError(f"no step ran at {which!r}; steps that ran: {', '.join(self.paths)}")
        named = [step for step in self.steps if step.name == which]
        if len(named) == 1:
            return named[0]
        if named:
            paths = ", ".join(step.path for step in named)
            raise KeyError(f"{len(named)} steps named {which!r} ran ({paths}): give the path")
        raise KeyError(f"no step named {which!r} ran; steps that ran: {', '.join(self.names)}")

    def notes(self, label: str, which: str | None = None) -> list[str]:
        """The details of the trace's ``label`` notes (``retry``, ``fallback``...), in order.

        With ``which``, only those about that step (a path or a unique name).
        """
        path = None if which is None else self.step(which).path
        return [
            event.detail or ""
            for event in self.events
            if event.kind is TraceKind.NOTE
            and event.label == label
            and (path is None or event.path == path)
        ]

    def retries(self, which: str) -> list[str]:
        """Why each retried attempt of a step failed (``attempt 1 agent_error: ...``)."""
        return self.notes("retry", which)


async def run_history(result: PipelineResult | str, store: RunStore | Runtime) -> RunHistory:
    """What the run ``result`` (or the run with that id) left in ``store``.

    ``store`` may be the runtime that ran it (its store is read).
    """
    run_id = result if isinstance(result, str) else result.run_id
    runs = store.store if isinstance(store, Runtime) else store
    run = await runs.get_run(run_id)
    records = await runs.steps_of(run_id)
    events = tuple(await runs.trace_of(run_id))
    ordered = _in_execution_order(records, events)
    usage = Usage(Decimal(run.total_cost_usd), run.input_tokens, run.output_tokens)
    steps = tuple(_step_run(record) for record in ordered if _is_step(record))
    return RunHistory(run_id, run.status, usage, run.error, steps, events)


async def ran_steps(result: PipelineResult | str, store: RunStore | Runtime) -> list[str]:
    """The paths of the steps that ran, in order (see :class:`RunHistory`)."""
    return (await run_history(result, store)).paths


async def assert_ran(
    result: PipelineResult | str, store: RunStore | Runtime, expected: Sequence[str]
) -> RunHistory:
    """Assert that exactly the ``expected`` steps ran, in that order.

    ``expected`` lists step names (``["draft", "review"]``) or, when any
    entry has a ``/``, full paths (``["main/0:draft", "main/1:review"]``).
    Returns the run's :class:`RunHistory` for further checks.
    """
    if isinstance(expected, str):
        raise TypeError("assert_ran wants a list of step names or paths, not one string")
    trace = await run_history(result, store)
    by_path = any(SEPARATOR in entry for entry in expected)
    actual = trace.paths if by_path else trace.names
    if list(actual) != list(expected):
        raise AssertionError(
            f"run {trace.run_id} ({trace.status}) ran {actual}, expected {list(expected)}"
            f"\n  paths that ran: {trace.paths}"
        )
    return trace


def _is_step(record: StepRecord) -> bool:
    if record.path == ROOT:
        return False
    # Branch, iteration and item pipelines are composites without an index;
    # a leaf without one is a router's chooser.
    return is_step_path(record.path) or not record.children


def _in_execution_order(
    records: Sequence[StepRecord], events: Sequence[TraceEvent]
) -> list[StepRecord]:
    """Depth first from ``main`` along each record's children; then any record left over.

    Records no parent lists (a run that ended abruptly) follow in the
    order their actors were spawned.
    """
    by_path = {record.path: record for record in records}
    ordered: list[StepRecord] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        record = by_path.get(path)
        if record is None or path in seen:
            return
        seen.add(path)
        ordered.append(record)
        for child in record.children:
            visit(child)

    visit(ROOT)
    spawned: dict[str, int] = {}
    for index, event in enumerate(events):
        if event.kind is TraceKind.SPAWN:
            spawned.setdefault(event.path, index)
    rest = [record for record in records if record.path not in seen]
    rest.sort(key=lambda record: spawned.get(record.path, len(events)))
    for record in rest:
        visit(record.path)
    return ordered


def _step_run(record: StepRecord) -> StepRun:
    return StepRun(
        path=record.path,
        name=record.name,
        success=record.success,
        attempts=record.attempts,
        usage=Usage(Decimal(record.cost_usd), record.input_tokens, record.output_tokens),
        output=record.output,
        feedback=record.feedback,
        metadata=dict(record.metadata),
    )
