"""The pipeline actor: a supervisor that runs its steps in order.

For each step it spawns the step's actor under its own supervisor, sends
it one :class:`Execute` with the current input and context snapshot, and
waits for its :class:`StepDone`. It applies the step's patch before the
next step starts (so every step sees the updates of the ones before it),
journals the step's completion, and stops at the first failure or breach.
Its own result carries the concatenation of its steps' patches, which its
parent applies in turn: a nested pipeline reaches the parent's context
through the same mechanism as any step.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from trioflow.actors import Actor, ActorRef, open_supervisor
from trioflow.persistence import StepRecord

from . import _dispatch
from ._context import BaseContext, Patch, apply_patch
from ._errors import ContextValidationError
from ._messages import Execute, StepDone
from ._pipeline import Pipeline
from ._results import StepResult
from ._services import RunServices
from ._usage import NO_USAGE


class PipelineActor(Actor[Execute]):
    """Runs one :class:`Pipeline` once, then stops."""

    def __init__(self, pipeline: Pipeline, name: str, services: RunServices) -> None:
        self._pipeline = pipeline
        self._name = name
        self._services = services

    async def receive(self, message: Execute) -> StepDone:
        self.stop()
        return await self._run_steps(message.data, message.context)

    async def _run_steps(self, data: Any, context: BaseContext) -> StepDone:
        services = self._services
        history: list[StepResult] = []
        patch: Patch = ()
        breach: str | None = None
        async with open_supervisor(self.path, services.trace) as supervisor:
            for index, spec in enumerate(self._pipeline.steps):
                child: ActorRef[Execute] = supervisor.spawn(
                    f"{index}:{spec.name}", functools.partial(_dispatch.actor_for, spec, services)
                )
                done: StepDone = await child.ask(Execute(data, context), sender=self.path)
                result = done.result
                # A step stopped by a usage limit keeps what it finished, context changes too.
                if result.patch and (result.success or done.breach is not None):
                    try:
                        context = apply_patch(context, result.patch, step=child.path)
                    except ContextValidationError as error:
                        result = attrs.evolve(result, success=False, feedback=str(error))
                    else:
                        patch = patch + result.patch
                history.append(result)
                await services.store.record_step(_record(services.run_id, result))
                breach = done.breach
                if breach is not None or not result.success:
                    break
                data = result.output
        return StepDone(self._summary(history, patch), breach=breach)

    def _summary(self, history: list[StepResult], patch: Patch) -> StepResult:
        last = history[-1]
        success = len(history) == len(self._pipeline.steps) and last.success
        usage = sum((result.usage for result in history), NO_USAGE)
        return StepResult(
            self._name,
            self.path,
            output=last.output if success else None,
            success=success,
            attempts=1,
            latency_s=sum(result.latency_s for result in history),
            usage=usage,
            feedback=None if success else last.feedback,
            patch=patch,
            step_history=tuple(history),
        )


def _record(run_id: str, result: StepResult) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        path=result.path,
        name=result.name,
        success=result.success,
        output=result.output,
        attempts=result.attempts,
        cost_usd=str(result.usage.cost_usd),
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        patch=result.patch,
    )
