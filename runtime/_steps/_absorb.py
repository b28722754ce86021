"""A composite's side of a finished child: its patch applied, or the child failed by it.

The pipeline and loop actors go on from each child on a context with the
child's patch applied, which happens only for a child that succeeded or
was stopped by a usage limit (what it finished is kept). A patch the
context rejects fails that child instead; its record is written again so
the journal says what the run saw, a failure, and the composite stops on
it as on any failed child.
"""

from __future__ import annotations

import attrs

from .._dsl._context import BaseContext, apply_patch
from .._errors import ContextValidationError
from .._journal import Journal
from ._messages import StepDone


async def absorb(
    done: StepDone, context: BaseContext, journal: Journal
) -> tuple[StepDone, BaseContext | None]:
    """``done`` (failed if its patch does not fit) and ``context`` with its patch, if applied.

    The second value is ``None`` when no patch was applied: none to apply,
    a child that failed, or a patch the context rejected.
    """
    result = done.result
    if not result.patch or not (result.success or done.breach is not None):
        return done, None
    try:
        return done, apply_patch(context, result.patch, step=result.path)
    except ContextValidationError as error:
        failed = attrs.evolve(result, success=False, feedback=str(error))
        # The step's record must say what the run saw: a failure.
        rejected = StepDone(failed, breach=done.breach)
        await journal.record(rejected)
        return rejected, None
