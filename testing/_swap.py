"""Swapping one step's agent in a built pipeline, without editing the pipeline.

Pipelines are immutable, so :func:`swap_agent` rebuilds the path from the
top down to the step (``attrs.evolve`` on each specification on the way),
leaving every other step, and the pipeline it was given, as they were.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from trioflow.runtime import AgentStep, ConfigurationError, Pipeline, Step
from trioflow.runtime.agents import Agent
from trioflow.runtime.lowlevel import (
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    PipelineStep,
    RouterStep,
)

#: The path of a run's top pipeline, as step paths in results start.
ROOT = "main"


def swap_agent(pipeline: Pipeline, step: str, agent: Agent) -> Pipeline:
    """A copy of ``pipeline`` whose agent step ``step`` calls ``agent`` instead.

    ``step`` is a path as results and traces show it (``main/2:review``,
    ``main/1:checks/fast`` for a branch of one step, ``main/1:checks/slow/0:lint``
    for a step of a longer branch; ``main/`` may be left out; any
    ``loop[N]`` or ``item[N]`` names the loop's or map's body, which every
    iteration shares) or the name of an agent step that occurs once in the
    pipeline (fallbacks and routers' choosers included). A name that occurs
    at several paths, an unknown name or path, and a path to a step with no
    agent (a control-flow or human-input step) raise
    :class:`~trioflow.runtime.ConfigurationError` naming the choices.
    """
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"swap_agent needs a Pipeline, got {pipeline!r}")
    if "/" in step or step == ROOT:
        path = step if step.startswith(f"{ROOT}/") or step == ROOT else f"{ROOT}/{step}"
    else:
        path = _path_of_name(pipeline, step)
    segments = path.split("/")[1:]
    if not segments:
        raise ConfigurationError(f"{step!r} names the whole pipeline, not one of its steps")
    return _pipeline(_replace(pipeline, segments, agent, path))


def agent_steps(pipeline: Pipeline) -> list[tuple[str, AgentStep]]:
    """Every agent step of ``pipeline`` with its path, in declaration order.

    Loop and map bodies are shown at ``loop[*]`` and ``item[*]``.
    """
    return [(path, node) for path, node in _walk(pipeline, ROOT) if isinstance(node, AgentStep)]


Node = Pipeline | Step


def _walk(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    yield path, node
    for segment, child in _children(node):
        yield from _walk(child, f"{path}/{segment}")


def _children(node: Node) -> Iterator[tuple[str, Node]]:
    match node:
        case Pipeline():
            for index, spec in enumerate(node.steps):
                yield f"{index}:{spec.name}", spec
        case PipelineStep():
            yield from _children(node.pipeline)
        case LoopStep():
            yield "loop[*]", _body(node.body)
        case MapStep():
            yield "item[*]", _body(node.body)
        case ParallelStep():
            for name, branch in node.branches:
                yield name, _body(branch)
        case RouterStep():
            yield node.chooser.name, node.chooser
            for name, branch in node.branches:
                yield name, _body(branch)
        case ConditionalStep():
            for key, branch in node.branches:
                yield str(key), _body(branch)
            if node.default is not None:
                yield "default", _body(node.default)
        case AgentStep():
            if node.fallback is not None:
                yield f"fallback:{node.fallback.name}", node.fallback


def _path_of_name(pipeline: Pipeline, name: str) -> str:
    found = [path for path, spec in agent_steps(pipeline) if spec.name == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigurationError(
            f"{len(found)} agent steps of pipeline {pipeline.name!r} are named {name!r} "
            f"({', '.join(found)}): give the path of the one to swap"
        )
    names = ", ".join(dict.fromkeys(spec.name for _, spec in agent_steps(pipeline)))
    raise ConfigurationError(
        f"pipeline {pipeline.name!r} has no agent step named {name!r}; its agent steps: {names}"
    )


def _replace(node: Node, segments: list[str], agent: Agent, path: str) -> Node:
    if not segments:
        if isinstance(node, AgentStep):
            return attrs.evolve(node, agent=agent)
        kind = type(node).__name__
        raise ConfigurationError(f"{path!r} is a {kind}, not an agent step: it has no agent")
    head, rest = segments[0], segments[1:]
    match node:
        case Pipeline():
            for index, spec in enumerate(node.steps):
                if head == f"{index}:{spec.name}":
                    steps = list(node.steps)
                    steps[index] = _spec(_replace(spec, rest, agent, path))
                    return attrs.evolve(node, steps=tuple(steps))
        case PipelineStep():
            return attrs.evolve(
                node, pipeline=_pipeline(_replace(node.pipeline, segments, agent, path))
            )
        case LoopStep() if head.startswith("loop["):
            return attrs.evolve(node, body=_replace_body(node.body, rest, agent, path))
        case MapStep() if head.startswith("item["):
            return attrs.evolve(node, body=_replace_body(node.body, rest, agent, path))
        case ParallelStep():
            branches = _replace_branch(node.branches, head, rest, agent, path)
            if branches is not None:
                return attrs.evolve(node, branches=branches)
        case RouterStep():
            if head == node.chooser.name:
                return attrs.evolve(node, chooser=_step(_replace(node.chooser, rest, agent, path)))
            branches = _replace_branch(node.branches, head, rest, agent, path)
            if branches is not None:
                return attrs.evolve(node, branches=branches)
        case ConditionalStep():
            if head == "default" and node.default is not None:
                default = _replace_body(node.default, rest, agent, path)
                return attrs.evolve(node, default=default)
            keys = [key for key, _ in node.branches]
            keyed = tuple((str(key), branch) for key, branch in node.branches)
            replaced = _replace_branch(keyed, head, rest, agent, path)
            if replaced is not None:
                bodies = [branch for _, branch in replaced]
                return attrs.evolve(node, branches=tuple(zip(keys, bodies, strict=True)))
        case AgentStep():
            fallback = node.fallback
            if fallback is not None and head == f"fallback:{fallback.name}":
                return attrs.evolve(node, fallback=_step(_replace(fallback, rest, agent, path)))
    raise ConfigurationError(f"path {path!r}: no step {head!r} here")


def _body(body: Pipeline) -> Node:
    """What runs at a body's path: its step if it has one (see ``Pipeline.sole_step``)."""
    return body.sole_step or body


def _replace_body(body: Pipeline, rest: list[str], agent: Agent, path: str) -> Pipeline:
    """``body`` with the swap beneath it done; a one-step body's path is its step's."""
    step = body.sole_step
    if step is None:
        return _pipeline(_replace(body, rest, agent, path))
    return attrs.evolve(body, steps=(_spec(_replace(step, rest, agent, path)),))


def _spec(node: Node) -> Step:
    assert isinstance(node, Step)
    return node


def _pipeline(node: Node) -> Pipeline:
    assert isinstance(node, Pipeline)
    return node


def _step(node: Node) -> AgentStep:
    assert isinstance(node, AgentStep)
    return node


def _replace_branch(
    branches: tuple[tuple[str, Pipeline], ...],
    head: str,
    rest: list[str],
    agent: Agent,
    path: str,
) -> tuple[tuple[str, Pipeline], ...] | None:
    for index, (name, branch) in enumerate(branches):
        if name == head:
            updated = list(branches)
            updated[index] = (name, _replace_body(branch, rest, agent, path))
            return tuple(updated)
    return None
