"""Which actor runs which kind of step."""

from __future__ import annotations

from typing import Any

from trioflow.actors import Actor

from . import _pipeline_actor  # imports this module back: use its names at call time only
from ._agent_step import AgentStepActor
from ._pipeline import PipelineStep
from ._services import RunServices
from ._spec import StepSpec
from ._step import Step


def actor_for(spec: StepSpec, services: RunServices) -> Actor[Any]:
    """A fresh actor for ``spec``."""
    if isinstance(spec, Step):
        return AgentStepActor(spec, services)
    if isinstance(spec, PipelineStep):
        return _pipeline_actor.PipelineActor(spec.pipeline, spec.name, services)
    raise TypeError(f"no actor runs {spec!r}")
