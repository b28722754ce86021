"""Messages between a step's actor and its parent.

Parent to child: one :class:`Execute`. Child to parent: exactly one
:class:`StepDone` (the reply to that ask), whether the step succeeded,
failed or hit a usage limit.
"""

from __future__ import annotations

from typing import Any

import attrs
from trioflow.actors import Ask

from .._dsl._context import BaseContext
from .._results import StepResult


@attrs.frozen(slots=True)
class Execute(Ask["StepDone"]):
    """Run your step on ``data``, seeing ``context``; the reply is its :class:`StepDone`."""

    data: Any
    context: BaseContext


@attrs.frozen(slots=True)
class StepDone:
    """A step's terminal message.

    ``breach`` is set when a usage limit was exceeded: the step's result is
    recorded (with what it cost) and the run stops. ``paused`` is set when
    the step waits for human input: it is not complete, and the run ends
    with status ``paused``.
    """

    result: StepResult
    breach: str | None = None
    #: The paths of the human-input steps waiting beneath this step, if any.
    paused: tuple[str, ...] = ()
    #: What each model call of an agent step replied, by ledger key, for replay.
    replies: tuple[tuple[str, Any], ...] = ()
