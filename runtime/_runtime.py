"""The runner: ``open_runtime`` and ``Runtime.run``.

A runtime holds what runs share on purpose (the store, default limits and
the opt-in step cache) and nothing else: each run gets its own governor,
trace, context and actors, so any number of runs can go on at once on one
runtime without seeing each other. There is no module-level state.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pydantic
import trio
from trioflow.actors import MemoryTraceSink, TraceEvent, open_supervisor
from trioflow.persistence import InMemoryStore, RunRecord, RunStore

from ._cache import StepCache
from ._context import BaseContext, apply_patch
from ._errors import ConfigurationError, UsageLimitExceeded
from ._governor import Governor, Totals
from ._messages import Execute, StepDone
from ._pipeline import Pipeline, StepLike, as_pipeline
from ._pipeline_actor import PipelineActor
from ._results import PipelineResult, RunStatus
from ._services import RunServices
from ._types import check_input
from ._usage import Usage, UsageLimits

#: The path of a run's top pipeline actor; every step path starts with it.
ROOT_PATH = "main"
GOVERNOR_PATH = "governor"


class Runtime:
    """Runs pipelines; get one from :func:`open_runtime`."""

    def __init__(self, store: RunStore, limits: UsageLimits | None, cache: StepCache) -> None:
        self.store = store
        self.limits = limits
        self.cache = cache

    async def run(
        self,
        pipeline: StepLike,
        input: Any = None,
        *,
        context: BaseContext | None = None,
        resources: Any = None,
        limits: UsageLimits | None = None,
    ) -> PipelineResult:
        """Run ``pipeline`` on ``input`` and return how it went.

        A failing step gives a result with status ``failed`` (not an
        exception). A usage limit raises :class:`UsageLimitExceeded`, whose
        ``result`` is the run's result with the breaching step last in its
        history. Mistakes in the call itself (input of the wrong type, a
        context that is not a ``BaseContext``) raise at once.
        """
        pipeline = as_pipeline(pipeline, where="run()")
        check_input(input, pipeline.input_type, step=pipeline.steps[0].name)
        context = _initial_context(context, pipeline)
        run_id = uuid.uuid4().hex
        # A deep copy: nothing the caller (or another run) holds is shared with this run.
        context = context.model_copy(update={"run_id": run_id}, deep=True)
        limits = limits if limits is not None else self.limits
        await self.store.create_run(
            RunRecord(run_id, pipeline.name, RunStatus.RUNNING.value, _now(), input)
        )
        trace = MemoryTraceSink()
        try:
            done, usage = await self._execute(
                pipeline, run_id, input, context, resources, limits, trace
            )
        except BaseException as error:
            with trio.CancelScope(shield=True):
                await self._finish_abruptly(run_id, pipeline.name, input, error, trace.events)
            raise
        result = _pipeline_result(run_id, done, usage, context)
        await self._finish(result, pipeline.name, input, trace.events)
        if done.breach is not None:
            raise UsageLimitExceeded(done.breach, result)
        return result

    async def _execute(
        self,
        pipeline: Pipeline,
        run_id: str,
        input: Any,
        context: BaseContext,
        resources: Any,
        limits: UsageLimits | None,
        trace: MemoryTraceSink,
    ) -> tuple[StepDone, Usage]:
        async with open_supervisor("", trace) as root:
            governor = root.spawn(GOVERNOR_PATH, lambda: Governor(limits, trace))
            services = RunServices(
                run_id, governor, limits, resources, self.cache, trace, self.store
            )
            main = root.spawn(ROOT_PATH, lambda: PipelineActor(pipeline, pipeline.name, services))
            done: StepDone = await main.ask(Execute(input, context))
            usage: Usage = await governor.ask(Totals())
        return done, usage

    async def _finish(
        self, result: PipelineResult, name: str, input: Any, events: list[TraceEvent]
    ) -> None:
        await self.store.save_trace(result.run_id, events)
        started = (await self.store.get_run(result.run_id)).started_at
        await self.store.finish_run(
            RunRecord(
                result.run_id,
                name,
                result.status.value,
                started,
                input,
                finished_at=_now(),
                output=result.output,
                total_cost_usd=str(result.usage.cost_usd),
                total_tokens=result.usage.total_tokens,
                error=result.error,
            )
        )

    async def _finish_abruptly(
        self, run_id: str, name: str, input: Any, error: BaseException, events: list[TraceEvent]
    ) -> None:
        status = RunStatus.CANCELLED if isinstance(error, trio.Cancelled) else RunStatus.FAILED
        started = (await self.store.get_run(run_id)).started_at
        await self.store.save_trace(run_id, events)
        await self.store.finish_run(
            RunRecord(
                run_id,
                name,
                status.value,
                started,
                input,
                finished_at=_now(),
                error=f"{type(error).__name__}: {error}",
            )
        )


def _initial_context(context: BaseContext | None, pipeline: Pipeline) -> BaseContext:
    expected = pipeline.context_type
    if context is None:
        try:
            return expected()
        except pydantic.ValidationError as error:
            raise ConfigurationError(
                f"pipeline {pipeline.name!r}: {expected.__name__} has required fields, "
                f"so pass context=...: {error.errors()[0]['msg']}"
            ) from None
    if not isinstance(context, expected):
        raise ConfigurationError(
            f"pipeline {pipeline.name!r} needs a context of type {expected.__name__}, "
            f"got {type(context).__name__}"
        )
    return context


def _pipeline_result(
    run_id: str, done: StepDone, usage: Usage, context: BaseContext
) -> PipelineResult:
    summary = done.result
    final_context = apply_patch(context, summary.patch, step=ROOT_PATH)
    if done.breach is not None:
        status = RunStatus.USAGE_LIMIT
    elif summary.success:
        status = RunStatus.COMPLETED
    else:
        status = RunStatus.FAILED
    return PipelineResult(
        run_id=run_id,
        status=status,
        output=summary.output,
        step_history=summary.step_history,
        usage=usage,
        context=final_context,
        error=done.breach or summary.feedback,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@asynccontextmanager
async def open_runtime(
    *,
    store: RunStore | None = None,
    limits: UsageLimits | None = None,
    cache_entries: int = 1024,
) -> AsyncIterator[Runtime]:
    """Open a runtime; ``store`` defaults to an :class:`InMemoryStore`.

    ``limits`` apply to each run unless ``run(..., limits=...)`` overrides them.
    """
    yield Runtime(store if store is not None else InMemoryStore(), limits, StepCache(cache_entries))


def run_sync(
    pipeline: StepLike,
    input: Any = None,
    *,
    context: BaseContext | None = None,
    resources: Any = None,
    limits: UsageLimits | None = None,
) -> PipelineResult:
    """Run one pipeline from synchronous code (a script): ``trio.run`` around ``rt.run``."""

    async def main() -> PipelineResult:
        async with open_runtime(limits=limits) as runtime:
            return await runtime.run(pipeline, input, context=context, resources=resources)

    return trio.run(main)
