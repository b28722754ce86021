"""The loop step's actor: its body runs again and again, each time on the latest context.

Iteration ``i`` (1-based) runs as a child pipeline at ``<path>/loop[i]``.
The loop applies each iteration's patch to its own copy of the context
before checking the exit condition and before the next iteration starts,
so every iteration sees the changes of the ones before it. The loop's
patch, for its parent, is the concatenation of its iterations' patches.

Exit reasons (``metadata["exit_reason"]``): ``condition`` (success),
``max_loops`` (a failure), ``body_failed`` (the body's error is the
loop's), ``usage_limit`` (a breach stops the loop in that iteration),
``callback_failed`` (a mapper or the condition raised).

``iteration_input_mapper(output, context, i)`` maps iteration ``i``'s output
to the input of iteration ``i + 1``, so it runs only when one follows: never
after the iteration that meets the exit condition, nor after the last one.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from trioflow.actors import ActorRef, open_supervisor

from .._dsl._context import BaseContext, Patch
from .._dsl._control import LoopStep
from .._paths import iteration_segment
from .._results import StepResult
from .._services import RunServices
from .._usage import NO_USAGE
from . import _dispatch
from ._absorb import absorb
from ._messages import Execute, StepDone
from ._step_actor import StepActor
from ._user_functions import CallbackError, call_user


@attrs.define
class _Progress:
    context: BaseContext
    patch: Patch = ()
    history: list[StepResult] = attrs.field(factory=list)


class LoopActor(StepActor):
    """Runs one :class:`LoopStep` once, then stops."""

    def __init__(self, spec: LoopStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        progress = _Progress(message.context)
        try:
            return await self._iterate(message.data, progress)
        except CallbackError as error:
            return self._done(progress, "callback_failed", feedback=f"step {self.path!r}: {error}")

    async def _iterate(self, data: Any, progress: _Progress) -> StepDone:
        spec = self._spec
        if spec.initial_input_mapper is not None:
            data = await call_user(
                "initial_input_mapper", spec.initial_input_mapper, data, progress.context
            )
        async with open_supervisor(self.path, self._services.trace) as supervisor:
            for iteration in range(1, spec.max_loops + 1):
                name = iteration_segment(iteration)
                body: ActorRef[Execute] = supervisor.spawn(
                    name,
                    functools.partial(_dispatch.body_actor, spec.body, name, self._services),
                )
                done = await body.ask(Execute(data, progress.context), sender=self.path)
                stop = await self._absorb(done, progress)
                if stop is not None:
                    return stop
                output = done.result.output
                if await call_user("exit_condition", spec.exit_condition, output, progress.context):
                    if spec.output_mapper is not None:
                        output = await call_user(
                            "output_mapper", spec.output_mapper, output, progress.context
                        )
                    return self._done(progress, "condition", output=output, success=True)
                if spec.iteration_input_mapper is not None and iteration < spec.max_loops:
                    output = await call_user(
                        "iteration_input_mapper",
                        spec.iteration_input_mapper,
                        output,
                        progress.context,
                        iteration,
                    )
                data = output
        return self._done(
            progress,
            "max_loops",
            feedback=f"step {self.path!r} reached max_loops={spec.max_loops} without meeting "
            "its exit condition",
        )

    async def _absorb(self, done: StepDone, progress: _Progress) -> StepDone | None:
        """Record an iteration and apply its patch; the loop's end if it must stop."""
        done, patched = await absorb(done, progress.context, self._services.journal)
        result = done.result
        if patched is not None:
            progress.context = patched
            progress.patch = progress.patch + result.patch
        progress.history.append(result)
        if done.paused:
            return attrs.evolve(self._done(progress, "paused"), paused=done.paused)
        if done.breach is not None:
            return self._done(progress, "usage_limit", feedback=done.breach, breach=done.breach)
        if not result.success:
            return self._done(progress, "body_failed", feedback=result.feedback)
        return None

    def _done(
        self,
        progress: _Progress,
        exit_reason: str,
        *,
        output: Any = None,
        success: bool = False,
        feedback: str | None = None,
        breach: str | None = None,
    ) -> StepDone:
        history = tuple(progress.history)
        result = StepResult(
            self._spec.name,
            self.path,
            output=output,
            success=success,
            attempts=len(history),
            latency_s=sum(r.latency_s for r in history),
            usage=sum((r.usage for r in history), NO_USAGE),
            feedback=feedback,
            metadata={"exit_reason": exit_reason, "iterations": len(history)},
            patch=progress.patch,
            step_history=history,
        )
        return StepDone(result, breach=breach)
