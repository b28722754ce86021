"""How deep a pipeline may nest, checked before a run starts.

Every level of nesting (a pipeline used as a step, a control step's body, a
fallback) adds a segment to the paths beneath it, and several parts of
trioflow walk a pipeline recursively (type checks, the step table, the
trace tree). A pipeline nested hundreds of levels deep would end in
Python's ``RecursionError`` somewhere in the middle of a run, and its
journal would hold paths hundreds of segments long for every step, so
the journal grows with the square of the depth. No real pipeline needs
that: :data:`MAX_NESTING_DEPTH` levels are allowed, and a deeper pipeline
is refused before anything runs or is stored, with a message naming the
limit. The walk here is a loop, not recursion, so it works at any depth.
"""

from __future__ import annotations

from .._errors import ConfigurationError
from ._pipeline import Pipeline
from ._step import Step

#: The most path segments a step may sit below the top pipeline (``main/0:a`` is 1).
MAX_NESTING_DEPTH = 100


def check_nesting(pipeline: Pipeline) -> None:
    """Raise :class:`ConfigurationError` if ``pipeline`` nests deeper than the limit."""
    depth = nesting_depth(pipeline)
    if depth > MAX_NESTING_DEPTH:
        raise ConfigurationError(
            f"pipeline {pipeline.name!r} nests {depth} levels deep; pipelines may nest at "
            f"most {MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)"
        )


def nesting_depth(pipeline: Pipeline) -> int:
    """How many path segments the deepest step of ``pipeline`` sits below its top.

    Each child (see :meth:`Step.children`) adds one segment to its parent's path.
    """
    deepest = 0
    stack: list[tuple[Pipeline | Step, int]] = [(pipeline, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for _, child in node.children())
    return deepest
