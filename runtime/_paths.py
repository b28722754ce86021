"""The step-path grammar: the one place a path is built, parsed or followed.

A path names where a step ran, stably across runs and resumes:
``main/2:refine/loop[3]/0:draft`` is step 0 of the body of iteration 3 of
the loop that is step 2 of the top pipeline ``main``. The same text is the
journal's key for a completion record, the id a resume answers a pause
at, the start of a call's idempotency key and a trace's track, so every
part of trioflow that makes one or reads one does it here. Segments are
joined by ``/`` (the kernel's supervisor joins a child's name to its
parent's path the same way); each is one of

* ``<index>:<name>``: step ``index`` of a pipeline (:func:`step_segment`);
* ``loop[i]``: iteration ``i`` (1-based) of a loop (:func:`iteration_segment`);
* ``item[i]``: item ``i`` (0-based) of a map-over (:func:`item_segment`);
* ``fallback:<name>``: a step's fallback (:func:`fallback_segment`);
* anything else: a branch of a parallel, conditional or router step, or a
  router's chooser, by its name (step and branch names have no ``/``).

``loop[*]`` and ``item[*]`` stand for every iteration or item: a loop's or
map's body is one specification, whichever iteration runs it. Suffixes
after ``#`` are not steps: ``<path>#<n>`` is attempt ``n`` of a step that
retried (:func:`attempt_path`) and ``<path>#<attempt>#<call>`` an agent
call, the governor's ledger key (:func:`ledger_key`). Names may hold
``:``, ``[`` or ``#``, so a segment is told apart by its form, and a path
is matched against a specification's children by text (see
:func:`segment_matches`).

:func:`locate` follows a path down a pipeline through each
specification's ``children()`` (see :meth:`Step.children`), the one walk
that the swap of an agent, the nesting check and the command line share.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from ._dsl._step import Step
from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._dsl._pipeline import Pipeline

#: The path of a run's top pipeline: every step path starts with it.
ROOT = "main"
#: Between a path's segments.
SEPARATOR = "/"
#: Any iteration or item (a body is one specification for all of them).
EVERY = "*"
_LOOP, _ITEM, _FALLBACK, _CALL = "loop[", "item[", "fallback:", "#"


# -- building --------------------------------------------------------------------------------


def child(parent: str, segment: str) -> str:
    """The path of ``segment`` beneath ``parent``."""
    return f"{parent}{SEPARATOR}{segment}"


def step_segment(index: int, name: str) -> str:
    """Step ``index`` (0-based) of a pipeline, named ``name``."""
    return f"{index}:{name}"


def iteration_segment(iteration: int | None) -> str:
    """Iteration ``iteration`` (1-based) of a loop; ``None`` for every iteration."""
    return f"{_LOOP}{EVERY if iteration is None else iteration}]"


def item_segment(index: int | None) -> str:
    """Item ``index`` (0-based) of a map-over; ``None`` for every item."""
    return f"{_ITEM}{EVERY if index is None else index}]"


def fallback_segment(name: str) -> str:
    """The fallback step ``name`` of a step."""
    return f"{_FALLBACK}{name}"


def fallback_path(path: str, name: str) -> str:
    """Where the fallback ``name`` of the step at ``path`` runs."""
    return child(path, fallback_segment(name))


def attempt_path(path: str, attempts: str | int) -> str:
    """Attempt ``attempts`` (a number, or a range such as ``1-2``) of the step at ``path``.

    Not a step's path: a trace names a retried step's attempts this way,
    and the result a fallback keeps of the step's own attempts.
    """
    return f"{path}{_CALL}{attempts}"


def step_of(path: str) -> str:
    """The step an attempt path or a ledger key belongs to (``main/0:s#2#1`` -> ``main/0:s``)."""
    while True:
        head, mark, tail = path.rpartition(_CALL)
        if not (mark and head and tail.replace("-", "", 1).isdigit()):
            return path
        path = head


def ledger_key(path: str, attempt: int, call: int) -> str:
    """Call ``call`` of attempt ``attempt`` of the step at ``path``: the governor's ledger key."""
    return f"{path}{_CALL}{attempt}{_CALL}{call}"


def cache_hit_key(path: str) -> str:
    """Where the replies of the step at ``path`` keep the result it took from the cache.

    Not a ledger key (``path#attempt#call``): a hit calls no model.
    """
    return f"{path}{_CALL}cache"


def idempotency_key(run_id: str, key: str) -> str:
    """A call's key across runs: its run and its ledger key."""
    return f"{run_id}{SEPARATOR}{key}"


# -- parsing ---------------------------------------------------------------------------------


class SegmentKind(enum.StrEnum):
    """What a path segment names, read from its form."""

    STEP = "step"
    ITERATION = "iteration"
    ITEM = "item"
    FALLBACK = "fallback"
    BRANCH = "branch"


@attrs.frozen(slots=True)
class Segment:
    """One parsed segment: its kind, its text, and the number or name it holds.

    ``number`` is the step index, the iteration or the item (``None`` for
    ``*`` and for the other kinds); ``name`` the step's, fallback's or
    branch's name (``""`` for iterations and items).
    """

    kind: SegmentKind
    text: str
    number: int | None = None
    name: str = ""


def parse_segment(text: str) -> Segment:
    """The kind and parts of the segment ``text``; see the module docstring."""
    for prefix, kind in ((_LOOP, SegmentKind.ITERATION), (_ITEM, SegmentKind.ITEM)):
        if text.startswith(prefix) and text.endswith("]"):
            inner = text[len(prefix) : -1]
            if inner == EVERY:
                return Segment(kind, text)
            if inner.isdigit():
                return Segment(kind, text, int(inner))
    if text.startswith(_FALLBACK):
        return Segment(SegmentKind.FALLBACK, text, name=text[len(_FALLBACK) :])
    index, colon, name = text.partition(":")
    if colon and index.isdigit():
        return Segment(SegmentKind.STEP, text, int(index), name)
    return Segment(SegmentKind.BRANCH, text, name=text)


def segments(path: str) -> list[str]:
    """The segments of ``path``, the top pipeline's name first."""
    return path.split(SEPARATOR)


def parent_of(path: str) -> str:
    """The path ``path`` sits beneath (``""`` for a top-level path)."""
    return path.rpartition(SEPARATOR)[0]


def last_segment(path: str) -> str:
    """The last segment of ``path`` (the whole of it at the top)."""
    return path.rpartition(SEPARATOR)[2]


def is_within(path: str, ancestor: str) -> bool:
    """Whether ``path`` is ``ancestor`` or beneath it."""
    return path == ancestor or path.startswith(f"{ancestor}{SEPARATOR}")


def is_step_path(path: str) -> bool:
    """Whether ``path`` ends in a pipeline's step (``<index>:<name>``)."""
    return parse_segment(last_segment(path)).kind is SegmentKind.STEP


@attrs.frozen(slots=True)
class CallKey:
    """A ledger key read back: the step's path, the attempt and the call."""

    path: str
    attempt: int
    call: int


def parse_ledger_key(key: str) -> CallKey | None:
    """The parts of a :func:`ledger_key`, or ``None`` if ``key`` is not one."""
    rest, _, call = key.rpartition(_CALL)
    path, _, attempt = rest.rpartition(_CALL)
    if not (path and attempt.isdigit() and call.isdigit()):
        return None
    return CallKey(path, int(attempt), int(call))


# -- following a path through a pipeline -----------------------------------------------------


def segment_matches(declared: str, text: str) -> bool:
    """Whether the segment ``text`` of a path names the child declared as ``declared``.

    A body's ``loop[*]`` or ``item[*]`` is matched by any iteration or item
    (and by ``*``); every other child by its exact text.
    """
    if declared == text:
        return True
    wanted = parse_segment(declared)
    if wanted.number is not None or wanted.kind not in (SegmentKind.ITERATION, SegmentKind.ITEM):
        return False
    return parse_segment(text).kind is wanted.kind


def child_at(node: Step | Pipeline, text: str) -> tuple[str, Step | Pipeline] | None:
    """The child of ``node`` that the segment ``text`` names, with its declared segment."""
    for declared, spec in node.children():
        if segment_matches(declared, text):
            return declared, spec
    return None


def locate(pipeline: Pipeline, path: str, *, root: str) -> Step:
    """The step at ``path`` in ``pipeline`` (whose actor is at ``root``)."""
    first, *rest = segments(path)
    if first != root or not rest:
        raise ConfigurationError(f"path {path!r} is not a step of pipeline {pipeline.name!r}")
    node: Step | Pipeline = pipeline
    for text in rest:
        found = child_at(node, text)
        if found is None:
            raise ConfigurationError(f"path {path!r}: no step {text!r} here")
        node = found[1]
    if not isinstance(node, Step):
        raise ConfigurationError(f"path {path!r} names a pipeline, not a step")
    return node
