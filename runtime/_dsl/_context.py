"""The run's context: an immutable pydantic model, changed only by patches.

Each step sees the snapshot it was sent and describes the changes it wants
as a :data:`Patch`, a tuple of operations. Only supervisors apply patches:
a pipeline applies each step's patch before the next step starts, so a
later step (or loop iteration) always sees earlier updates, and no two
tasks ever write to the same object.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Generic, TypeVar

import attrs
import pydantic

from .._errors import ContextValidationError


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

    @pydantic.field_validator("hitl_history")
    @classmethod
    def _in_answer_order(cls, history: tuple[Any, ...]) -> tuple[Any, ...]:
        """``history`` sorted by when each pause was answered.

        Why here: each answer is appended by its own step, and parallel
        branches (or map items) that paused are merged in declaration order,
        whatever order their pauses were answered in. Every patch ends in
        validation, so sorting here keeps the history in answer order
        however the appends were merged. Entries without an answer time
        (recorded before it was kept) come first, in their own order.
        """
        return tuple(sorted(history, key=_answer_time))


C = TypeVar("C", bound=BaseContext)

_NEVER = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _answer_time(interaction: Any) -> datetime.datetime:
    """When a ``hitl_history`` entry was answered, ``_NEVER`` if it does not say."""
    answered_at = getattr(interaction, "answered_at", None)
    return answered_at if isinstance(answered_at, datetime.datetime) else _NEVER


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


#: The type of the output a :class:`WithPatch` carries.
T = TypeVar("T")


@attrs.frozen(slots=True)
class WithPatch(Generic[T]):
    """A step's output together with the context changes it wants.

    Return ``WithPatch(output, [AppendTo("notes", text)])`` from a step
    function to change the context as well as produce an output. A step
    function annotated ``-> WithPatch[str]`` outputs ``str``.
    """

    output: T
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
    #: The fields whose value in ``updates`` is a copy made here, so changed in place.
    owned: set[str] = set()
    for op in patch:
        if op.field not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise ContextValidationError(
                f"step {step!r} patches unknown context field {op.field!r} "
                f"({model.__name__} has: {known})"
            )
        current = updates[op.field] if op.field in updates else getattr(context, op.field)
        try:
            updates[op.field] = _apply_op(op, current, op.field in owned, owned)
        except (TypeError, ValueError, KeyError) as error:
            raise ContextValidationError(
                f"step {step!r} cannot apply {type(op).__name__} to context field "
                f"{op.field!r} (holding {current!r}): {error}"
            ) from None
    try:
        return model.model_validate({**dict(context), **updates})
    except pydantic.ValidationError as error:
        detail = error.errors()[0]
        field = ".".join(str(part) for part in detail["loc"])
        raise ContextValidationError(
            f"step {step!r} left context field {field!r} invalid: {detail['msg']} "
            f"(got {detail.get('input')!r})"
        ) from None


def _apply_op(op: PatchOp, current: Any, mine: bool, owned: set[str]) -> Any:
    """``current`` changed by ``op``; ``mine`` says it is a copy this patch may change.

    Why in place: a merged patch holds one operation per branch, often on
    one field (a thousand branches each setting a key); copying the whole
    dict or list for every operation would make applying it quadratic.
    The field is copied once, at its first operation, and the copy (never
    the context's value, nor a value a step gave) is changed from then on.
    """
    match op:
        case SetField(value=value):
            owned.discard(op.field)  # the step's own object: never changed here
            return value
        case AppendTo(value=value):
            if type(current) is not list:
                return type(current)([*current, value])
            appended = current if mine else list(current)
            appended.append(value)
            owned.add(op.field)
            return appended
        case AddTo(amount=amount):
            return current + amount
        case SetKey(key=key, value=value):
            keyed = current if mine else dict(current)
            keyed[key] = value
            owned.add(op.field)
            return keyed
        case Remove(item=item):
            return _removed(current, item, mine, owned, op.field)
    raise AssertionError(f"unknown patch operation {op!r}")


def _removed(current: Any, item: Any, mine: bool, owned: set[str], field: str) -> Any:
    if isinstance(current, Mapping):
        if item not in current:
            raise KeyError(f"no key {item!r}")
        remaining: Any = current if mine else dict(current)
        del remaining[item]
        owned.add(field)
        return remaining
    items = list(current)
    items.remove(item)
    return type(current)(items)
