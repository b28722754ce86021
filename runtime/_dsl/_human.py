"""Human input: a step that pauses the run until a person answers.

``Step.human_in_the_loop(name, message, input_schema)`` journals a pause
(its path, the message and the input's JSON schema); the run ends with
status ``paused`` and the process may exit. ``rt.resume(run_id, answer)``
validates the answer against the schema, records it in the context's
``hitl_history`` and goes on without re-running any completed step.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pydantic

from .._errors import TrioflowError
from ._agent_step import validate_step_name
from ._step import Step


class HumanInputInvalid(TrioflowError):
    """A resume answer does not fit the pause's input schema; the run stays paused."""


class HumanInteraction(pydantic.BaseModel):
    """One answered pause, as the context's ``hitl_history`` records it.

    ``answered_at`` (UTC) is when the resume that answered it was called:
    it keeps ``hitl_history`` in the order the answers were given (see
    :class:`~trioflow.runtime.BaseContext`).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    path: str
    message: str
    answer: Any
    answered_at: datetime.datetime | None = None


@attrs.frozen(eq=False)
class HumanStep(Step):
    """Waits for a person's answer, validated against ``input_schema`` (any type pydantic knows)."""

    name: str = attrs.field(validator=validate_step_name)
    message: str
    input_schema: Any = Any
    input_type: Any = Any

    @property
    def output_type(self) -> Any:
        return self.input_schema

    def adapter(self) -> pydantic.TypeAdapter[Any]:
        return pydantic.TypeAdapter(self.input_schema)

    def json_schema(self) -> dict[str, Any]:
        """The answer's JSON schema, shown to whoever answers."""
        return self.adapter().json_schema()

    def validate(self, answer: Any, *, path: str) -> Any:
        """The answer as the schema's type; :class:`HumanInputInvalid` if it does not fit."""
        try:
            return self.adapter().validate_python(answer)
        except pydantic.ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the answer"
            raise HumanInputInvalid(
                f"the answer for {path!r} does not fit its schema: {where}: {problem['msg']} "
                f"(got {answer!r:.80}); the run stays paused"
            ) from None


def human_in_the_loop(name: str, message: str, input_schema: Any = Any) -> HumanStep:
    """A step that pauses the run for a person's answer; see the module docstring."""
    return HumanStep(name, message, input_schema)
