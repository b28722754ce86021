"""``trioflow graph FILE.py:NAME``: a picture of a pipeline's structure.

Prints the pipeline as a Mermaid flowchart (``--format mermaid``, the
default: GitHub, GitLab and most documentation tools draw it) or in
Graphviz's DOT language (``--format dot``, for ``dot -Tsvg``). Nothing
runs: the picture comes from the specification (see ``_dsl._diagram``).
"""

from __future__ import annotations

import argparse
import enum

from .._dsl._diagram import diagram, dot, mermaid
from .._dsl._pipeline import Pipeline


class GraphFormat(enum.StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"


def add_graph_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    graph = commands.add_parser("graph", help="print a pipeline's structure as a diagram")
    graph.add_argument("target", metavar="FILE.py:NAME", help="the file and the pipeline's name")
    graph.add_argument(
        "--format",
        choices=[choice.value for choice in GraphFormat],
        default=GraphFormat.MERMAID.value,
        help="mermaid (default) or dot (Graphviz)",
    )


def picture(pipeline: Pipeline, format: str) -> str:
    """The pipeline drawn in ``format`` (one of :class:`GraphFormat`)."""
    graph = diagram(pipeline)
    return mermaid(graph) if GraphFormat(format) is GraphFormat.MERMAID else dot(graph)
