"""A picture of a pipeline: its steps and how data flows between them.

:func:`diagram` walks a pipeline's specification (never a run) into a
small graph: a node per step, a cluster per composite step (parallel,
router, conditional, loop, map, nested pipeline), and edges that carry the
declared type of what flows along them. :func:`mermaid` and :func:`dot`
print that one graph in two languages, so the two pictures never disagree.

How each kind is drawn:

* an agent step: a box; its fallback chain hangs off it on dotted
  ``fallback`` edges;
* a human step: a parallelogram saying what it asks;
* parallel, router and conditional steps: a fork (the router's chooser, a
  condition's diamond) with an edge per branch, labelled with the branch's
  name or key, into a join, inside a cluster named after the step;
* a loop: its body, then an ``until`` diamond whose ``again`` edge goes
  back to the body's start (at most ``max_loops`` times);
* a map: a fork ``each item`` over one copy of its body, into ``collect``;
* a nested pipeline: a cluster holding its steps.

The walk is a match over the step kinds that have a picture of their own,
in this one module; any other kind is drawn from its ``children()`` (the
one traversal every specification offers) as a fork over them, so a new
step kind shows up in the picture without a change here.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Iterator
from typing import Any

import attrs

from ._agent_step import AgentStep
from ._control import ConditionalStep, LoopStep, MapStep, ParallelStep, RouterStep
from ._human import HumanStep
from ._pipeline import Pipeline, PipelineStep, as_pipeline
from ._step import Step
from ._type_checks import type_name


class Shape(enum.Enum):
    """How a node is drawn."""

    STEP = "step"
    HUMAN = "human"
    FORK = "fork"
    CHOICE = "choice"
    JOIN = "join"
    END = "end"


@attrs.frozen
class Node:
    id: str
    label: str
    shape: Shape


@attrs.frozen
class Edge:
    source: str
    target: str
    label: str = ""
    #: A fallback or a loop's way back: drawn dotted.
    dotted: bool = False


@attrs.frozen
class Cluster:
    """A composite step: a box around the nodes (and clusters) that make it."""

    id: str
    label: str
    members: tuple[Node | Cluster, ...]


@attrs.frozen
class Diagram:
    """A pipeline's graph: top-level nodes and clusters, and every edge."""

    name: str
    members: tuple[Node | Cluster, ...]
    edges: tuple[Edge, ...]


