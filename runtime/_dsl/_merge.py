"""Merging the context patches of concurrent branches.

A parallel supervisor (parallel, map-over, router) collects one patch per
branch and merges them in *declaration order*, never completion order, so
the merged context is the same however the branches were scheduled.

Appends and additions commute: they always compose, and every branch's
contribution is kept. Everything else writes a *target*, a whole field
(``SetField``) or one key of a dict field (``SetKey``, ``Remove``); an
append or an addition also claims its field against a whole-field write.
Two branches writing one target differently conflict; the strategy says
what happens:

* ``error_on_conflict`` (default): the step fails; the message names both
  branches, the field and both values.
* ``overwrite``: the last declared branch wins.
* ``keep_first``: the first declared branch wins.
* ``no_merge``: no branch changes the context.
* a function ``(base_context, {branch: patch}) -> patch`` decides.

Two branches writing the same value to a target do not conflict, and a
branch that changes a field no other branch touched never conflicts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from .._errors import ContextValidationError
from ._context import AddTo, AppendTo, BaseContext, Patch, PatchOp, Remove, SetField, SetKey


class Merge(enum.StrEnum):
    """The built-in merge strategies; see the module docstring."""

    ERROR_ON_CONFLICT = "error_on_conflict"
    OVERWRITE = "overwrite"
    KEEP_FIRST = "keep_first"
    NO_MERGE = "no_merge"


MergeFunction = Callable[[BaseContext, Mapping[str, Patch]], Sequence[PatchOp]]
MergeStrategy = Merge | MergeFunction


def merge_strategy(value: MergeStrategy | str) -> MergeStrategy:
    """Accept a :class:`Merge`, its name, or a merge function."""
    if isinstance(value, Merge) or callable(value):
        return value
    try:
        return Merge(value)
    except ValueError:
        choices = ", ".join(repr(strategy.value) for strategy in Merge)
        raise ValueError(f"unknown merge strategy {value!r}; choose one of {choices}") from None


class MergeError(ContextValidationError):
    """The branches' context changes could not be merged."""


class MergeConflict(MergeError):
    """Two branches changed one context target differently (``error_on_conflict``)."""


# A target is ("field", name) for a whole field or ("key", name, key) for a dict key.
Target = tuple[Any, ...]


class _Write(NamedTuple):
    """What one branch does to one target: its last value, or how it touched it.

    (A named tuple: a wide fan-out makes two per branch, and it is the cheapest record.)
    """

    branch: str
    value: Any
    commutative: bool


def _targets(op: PatchOp) -> list[tuple[Target, Any, bool]]:
    """The targets ``op`` writes, each with the value written and whether it commutes."""
    match op:
        case SetField(field=field, value=value):
            return [(("field", field), value, False)]
        case SetKey(field=field, key=key, value=value):
            return [(("key", field, key), value, False), (("field", field), _TOUCHED, True)]
        case Remove(field=field, item=item):
            return [(("key", field, item), _REMOVED, False), (("field", field), _TOUCHED, True)]
        case AppendTo(field=field) | AddTo(field=field):
            return [(("field", field), _TOUCHED, True)]
    raise AssertionError(f"unknown patch operation {op!r}")


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_TOUCHED = _Marker("<changed in place>")
_REMOVED = _Marker("<removed>")


@attrs.frozen(eq=False)
class _Amended:
    """A whole-field write followed, in the same branch, by in-place changes.

    Never equal to another branch's write: the two cannot be shown to agree.
    """

    value: Any

    def __repr__(self) -> str:
        return f"{self.value!r} then changed in place"


def _writes(branch: str, patch: Patch) -> dict[Target, _Write]:
    """A branch's net write per target (its last value for non-commutative ones)."""
    writes: dict[Target, _Write] = {}
    for op in patch:
        for target, value, commutative in _targets(op):
            earlier = writes.get(target)
            if commutative and earlier is not None and not earlier.commutative:
                # Still a whole write for conflicts, but no longer the value first written.
                amended = (
                    earlier.value
                    if isinstance(earlier.value, _Amended)
                    else _Amended(earlier.value)
                )
                writes[target] = _Write(branch, amended, False)
                continue
            writes[target] = _Write(branch, value, commutative)
    return writes


