"""Turning the outcome of a fan-out into the step's result.

Shared by the parallel, map-over and router steps: the step's usage is
what the governor committed under its path (so failed and cancelled
branches count), its history lists the finished branches in declaration
order, and its patch is the merge of the successful branches' patches.
A failed branch contributes no context changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .._dsl._context import BaseContext
from .._dsl._control import OnBranchFailure
from .._dsl._merge import MergeStrategy, merge_patches
from .._errors import ContextValidationError
from .._governor import UsageUnder
from .._results import StepResult
from .._services import RunServices
from ._fanout import Branch, FanOutResult, fan_out
from ._messages import StepDone

Shape = Callable[[FanOutResult], Any]


async def run_branches(
    name: str,
    path: str,
    branches: Sequence[Branch],
    *,
    on_failure: OnBranchFailure,
    base: BaseContext,
    merge: MergeStrategy,
    shape: Shape,
    services: RunServices,
    max_concurrency: int | None = None,
    history_before: Sequence[StepResult] = (),
    metadata: dict[str, Any] | None = None,
) -> StepDone:
    """Fan ``branches`` out under ``path`` and turn how they went into the step's result."""
    propagate = on_failure is OnBranchFailure.PROPAGATE
    fanned = await fan_out(
        path, branches, services, propagate=propagate, max_concurrency=max_concurrency
    )
    return await _fan_out_result(
        name,
        path,
        fanned,
        base=base,
        merge=merge,
        propagate=propagate,
        shape=shape,
        services=services,
        history_before=history_before,
        metadata=metadata,
    )


async def _fan_out_result(
    name: str,
    path: str,
    fanned: FanOutResult,
    *,
    base: BaseContext,
    merge: MergeStrategy,
    propagate: bool,
    shape: Shape,
    services: RunServices,
    history_before: Sequence[StepResult] = (),
    metadata: dict[str, Any] | None = None,
) -> StepDone:
    """The :class:`StepDone` of a step that fanned out; see the module docstring."""
    usage = await services.governor.ask(UsageUnder(path), sender=path)
    history = (*history_before, *(result for _, result in fanned.finished))
    details = {**(metadata or {}), **_details(fanned)}
    result = StepResult(name, path, attempts=1, usage=usage, step_history=history, metadata=details)
    latency = max((r.latency_s for _, r in fanned.finished), default=0.0)
    result = _with(result, latency_s=latency)
    if fanned.breach is not None:
        # Stopped by a usage limit: what finished is kept (output, context
        # changes), but the step did not complete.
        stopped = _with(_merged(result, fanned, base, merge, shape, path), success=False)
        return StepDone(_with(stopped, feedback=fanned.breach), breach=fanned.breach)
    failure = _failure(fanned, propagate)
    if failure is not None:
        return StepDone(_with(result, feedback=failure))
    if fanned.paused:  # not complete: resumed later, when its branches' finished work is restored
        return StepDone(result, paused=fanned.paused)
    return StepDone(_merged(result, fanned, base, merge, shape, path))


def _details(fanned: FanOutResult) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if fanned.failed:
        details["failed_branches"] = {name: r.feedback for name, r in fanned.failed}
    if fanned.breached:
        details["breached_branches"] = [
            name for name, _ in fanned.finished if name in fanned.breached
        ]
    if fanned.cancelled:
        details["cancelled_branches"] = list(fanned.cancelled)
    if fanned.not_started:
        details["not_started"] = list(fanned.not_started)
    if fanned.stop_reason is not None:
        details["stop_reason"] = fanned.stop_reason
    return details


def _failure(fanned: FanOutResult, propagate: bool) -> str | None:
    failed = fanned.failed
    if not failed:
        return None
    if propagate:
        name, first = fanned.trigger or failed[0]
        return f"branch {name!r} failed: {first.feedback}"
    if not fanned.succeeded:
        return f"every branch failed; first: {failed[0][0]!r}: {failed[0][1].feedback}"
    return None


def _merged(
    result: StepResult,
    fanned: FanOutResult,
    base: BaseContext,
    merge: MergeStrategy,
    shape: Shape,
    path: str,
) -> StepResult:
    patches = [(name, r.patch) for name, r in fanned.contributing]
    try:
        patch = tuple(merge_patches(base, patches, merge, step=path))
    except ContextValidationError as error:
        return _with(result, feedback=str(error))
    return _with(result, output=shape(fanned), success=True, patch=patch)


def _with(result: StepResult, **changes: Any) -> StepResult:
    return attrs.evolve(result, **changes)