@attrs.define
class _Walk:
    """The graph being built; ``add`` returns a step's (entry, exit) node ids."""

    ids: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    edges: list[Edge] = attrs.field(factory=list)

    def node(self, label: str, shape: Shape) -> Node:
        return Node(f"n{next(self.ids)}", label, shape)

    def chain(self, pipeline: Pipeline, into: list[Node | Cluster]) -> tuple[str, str]:
        """The pipeline's steps in order, edges labelled with what each one outputs."""
        entry, exit = self.step(pipeline.steps[0], into)
        for before, step in zip(pipeline.steps, pipeline.steps[1:], strict=False):
            arrow = len(self.edges)  # the edge into a step comes before the edges inside it
            after, next_exit = self.step(step, into)
            self.edges.insert(arrow, Edge(exit, after, type_name(before.output_type)))
            exit = next_exit
        return entry, exit

    def step(self, step: Step, into: list[Node | Cluster]) -> tuple[str, str]:
        match step:
            case AgentStep():
                return self._agent(step, into)
            case HumanStep():
                asked = self.node(f"{step.name}: {step.message}", Shape.HUMAN)
                into.append(asked)
                return asked.id, asked.id
            case PipelineStep():
                return self._cluster(
                    step.name, into, lambda inner: self.chain(step.pipeline, inner)
                )
            case ParallelStep():
                return self._branches(step, "parallel", dict(step.branches), None, into)
            case RouterStep():
                return self._branches(step, "router", dict(step.branches), step.chooser, into)
            case ConditionalStep():
                return self._conditional(step, into)
            case LoopStep():
                return self._cluster(step.name, into, lambda inner: self._loop(step, inner))
            case MapStep():
                return self._cluster(step.name, into, lambda inner: self._map(step, inner))
        return self._generic(step, into)

    def _generic(self, step: Step, into: list[Node | Cluster]) -> tuple[str, str]:
        """A kind with no picture of its own: a box, or a fork over its ``children()``."""
        children = step.children()
        if not children:
            box = self.node(step.name, Shape.STEP)
            into.append(box)
            return box.id, box.id
        bodies = {segment: as_pipeline(child) for segment, child in children}
        return self._branches(step, type(step).__name__, bodies, None, into)

    def _agent(self, step: AgentStep, into: list[Node | Cluster]) -> tuple[str, str]:
        first = self.node(step.name, Shape.STEP)
        into.append(first)
        current, fallback = first, step.fallback
        while fallback is not None:
            backup = self.node(fallback.name, Shape.STEP)
            into.append(backup)
            self.edges.append(Edge(current.id, backup.id, "fallback", dotted=True))
            current, fallback = backup, fallback.fallback
        return first.id, first.id

    def _cluster(
        self,
        name: str,
        into: list[Node | Cluster],
        fill: Any,
    ) -> tuple[str, str]:
        cluster_id = f"c{next(self.ids)}"
        inner: list[Node | Cluster] = []
        entry, exit = fill(inner)
        into.append(Cluster(cluster_id, name, tuple(inner)))
        return entry, exit

    def _branches(
        self,
        step: Step,
        kind: str,
        branches: dict[str, Pipeline],
        chooser: AgentStep | None,
        into: list[Node | Cluster],
    ) -> tuple[str, str]:
        def fill(inner: list[Node | Cluster]) -> tuple[str, str]:
            label = f"{kind}: {chooser.name}" if chooser is not None else kind
            fork = self.node(label, Shape.FORK if chooser is None else Shape.CHOICE)
            inner.append(fork)
            join = self.node("merge", Shape.JOIN)
            for key, body in branches.items():
                self._branch(fork.id, key, body, join.id, inner)
            inner.append(join)
            return fork.id, join.id

        return self._cluster(step.name, into, fill)

    def _branch(
        self, fork: str, key: str, body: Pipeline, join: str, into: list[Node | Cluster]
    ) -> None:
        entry, exit = self.chain(body, into)
        self.edges.append(Edge(fork, entry, key))
        self.edges.append(Edge(exit, join, type_name(body.output_type)))

    def _conditional(self, step: ConditionalStep, into: list[Node | Cluster]) -> tuple[str, str]:
        def fill(inner: list[Node | Cluster]) -> tuple[str, str]:
            choice = self.node("branch on", Shape.CHOICE)
            inner.append(choice)
            join = self.node("merge", Shape.JOIN)
            keyed = [(str(key), body) for key, body in step.branches]
            if step.default is not None:
                keyed.append(("default", step.default))
            for key, body in keyed:
                self._branch(choice.id, key, body, join.id, inner)
            inner.append(join)
            return choice.id, join.id

        return self._cluster(step.name, into, fill)

    def _loop(self, step: LoopStep, inner: list[Node | Cluster]) -> tuple[str, str]:
        entry, exit = self.chain(step.body, inner)
        until = self.node(f"until done, at most {step.max_loops}", Shape.CHOICE)
        inner.append(until)
        self.edges.append(Edge(exit, until.id, type_name(step.body.output_type)))
        self.edges.append(Edge(until.id, entry, "again", dotted=True))
        return entry, until.id

    def _map(self, step: MapStep, inner: list[Node | Cluster]) -> tuple[str, str]:
        source = f"context.{step.items_from}" if step.items_from else "the input"
        each = self.node(f"each item of {source}, {step.max_concurrency} at once", Shape.FORK)
        inner.append(each)
        entry, exit = self.chain(step.body, inner)
        collect = self.node("collect", Shape.JOIN)
        inner.append(collect)
        self.edges.append(Edge(each.id, entry, type_name(step.body.input_type)))
        self.edges.append(Edge(exit, collect.id, type_name(step.body.output_type)))
        return each.id, collect.id


