"""The run's context: an immutable pydantic model, changed only by patches.

Each step sees the snapshot it was sent and describes the changes it wants
as a :data:`Patch`, a tuple of operations. Only supervisors apply patches:
a pipeline applies each step's patch before the next step starts, so a
later step (or loop iteration) always sees earlier updates, and no two
tasks ever write to the same object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import pydantic

from ._errors import ContextValidationError


class BaseContext(pydantic.BaseModel):
    """Base class of pipeline contexts. Subclass it to add your fields.

    Instances are frozen: a step never mutates the context, it returns a
    patch. ``run_id`` is filled in by the runtime when a run starts;
    ``hitl_history`` holds the :class:`~trioflow.runtime.HumanInteraction`
    of each answered human-input step.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    run_id: str = ""
    #: Every answered human-input step, in the order they were answered.
    hitl_history: tuple[Any, ...] = ()


C = TypeVar("C", bound=BaseContext)


@attrs.frozen(slots=True)
class SetField:
    """Set ``field`` to ``value``."""

    field: str
    value: Any


@attrs.frozen(slots=True)
class AppendTo:
    """Append ``value`` to the list (or tuple) in ``field``."""

    field: str
    value: Any


@attrs.frozen(slots=True)
class AddTo:
    """Add ``amount`` to the number in ``field``."""

    field: str
    amount: int | float | Decimal


@attrs.frozen(slots=True)
class SetKey:
    """Set ``key`` to ``value`` in the dict in ``field``."""

    field: str
    key: Any
    value: Any


@attrs.frozen(slots=True)
class Remove:
    """Remove ``item`` from ``field``: a key of a dict, or an element of a list."""

    field: str
    item: Any


PatchOp = SetField | AppendTo | AddTo | SetKey | Remove
Patch = tuple[PatchOp, ...]
EMPTY_PATCH: Patch = ()


@attrs.frozen(slots=True)
class WithPatch:
    """A step's output together with the context changes it wants.

    Return ``WithPatch(output, [AppendTo("notes", text)])`` from a step
    function to change the context as well as produce an output.
    """

    output: object
    patch: Patch = attrs.field(converter=tuple)


def patch_from_fields(fields: Mapping[str, Any] | pydantic.BaseModel) -> Patch:
    """The set-operations of ``updates_context=True`` for a returned mapping or model."""
    if isinstance(fields, pydantic.BaseModel):
        items: Iterable[tuple[str, Any]] = (
            (name, getattr(fields, name)) for name in fields.model_fields_set
        )
    else:
        items = fields.items()
    return tuple(SetField(str(name), value) for name, value in items)


def apply_patch(context: C, patch: Patch, *, step: str) -> C:
    """Apply ``patch`` to ``context`` and validate the result against its model.

    Raises :class:`ContextValidationError` naming ``step`` and the field
    when an operation does not fit the field or the result does not
    validate. The original context is never changed.
    """
    if not patch:
        return context
    model = type(context)
    updates: dict[str, Any] = {}
    for op in patch:
        if op.field not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise ContextValidationError(
                f"step {step!r} patches unknown context field {op.field!r} "
                f"({model.__name__} has: {known})"
            )
        current = updates[op.field] if op.field in updates else getattr(context, op.field)
        updates[op.field] = _apply_op(op, current, step)
    try:
        return model.model_validate({**dict(context), **updates})
    except pydantic.ValidationError as error:
        detail = error.errors()[0]
        field = ".".join(str(part) for part in detail["loc"])
        raise ContextValidationError(
            f"step {step!r} left context field {field!r} invalid: {detail['msg']} "
            f"(got {detail.get('input')!r})"
        ) from None


def _apply_op(op: PatchOp, current: Any, step: str) -> Any:
    try:
        match op:
            case SetField(value=value):
                return value
            case AppendTo(value=value):
                return type(current)([*current, value])
            case AddTo(amount=amount):
                return current + amount
            case SetKey(key=key, value=value):
                return {**current, key: value}
            case Remove(item=item):
                return _removed(current, item)
    except (TypeError, ValueError, KeyError) as error:
        raise ContextValidationError(
            f"step {step!r} cannot apply {type(op).__name__} to context field "
            f"{op.field!r} (holding {current!r}): {error}"
        ) from None
    raise AssertionError(f"unknown patch operation {op!r}")


def _removed(current: Any, item: Any) -> Any:
    if isinstance(current, Mapping):
        if item not in current:
            raise KeyError(f"no key {item!r}")
        return {key: value for key, value in current.items() if key != item}
    items = list(current)
    items.remove(item)
    return type(current)(items)
