"""Which classes a read of the journal may construct, from the runtime's side.

The codec never imports a class named in stored data (see
:mod:`trioflow.persistence._trusted`). Two kinds of class are vouched for:

* the runtime's own values kept in records (step results, usage, patches,
  the base context, human interactions...), registered with the codec when
  the runtime is imported, so any read constructs them;
* a pipeline's classes: whatever its steps declare as input and output
  types and its context type, followed through fields, generic arguments
  and subclasses (:meth:`TrustedTypes.reachable_from`), and the enum
  members it uses as branch keys. The runtime hands these to the store
  whenever it has the pipeline: to resume or replay a run.

A class the pipeline does not declare (a step typed ``Any`` returning a
model) comes back :class:`~trioflow.persistence.Unresolved` on resume:
register it with ``register_type(cls)``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import attrs
from trioflow.persistence import CODEC, TrustedTypes

from ._dsl._context import AddTo, AppendTo, BaseContext, Remove, SetField, SetKey
from ._dsl._human import HumanInteraction
from ._dsl._pipeline import Pipeline
from ._dsl._retry import FailureKind
from ._dsl._step import Step
from ._recorded_replies import RecordedError
from ._results import StepResult
from ._usage import Completion, Usage, UsageLimits

#: The runtime's classes that records hold.
RUNTIME_TYPES: tuple[type, ...] = (
    StepResult,
    Usage,
    UsageLimits,
    Completion,
    RecordedError,
    FailureKind,
    SetField,
    AppendTo,
    AddTo,
    SetKey,
    Remove,
    BaseContext,
    HumanInteraction,
)

for _cls in RUNTIME_TYPES:
    CODEC.register_type(_cls)


def stored_types(pipeline: Pipeline) -> TrustedTypes:
    """The classes values of ``pipeline``'s runs may be: what a resume or replay may construct."""
    return TrustedTypes.reachable_from(*_declared(pipeline))


def _declared(node: Any) -> Iterator[Any]:
    """The types ``node`` (a pipeline, a step, or a value held by one) declares."""
    if isinstance(node, Pipeline):
        yield node.context_type
        for step in node.steps:
            yield from _declared(step)
    elif isinstance(node, Step):
        yield node.input_type
        yield node.output_type
        kind: Any = type(node)
        if attrs.has(kind):
            for field in attrs.fields(kind):
                yield from _declared(getattr(node, field.name))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _declared(item)
    elif isinstance(node, enum.Enum):  # a branch key: kept in its step's record
        yield type(node)
