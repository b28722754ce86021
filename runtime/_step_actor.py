"""What every step's actor does around its own work: replay, journal, stop.

A step actor runs its step once for the one :class:`Execute` it gets and
then stops. Before running it asks the run's journal: a step that
completed before (in an earlier process, before a pause or a crash) is
replayed from its record instead. After running, its completion record
is stored before the parent hears the outcome. A paused step is not
complete, so it gets no record and runs again on resume.
"""

from __future__ import annotations

import trio
from trioflow.actors import Actor, TraceEvent, TraceKind

from ._messages import Execute, StepDone
from ._services import RunServices


class StepActor(Actor[Execute]):
    """Base class of the actors that run steps; subclasses implement :meth:`execute`."""

    def __init__(self, services: RunServices) -> None:
        self._services = services

    async def receive(self, message: Execute) -> StepDone:
        self.stop()
        journal = self._services.journal
        replayed = journal.replay(self.path)
        if replayed is not None:
            self._services.trace.record(
                TraceEvent(TraceKind.NOTE, self.path, trio.current_time(), "replayed")
            )
            return replayed
        done = await self.execute(message)
        if done.paused:
            return done
        # The step has finished: its record is written and its parent told even if
        # a cancellation arrives now (a store's record_step finishes regardless).
        return await journal.record(done)

    async def execute(self, message: Execute) -> StepDone:
        raise NotImplementedError
