"""Running branches at once under one supervisor: the engine of parallel, map and router.

Each branch is a body run by its own actor (see
:func:`_dispatch.body_actor`), a child of the calling step's supervisor.
Replies arrive in a :class:`ReplyInbox` in completion order; the results
are handed back in declaration order. At most
``max_concurrency`` branches run at a time (the next starts when one
ends). A usage-limit breach, or a branch failure under ``propagate``,
cancels the running siblings at once, with a reason that every cancelled
actor records in the trace; branches not yet started never start.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs
from trioflow.actors import ActorRef, ReplyInbox, Supervisor, open_supervisor

from .._dsl._context import BaseContext
from .._dsl._pipeline import Pipeline
from .._results import StepResult
from .._services import RunServices
from . import _dispatch
from ._messages import Execute, StepDone


@attrs.frozen(slots=True)
class Branch:
    """One branch to run: its name (the last segment of its path), pipeline and input."""

    name: str
    pipeline: Pipeline
    data: Any
    context: BaseContext


@attrs.frozen
class FanOutResult:
    """How the branches went, in declaration order.

    ``finished`` holds every branch that sent its result (succeeded or
    failed); ``paused`` the paths of human-input steps waiting in branches
    that paused (their siblings go on); ``cancelled`` the ones stopped while
    running; ``not_started`` the ones never started because the fan-out
    stopped first.
    """

    finished: tuple[tuple[str, StepResult], ...]
    #: The finished branches that a usage limit stopped (they keep what they finished).
    breached: frozenset[str]
    cancelled: tuple[str, ...]
    not_started: tuple[str, ...]
    breach: str | None
    stop_reason: str | None
    #: The failed branch that stopped the fan-out under ``propagate``.
    trigger: tuple[str, StepResult] | None = None
    paused: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[tuple[str, StepResult], ...]:
        return tuple(
            (name, result)
            for name, result in self.finished
            if not result.success and name not in self.breached
        )

    @property
    def contributing(self) -> tuple[tuple[str, StepResult], ...]:
        """The branches whose context changes count: successes and breaching branches."""
        return tuple(
            (name, result)
            for name, result in self.finished
            if result.success or name in self.breached
        )

    @property
    def succeeded(self) -> tuple[tuple[str, StepResult], ...]:
        """The branches that completed; a branch a usage limit stopped did not.

        (A one-step branch stopped by a limit reports its step's own result,
        which is a success when the call delivered before the limit was
        found: the branch still did not complete.)
        """
        return tuple(
            (name, result)
            for name, result in self.finished
            if result.success and name not in self.breached
        )


async def fan_out(
    path: str,
    branches: Sequence[Branch],
    services: RunServices,
    *,
    propagate: bool,
    max_concurrency: int | None = None,
) -> FanOutResult:
    """Run ``branches`` as children of a supervisor at ``path``; see the module docstring."""
    limit = len(branches) if max_concurrency is None else max_concurrency
    inbox: ReplyInbox[int, StepDone] = ReplyInbox()
    done: dict[int, StepDone] = {}
    started = 0
    breach: str | None = None
    stop_reason: str | None = None
    trigger: tuple[str, StepResult] | None = None
    paused: dict[int, tuple[str, ...]] = {}
    async with open_supervisor(path, services.trace) as supervisor:
        while started < min(limit, len(branches)):
            await _start(supervisor, branches, started, inbox, services, path)
            started += 1
        while len(done) + len(paused) < started:
            reply = await inbox.receive()
            outcome = reply.unwrap()
            if outcome.paused:  # waiting for a person is not a failure: the siblings go on
                paused[reply.tag] = outcome.paused
            else:
                done[reply.tag] = outcome
                if outcome.breach is not None:
                    breach = outcome.breach
                    stop_reason = f"usage limit: {breach}"
                elif propagate and not outcome.result.success:
                    trigger = (branches[reply.tag].name, outcome.result)
                    stop_reason = f"branch {trigger[0]!r} failed"
            if stop_reason is not None:
                supervisor.cancel(stop_reason)
                break
            if started < len(branches):
                await _start(supervisor, branches, started, inbox, services, path)
                started += 1
    for late in inbox.arrived():  # finished while the siblings were being cancelled
        if late.error is not None:
            continue  # a cancelled branch's ActorStopped: it is listed as cancelled
        finished = late.unwrap()
        if finished.paused:
            paused[late.tag] = finished.paused
        else:
            done[late.tag] = finished
            breach = breach or finished.breach
    ended = done.keys() | paused.keys()
    return FanOutResult(
        finished=tuple((branches[i].name, done[i].result) for i in sorted(done)),
        breached=frozenset(branches[i].name for i in done if done[i].breach is not None),
        cancelled=tuple(branches[i].name for i in range(started) if i not in ended),
        not_started=tuple(branch.name for branch in branches[started:]),
        breach=breach,
        stop_reason=stop_reason,
        trigger=trigger,
        paused=tuple(path for i in sorted(paused) for path in paused[i]),
    )


async def _start(
    supervisor: Supervisor,
    branches: Sequence[Branch],
    index: int,
    inbox: ReplyInbox[int, StepDone],
    services: RunServices,
    path: str,
) -> None:
    branch = branches[index]
    child: ActorRef[Execute] = supervisor.spawn(
        branch.name,
        functools.partial(_dispatch.body_actor, branch.pipeline, branch.name, services),
    )
    await child.ask_into(Execute(branch.data, branch.context), inbox, index, sender=path)
