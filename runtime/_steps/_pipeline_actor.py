"""The pipeline actor: a supervisor that runs its steps in order.

For each step it spawns the step's actor under its own supervisor, sends
it one :class:`Execute` with the current input and context snapshot, and
waits for its :class:`StepDone`. It applies the step's patch before the
next step starts (so every step sees the updates of the ones before it)
and stops at the first failure, breach or pause. Its own result carries
the concatenation of its steps' patches, which its parent applies in
turn: a nested pipeline reaches the parent's context through the same
mechanism as any step.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from trioflow.actors import ActorRef, open_supervisor

from .._dsl._context import BaseContext, Patch, apply_patch
from .._dsl._pipeline import Pipeline
from .._errors import ContextValidationError
from .._results import StepResult
from .._services import RunServices
from .._usage import NO_USAGE
from . import _dispatch
from ._messages import Execute, StepDone
from ._step_actor import StepActor


class PipelineActor(StepActor):
    """Runs one :class:`Pipeline` once, then stops."""

    def __init__(self, pipeline: Pipeline, name: str, services: RunServices) -> None:
        super().__init__(services)
        self._pipeline = pipeline
        self._name = name

    async def execute(self, message: Execute) -> StepDone:
        services = self._services
        data: Any = message.data
        context: BaseContext = message.context
        history: list[StepResult] = []
        patch: Patch = ()
        last = StepDone(StepResult(self._name, self.path))
        async with open_supervisor(self.path, services.trace) as supervisor:
            for index, spec in enumerate(self._pipeline.steps):
                child: ActorRef[Execute] = supervisor.spawn(
                    f"{index}:{spec.name}", functools.partial(_dispatch.actor_for, spec, services)
                )
                last = await child.ask(Execute(data, context), sender=self.path)
                last, context = await self._absorb(last, context)
                history.append(last.result)
                if last.result.success or last.breach is not None:
                    patch = patch + last.result.patch  # a breaching step keeps what it finished
                if last.breach is not None or last.paused or not last.result.success:
                    break
                data = last.result.output
        summary = self._summary(history, patch, stopped=last.breach is not None)
        return StepDone(summary, breach=last.breach, paused=last.paused)

    async def _absorb(self, done: StepDone, context: BaseContext) -> tuple[StepDone, BaseContext]:
        """Apply a finished step's patch; a patch the context rejects fails that step."""
        result = done.result
        if not result.patch or not (result.success or done.breach is not None):
            return done, context
        try:
            return done, apply_patch(context, result.patch, step=result.path)
        except ContextValidationError as error:
            failed = attrs.evolve(result, success=False, feedback=str(error))
            # The step's record must say what the run saw: a failure.
            rejected = StepDone(failed, breach=done.breach)
            await self._services.journal.record(rejected)
            return rejected, context

    def _summary(self, history: list[StepResult], patch: Patch, *, stopped: bool) -> StepResult:
        """The pipeline's result; a usage limit means it did not complete."""
        last = history[-1]
        success = len(history) == len(self._pipeline.steps) and last.success and not stopped
        return StepResult(
            self._name,
            self.path,
            output=last.output if success else None,
            success=success,
            attempts=1,
            latency_s=sum(result.latency_s for result in history),
            usage=sum((result.usage for result in history), NO_USAGE),
            feedback=None if success else last.feedback,
            patch=patch,
            step_history=tuple(history),
        )