@attrs.frozen(slots=True)
class Conflict:
    """Branch ``second`` (declared later) writes ``target`` unlike ``first``."""

    target: Target
    first: _Write
    second: _Write

    def describe(self, step: str) -> str:
        where = f"context field {self.target[1]!r}"
        if self.target[0] == "key":
            where += f" key {self.target[2]!r}"
        return (
            f"step {step!r}: branches {self.first.branch!r} and {self.second.branch!r} "
            f"conflict on {where}: {self.first.branch!r} sets {self.first.value!r}, "
            f"{self.second.branch!r} sets {self.second.value!r}"
        )


@attrs.frozen
class Overlaps:
    """How the branches' writes overlap: conflicts, and repeats of an earlier write."""

    conflicts: list[Conflict]
    #: (branch, target) pairs where a later branch writes what an earlier one wrote.
    repeats: set[tuple[str, Target]]


def find_overlaps(patches: Sequence[tuple[str, Patch]]) -> Overlaps:
    """Every conflict (in declaration order of the later branch) and every repeated write."""
    claimed: dict[Target, _Write] = {}
    overlaps = Overlaps([], set())
    for branch, patch in patches:
        for target, write in _writes(branch, patch).items():
            earlier = claimed.get(target)
            if earlier is None:
                claimed[target] = write
                continue
            if earlier.commutative and write.commutative:
                continue
            whole_writes = not earlier.commutative and not write.commutative
            if whole_writes and _same(earlier.value, write.value):
                overlaps.repeats.add((branch, target))
                continue
            overlaps.conflicts.append(Conflict(target, earlier, write))
            if not write.commutative:
                claimed[target] = write
    return overlaps


def _same(first: Any, second: Any) -> bool:
    return type(first) is type(second) and bool(first == second)


def merge_patches(
    base: BaseContext,
    patches: Sequence[tuple[str, Patch]],
    strategy: MergeStrategy,
    *,
    step: str,
) -> Patch:
    """One patch that applies every branch's changes, as ``strategy`` says.

    ``patches`` are in declaration order. Raises :class:`MergeConflict`
    for ``error_on_conflict`` when branches conflict.
    """
    if strategy is Merge.NO_MERGE:
        return ()
    if not isinstance(strategy, Merge):
        return _user_merge(strategy, base, patches, step)
    overlaps = find_overlaps(patches)
    # A repeated write (two branches removing one key, say) is applied once.
    dropped = set(overlaps.repeats)
    if overlaps.conflicts and strategy is Merge.ERROR_ON_CONFLICT:
        raise MergeConflict(overlaps.conflicts[0].describe(step))
    if strategy is Merge.KEEP_FIRST:
        dropped |= {(conflict.second.branch, conflict.target) for conflict in overlaps.conflicts}
    return _without(patches, dropped)


def _without(patches: Sequence[tuple[str, Patch]], dropped: set[tuple[str, Target]]) -> Patch:
    """Every operation, in declaration order, except those on a dropped (branch, target)."""
    if not dropped:
        return tuple(op for _, patch in patches for op in patch)
    return tuple(
        op
        for branch, patch in patches
        for op in patch
        if not any((branch, target) in dropped for target, _, _ in _targets(op))
    )


def _user_merge(
    merge: MergeFunction, base: BaseContext, patches: Sequence[tuple[str, Patch]], step: str
) -> Patch:
    try:
        return tuple(merge(base, dict(patches)))
    except Exception as error:  # the user's merge function failed: the step's failure
        raise MergeError(
            f"step {step!r}: merge function {getattr(merge, '__name__', merge)!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error
