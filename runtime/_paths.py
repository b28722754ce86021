"""From a step path back to the step specification it names.

Paths are stable across runs and resumes: ``main/2:refine/loop[3]/0:draft``
names step 0 of the body of iteration 3 of the loop that is step 2 of the
top pipeline. Resume uses this to find the human-input step a pause
belongs to, so the answer is validated before anything runs.
"""

from __future__ import annotations

from ._dsl._agent_step import AgentStep
from ._dsl._control import ConditionalStep, LoopStep, MapStep, ParallelStep, RouterStep
from ._dsl._pipeline import Pipeline, PipelineStep
from ._dsl._step import Step
from ._errors import ConfigurationError

Node = Pipeline | Step


def locate(pipeline: Pipeline, path: str, *, root: str) -> Step:
    """The step at ``path`` in ``pipeline`` (whose actor is at ``root``)."""
    first, _, rest = path.partition("/")
    if first != root or not rest:
        raise ConfigurationError(f"path {path!r} is not a step of pipeline {pipeline.name!r}")
    node: Node = pipeline
    for segment in rest.split("/"):
        node = _child(node, segment, path)
    if isinstance(node, Pipeline):
        raise ConfigurationError(f"path {path!r} names a pipeline, not a step")
    return node


def _child(node: Node, segment: str, path: str) -> Node:
    found: Node | None = None
    match node:
        case Pipeline():
            found = _numbered_step(node, segment)
        case PipelineStep():
            found = _numbered_step(node.pipeline, segment)
        case LoopStep():
            found = _body(node.body) if segment.startswith("loop[") else None
        case MapStep():
            found = _body(node.body) if segment.startswith("item[") else None
        case ParallelStep():
            found = _body(dict(node.branches).get(segment))
        case RouterStep():
            chosen = dict(node.branches).get(segment)
            found = node.chooser if segment == node.chooser.name else _body(chosen)
        case ConditionalStep():
            branches = {str(key): body for key, body in node.branches}
            found = _body(node.default if segment == "default" else branches.get(segment))
        case AgentStep():
            fallback = node.fallback
            if fallback is not None and segment == f"fallback:{fallback.name}":
                found = fallback
    if found is None:
        raise ConfigurationError(f"path {path!r}: no step {segment!r} here")
    return found


def _body(body: Pipeline | None) -> Node | None:
    """What runs at a body's path: its step if it has one (see ``Pipeline.sole_step``)."""
    if body is None:
        return None
    return body.sole_step or body


def _numbered_step(pipeline: Pipeline, segment: str) -> Step | None:
    index, _, name = segment.partition(":")
    if not index.isdigit() or int(index) >= len(pipeline.steps):
        return None
    step = pipeline.steps[int(index)]
    return step if step.name == name else None
