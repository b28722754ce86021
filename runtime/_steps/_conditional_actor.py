"""The conditional step's actor: a condition picks one branch, which runs as a child."""

from __future__ import annotations

import functools

import attrs
from trioflow.actors import ActorRef, open_supervisor

from .._dsl._control import DEFAULT_BRANCH, ConditionalStep
from .._results import StepResult
from .._services import RunServices
from . import _dispatch
from ._messages import Execute, StepDone
from ._step_actor import StepActor
from ._user_functions import CallbackError, call_user


class ConditionalActor(StepActor):
    """Runs one :class:`ConditionalStep` once, then stops.

    The chosen branch runs at ``<path>/<key>`` (the default branch at
    ``<path>/default``); the key is in ``metadata["branch_key"]``. No
    matching key and no default is a failure naming the key and the choices.
    """

    def __init__(self, spec: ConditionalStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        spec = self._spec
        try:
            key = await call_user("condition", spec.condition, message.data, message.context)
        except CallbackError as error:
            return StepDone(
                StepResult(spec.name, self.path, feedback=f"step {self.path!r}: {error}")
            )
        chosen = next((body for candidate, body in spec.branches if candidate == key), None)
        name = str(key)
        if chosen is None and spec.default is not None:
            chosen, name = spec.default, DEFAULT_BRANCH
        if chosen is None:
            choices = ", ".join(repr(candidate) for candidate, _ in spec.branches)
            return StepDone(
                StepResult(
                    spec.name,
                    self.path,
                    feedback=f"No branch found for key {key!r} and no default branch "
                    f"(step {self.path!r}; the choices are {choices})",
                    metadata={"branch_key": key},
                )
            )
        async with open_supervisor(self.path, self._services.trace) as supervisor:
            branch: ActorRef[Execute] = supervisor.spawn(
                name,
                functools.partial(_dispatch.body_actor, chosen, name, self._services),
            )
            done = await branch.ask(message, sender=self.path)
        result = attrs.evolve(
            done.result,
            name=spec.name,
            path=self.path,
            metadata={**done.result.metadata, "branch_key": key},
            step_history=(done.result,),
        )
        return StepDone(result, breach=done.breach, paused=done.paused)
