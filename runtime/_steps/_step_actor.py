"""What every step's actor does around its own work: restore, journal, stop.

A step actor runs its step once for the one :class:`Execute` it gets and
then stops. Before running it asks the run's journal: a step that
completed before (in an earlier process, before a pause or a crash) is
restored from its record instead (a ``restored`` note says so). After running, its completion record
is stored before the parent hears the outcome. A paused step is not
complete, so it gets no record and runs again on resume.

When it has finished, the actor notes its step's outcome in the trace
(``outcome``: ``ok``, ``failed``, ``limit`` or ``paused``): the actor
itself exits ``ok`` whether its step succeeded or not, and a live view of
the run (the command line's progress) must say which.
"""

from __future__ import annotations

import enum

from trioflow.actors import Actor

from .._notes import NoteKind, note
from .._services import RunServices
from ._messages import Execute, StepDone


class StepOutcome(enum.StrEnum):
    """How a step that ran ended (its ``outcome`` note's detail)."""

    OK = "ok"
    FAILED = "failed"
    #: A usage limit stopped it: a call was refused, or went over the limit.
    LIMIT = "limit"
    #: It waits for human input (itself, or a step beneath it).
    PAUSED = "paused"


def outcome_of(done: StepDone) -> StepOutcome:
    if done.paused:
        return StepOutcome.PAUSED
    if done.breach is not None:
        return StepOutcome.LIMIT
    return StepOutcome.OK if done.result.success else StepOutcome.FAILED


class StepActor(Actor[Execute]):
    """Base class of the actors that run steps; subclasses implement :meth:`execute`."""

    def __init__(self, services: RunServices) -> None:
        self._services = services

    async def receive(self, message: Execute) -> StepDone:
        self.stop()
        journal = self._services.journal
        restored = journal.restore(self.path)
        if restored is not None:
            self._services.trace.record(note(NoteKind.RESTORED, self.path))
            return restored
        done = await self.execute(message)
        if not done.paused:
            # The step has finished: its record is written and its parent told even if
            # a cancellation arrives now (a store's record_step finishes regardless).
            done = await journal.record(done)
        self._services.trace.record(note(NoteKind.OUTCOME, self.path, outcome_of(done)))
        return done

    async def execute(self, message: Execute) -> StepDone:
        raise NotImplementedError
