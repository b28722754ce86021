"""Which actor runs which kind of step, and which runs a body.

A *body* is what a composite step runs beneath itself at a path of its
own: a parallel branch (``<step>/<branch>``), a map item (``item[i]``), a
router's choice, a loop iteration (``loop[i]``) or a conditional branch.
A body of one step runs as that step's actor at the body's path; a body
of several steps runs as a pipeline actor with its steps beneath it. Why:
a pipeline around a single step adds an actor, a supervisor, a journal
record and a path level that say nothing the step's own do not, and a
wide fan-out pays them once per branch.
"""

from __future__ import annotations

from typing import Any

from trioflow.actors import Actor

from .._dsl._agent_step import AgentStep
from .._dsl._control import ConditionalStep, LoopStep, MapStep, ParallelStep, RouterStep
from .._dsl._human import HumanStep
from .._dsl._pipeline import Pipeline, PipelineStep
from .._dsl._step import Step
from .._services import RunServices
from . import _pipeline_actor  # imports this module back: use its names at call time only
from ._agent_actor import AgentStepActor
from ._conditional_actor import ConditionalActor
from ._human_actor import HumanActor
from ._loop_actor import LoopActor
from ._map_actor import MapActor
from ._parallel_actor import ParallelActor
from ._router_actor import RouterActor


def actor_for(spec: Step, services: RunServices) -> Actor[Any]:
    """A fresh actor for ``spec``."""
    match spec:
        case AgentStep():
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


def body_actor(body: Pipeline, name: str, services: RunServices) -> Actor[Any]:
    """A fresh actor for ``body`` at the path segment ``name``; see the module docstring."""
    step = body.sole_step
    if step is not None:
        return actor_for(step, services)
    return _pipeline_actor.PipelineActor(body, name, services)
