"""Draft, critique, revise: an essay pipeline with a validator and a fallback.

What it shows:

* three model calls in sequence (FakeModel: realistic latency, tokens and
  cost, offline and deterministic);
* a validator that rejects the first revision, whose feedback is added to
  the second attempt's prompt (the retry policy), so ``revise`` takes
  exactly two attempts;
* a step whose model is overloaded on every attempt and falls back to a
  backup model: the result keeps the original error, and its attempts and
  cost add up over everything that ran;
* a context the steps update with patches (the critique notes).

Run it::

    trioflow run examples/draft_critique_revise.py:pipeline --input "structured concurrency"
    python examples/draft_critique_revise.py
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from trioflow.runtime import (
    AgentStep,
    AppendTo,
    BaseContext,
    RetryPolicy,
    SetField,
    ValidationResult,
    WithPatch,
    run_sync,
    step,
)
from trioflow.runtime.agents import FakeModel

FEEDBACK_MARK = "Feedback on the previous attempt"


class EssayContext(BaseContext):
    """What the pipeline remembers besides each step's output."""

    draft: str = ""
    notes: list[str] = Field(default_factory=list)


writer = FakeModel(
    "writer-large",
    respond=lambda topic: f"A short essay on {topic}: it matters because tasks end together.",
    seed=7,
)
critic = FakeModel("critic-small", respond=lambda draft: "Too short; add a conclusion.", seed=7)


def _revise(prompt: str) -> str:
    draft = prompt.split("\n\n")[0]
    if FEEDBACK_MARK in prompt:
        return f"{draft} In conclusion, structure beats callbacks."
    return f"{draft} (revised)"


editor = FakeModel("editor-large", respond=_revise, seed=7)
backup = FakeModel(
    "backup-small", respond=lambda text: f"{text.split(chr(10))[0]} [polished]", seed=7
)


class OverloadedModel:
    """A model endpoint that is down: every call fails, as a 503 would."""

    async def run(self, data: Any, *, context: Any, resources: Any) -> Any:
        raise RuntimeError("503 Service Unavailable: model 'polisher-xl' is overloaded")


def has_conclusion(essay: str, context: Any) -> ValidationResult:
    """The essay must end with a conclusion."""
    if "In conclusion" in essay:
        return ValidationResult.ok()
    return ValidationResult.fail("the essay has no conclusion; add one starting 'In conclusion'")


@step(output_type=str)
async def keep_draft(essay: str) -> WithPatch:
    """Remember the draft in the context; pass it on to the critic."""
    return WithPatch(essay, [SetField("draft", essay)])


@step(output_type=str)
async def revision_prompt(critique: str, *, context: EssayContext) -> WithPatch:
    """Keep the critique as a note; ask the editor to revise the draft."""
    prompt = f"{context.draft}\n\nRevise it. Critique: {critique}"
    return WithPatch(prompt, [AppendTo("notes", critique)])


draft = AgentStep("draft", writer, input_type=str, output_type=str)
critique = AgentStep("critique", critic, input_type=str, output_type=str)
revise = AgentStep(
    "revise",
    editor,
    input_type=str,
    output_type=str,
    validators=[has_conclusion],
    retry=RetryPolicy(max_attempts=3),
)
polish = AgentStep(
    "polish",
    OverloadedModel(),
    input_type=str,
    output_type=str,
    fallback=AgentStep("polish_backup", backup, input_type=str, output_type=str),
)

pipeline = (
    (draft >> keep_draft >> critique >> revision_prompt >> revise >> polish)
    .named("essay")
    .with_context(EssayContext)
)


if __name__ == "__main__":
    result = run_sync(pipeline, "structured concurrency")
    for record in result.step_history:
        print(f"{record.path:28} attempts={record.attempts} cost={record.usage}")
    print("output:", result.output)
    print("notes:", result.context.notes)
    print(f"total: {result.usage}")
