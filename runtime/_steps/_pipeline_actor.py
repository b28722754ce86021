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

from trioflow.actors import ActorRef, open_supervisor

from .._dsl._context import BaseContext, Patch
from .._dsl._pipeline import Pipeline
from .._paths import step_segment
from .._results import StepResult
from .._services import RunServices
from .._usage import NO_USAGE
from . import _dispatch
from ._absorb import absorb
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
                    step_segment(index, spec.name),
                    functools.partial(_dispatch.actor_for, spec, services),
                )
                last = await child.ask(Execute(data, context), sender=self.path)
                last, patched = await absorb(last, context, services.journal)
                if patched is not None:
                    context = patched
                history.append(last.result)
                if last.result.success or last.breach is not None:
                    patch = patch + last.result.patch  # a breaching step keeps what it finished
                if last.breach is not None or last.paused or not last.result.success:
                    break
                data = last.result.output
        summary = self._summary(history, patch, stopped=last.breach is not None)
        return StepDone(summary, breach=last.breach, paused=last.paused)

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
