"""The human-input step's actor: pause, or pass the recorded answer on."""

from __future__ import annotations

from .._dsl._context import AppendTo
from .._dsl._human import HumanInteraction, HumanStep
from .._notes import NoteKind, note
from .._results import StepResult
from .._services import RunServices
from ._messages import Execute, StepDone
from ._step_actor import StepActor


class HumanActor(StepActor):
    """Runs one :class:`HumanStep` once, then stops.

    With an answer recorded for its path (given to ``resume``), it outputs
    the answer and appends the interaction to ``hitl_history``; otherwise
    it journals a pause and reports it to its parent.
    """

    def __init__(self, spec: HumanStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        spec = self._spec
        journal = self._services.journal
        if self.path not in journal.answers:
            await journal.pause(self.path, spec.message, spec.json_schema())
            self._services.trace.record(note(NoteKind.PAUSE, self.path, spec.message))
            waiting = StepResult(
                spec.name, self.path, feedback=f"waiting for input: {spec.message}"
            )
            return StepDone(waiting, paused=(self.path,))
        answered = journal.answers[self.path]
        answer = answered.answer
        interaction = HumanInteraction(
            path=self.path, message=spec.message, answer=answer, answered_at=answered.answered_at
        )
        result = StepResult(
            spec.name,
            self.path,
            output=answer,
            success=True,
            attempts=1,
            patch=(AppendTo("hitl_history", interaction),),
        )
        return StepDone(result)
