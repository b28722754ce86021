"""Human approval: the run pauses for a person, and goes on when they answer.

What it shows:

* ``Step.human_in_the_loop``: the run stops with status ``paused`` (the
  command exits with code 5 and prints the run id); the process can exit;
* ``trioflow resume RUN --input ...`` in another process: the answer is
  validated against the schema (a bad answer is refused and the run stays
  paused), recorded in the context's ``hitl_history``, and the run goes on
  without re-running the draft;
* the journal: ``trioflow runs show RUN`` lists the completed steps and the
  answered pause.

Run it (two commands, two processes)::

    trioflow run examples/human_approval.py:pipeline --input "launch notes"
    trioflow resume RUN --input '{"approved": true, "note": "ship it"}'
"""

from __future__ import annotations

import pydantic
from trioflow.runtime import AgentStep, BaseContext, Step, step
from trioflow.runtime.agents import FakeModel


class Approval(pydantic.BaseModel):
    """What the reviewer answers."""

    approved: bool
    note: str = ""


class Review(BaseContext):
    pass


writer = FakeModel("writer", respond=lambda topic: f"Draft of the {topic}.", seed=21)


@step
async def publish(answer: Approval, *, context: Review) -> str:
    if not answer.approved:
        return f"not published ({answer.note or 'no reason given'})"
    reviews = len(context.hitl_history)
    return f"published after {reviews} review(s): {answer.note}"


pipeline = (
    (
        AgentStep("draft", writer, input_type=str, output_type=str)
        >> Step.human_in_the_loop("approve", "Publish this draft?", Approval)
        >> publish
    )
    .named("approval")
    .with_context(Review)
)