def diagram(pipeline: Pipeline) -> Diagram:
    """The graph of ``pipeline``: from its input, through every step, to its output."""
    walk = _Walk()
    members: list[Node | Cluster] = []
    start = Node("input", "input", Shape.END)
    members.append(start)
    entry, exit = walk.chain(pipeline, members)
    end = Node("output", "output", Shape.END)
    members.append(end)
    edges = [
        Edge(start.id, entry, type_name(pipeline.input_type)),
        *walk.edges,
        Edge(exit, end.id, type_name(pipeline.output_type)),
    ]
    return Diagram(pipeline.name, tuple(members), tuple(edges))


# -- Mermaid -----------------------------------------------------------------------------------

_MERMAID_SHAPES = {
    Shape.STEP: ("[", "]"),
    Shape.HUMAN: ("[/", "/]"),
    Shape.FORK: ("{{", "}}"),
    Shape.CHOICE: ("{", "}"),
    Shape.JOIN: ("((", "))"),
    Shape.END: ("([", "])"),
}


def mermaid(graph: Diagram) -> str:
    """The graph as a Mermaid flowchart (top to bottom)."""
    lines = ["flowchart TD", *_mermaid_members(graph.members, "    ")]
    for edge in graph.edges:
        arrow = "-.->" if edge.dotted else "-->"
        label = f"|{_mermaid_text(edge.label)}|" if edge.label else ""
        lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
    return "\n".join(lines) + "\n"


def _mermaid_members(members: tuple[Node | Cluster, ...], indent: str) -> Iterator[str]:
    for member in members:
        if isinstance(member, Cluster):
            yield f"{indent}subgraph {member.id}[{_mermaid_text(member.label)}]"
            yield from _mermaid_members(member.members, indent + "    ")
            yield f"{indent}end"
        else:
            opening, closing = _MERMAID_SHAPES[member.shape]
            yield f"{indent}{member.id}{opening}{_mermaid_text(member.label)}{closing}"


def _mermaid_text(text: str) -> str:
    """Quoted, so brackets and pipes in a type are text; quotes become entity codes."""
    return '"' + text.replace('"', "#quot;") + '"'


# -- Graphviz ----------------------------------------------------------------------------------

_DOT_SHAPES = {
    Shape.STEP: "box",
    Shape.HUMAN: "parallelogram",
    Shape.FORK: "hexagon",
    Shape.CHOICE: "diamond",
    Shape.JOIN: "circle",
    Shape.END: "oval",
}


def dot(graph: Diagram) -> str:
    """The graph in Graphviz's DOT language."""
    lines = [f"digraph {_dot_text(graph.name)} {{", "    rankdir=TB;"]
    lines.extend(_dot_members(graph.members, "    "))
    for edge in graph.edges:
        attributes = [f"label={_dot_text(edge.label)}"] if edge.label else []
        if edge.dotted:
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {edge.source} -> {edge.target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_members(members: tuple[Node | Cluster, ...], indent: str) -> Iterator[str]:
    for member in members:
        if isinstance(member, Cluster):
            yield f"{indent}subgraph cluster_{member.id} {{"
            yield f"{indent}    label={_dot_text(member.label)};"
            yield from _dot_members(member.members, indent + "    ")
            yield f"{indent}}}"
        else:
            shape = _DOT_SHAPES[member.shape]
            yield f"{indent}{member.id} [label={_dot_text(member.label)}, shape={shape}];"


def _dot_text(text: str) -> str:
    """A DOT string: JSON's escaping of quotes and backslashes is DOT's too."""
    return json.dumps(text, ensure_ascii=False)
