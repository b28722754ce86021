"""Swapping one step's agent in a built pipeline, without editing the pipeline.

Pipelines are immutable, so :func:`swap_agent` rebuilds the path from the
top down to the step (``attrs.evolve`` on each specification on the way),
leaving every other step, and the pipeline it was given, as they were.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from trioflow.runtime import AgentStep, ConfigurationError, Pipeline, Step
from trioflow.runtime._paths import ROOT, SEPARATOR, child, child_at, is_within, segments
from trioflow.runtime.agents import Agent


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
    if SEPARATOR in step or step == ROOT:
        path = step if is_within(step, ROOT) else child(ROOT, step)
    else:
        path = _path_of_name(pipeline, step)
    below = segments(path)[1:]
    if not below:
        raise ConfigurationError(f"{step!r} names the whole pipeline, not one of its steps")
    return _pipeline(_replace(pipeline, below, agent, path))


def agent_steps(pipeline: Pipeline) -> list[tuple[str, AgentStep]]:
    """Every agent step of ``pipeline`` with its path, in declaration order.

    Loop and map bodies are shown at ``loop[*]`` and ``item[*]``.
    """
    return [(path, node) for path, node in _walk(pipeline, ROOT) if isinstance(node, AgentStep)]


Node = Pipeline | Step


def _walk(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    yield path, node
    for segment, spec in node.children():
        yield from _walk(spec, child(path, segment))


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


def _replace(node: Node, below: list[str], agent: Agent, path: str) -> Node:
    if not below:
        if isinstance(node, AgentStep):
            return attrs.evolve(node, agent=agent)
        kind = type(node).__name__
        raise ConfigurationError(f"{path!r} is a {kind}, not an agent step: it has no agent")
    found = child_at(node, below[0])
    if found is None:
        raise ConfigurationError(f"path {path!r}: no step {below[0]!r} here")
    segment, spec = found
    return node.replace_child(segment, _replace(spec, below[1:], agent, path))


def _pipeline(node: Node) -> Pipeline:
    assert isinstance(node, Pipeline)
    return node
