"""Which actor runs which kind of step."""

from __future__ import annotations

from typing import Any

from trioflow.actors import Actor

from . import _pipeline_actor  # imports this module back: use its names at call time only
from ._agent_step import AgentStepActor
from ._conditional_actor import ConditionalActor
from ._control import ConditionalStep, LoopStep, MapStep, ParallelStep, RouterStep
from ._human import HumanStep
from ._human_actor import HumanActor
from ._loop_actor import LoopActor
from ._map_actor import MapActor
from ._parallel_actor import ParallelActor
from ._pipeline import PipelineStep
from ._router_actor import RouterActor
from ._services import RunServices
from ._spec import StepSpec
from ._step import Step


def actor_for(spec: StepSpec, services: RunServices) -> Actor[Any]:
    """A fresh actor for ``spec``."""
    match spec:
        case Step():
            return AgentStepActor(spec, services)
        case PipelineStep():
            return _pipeline_actor.PipelineActor(spec.pipeline, spec.name, services)
        case ParallelStep():
            return ParallelActor(spec, services)
        case LoopStep():
            return LoopActor(spec, services)
        case ConditionalStep():
            return ConditionalActor(spec, services)
        case MapStep():
            return MapActor(spec, services)
        case RouterStep():
            return RouterActor(spec, services)
        case HumanStep():
            return HumanActor(spec, services)
    raise TypeError(f"no actor runs {spec!r}")
