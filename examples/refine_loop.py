"""A refine loop: a model improves a draft until it is good enough.

What it shows:

* ``Step.loop_until``: each iteration sees the context the previous one
  left (the draft's ``version`` goes 1, 2, 3) and the exit condition reads
  both the output and the context;
* a validator inside the loop body: the editor forgets its closing line on
  a first attempt, the validator's feedback goes into the retry, and the
  second attempt passes;
* the loop's iterations as child actors at ``main/1:refine/loop[1]``,
  ``loop[2]``, ... (see ``trioflow runs show RUN``).

Run it::

    python examples/refine_loop.py
    trioflow run examples/refine_loop.py:pipeline --input "structured concurrency"
"""

from __future__ import annotations

from typing import Any

from trioflow.runtime import (
    AddTo,
    AgentStep,
    BaseContext,
    RetryPolicy,
    Step,
    ValidationResult,
    WithPatch,
    run_sync,
    step,
)
from trioflow.runtime.agents import FakeModel

CLOSING = "Done."


class Draft(BaseContext):
    version: int = 0


def _edit(prompt: str) -> str:
    """The editor adds a sentence; without feedback it forgets the closing line."""
    text = prompt.split("\n\n")[0].removesuffix(f" {CLOSING}")
    improved = f"{text} Another detail."
    return f"{improved} {CLOSING}" if "Feedback" in prompt else improved


def closes_properly(text: str, context: Any) -> ValidationResult:
    if text.endswith(CLOSING):
        return ValidationResult.ok()
    return ValidationResult.fail(f"end the draft with {CLOSING!r}")


@step
async def outline(topic: str) -> str:
    return f"On {topic}."


edit = AgentStep(
    "edit",
    FakeModel("editor", respond=_edit, seed=3, latency_s=(0.01, 0.03)),
    input_type=str,
    output_type=str,
    validators=[closes_properly],
    retry=RetryPolicy(max_attempts=2),
)


@step(output_type=str)
async def count_version(text: str) -> WithPatch:
    return WithPatch(text, [AddTo("version", 1)])


def good_enough(text: str, context: Draft) -> bool:
    return context.version >= 3


pipeline = (
    outline >> Step.loop_until("refine", edit >> count_version, good_enough, max_loops=5)
).with_context(Draft)


if __name__ == "__main__":
    result = run_sync(pipeline, "structured concurrency")
    loop = result.step("refine")
    print(f"status: {result.status.value}")
    print(f"iterations: {loop.metadata['iterations']} (exit: {loop.metadata['exit_reason']})")
    for iteration in loop.step_history:
        print(f"  {iteration.path}: edit attempts={iteration.step_history[0].attempts}")
    print(f"version: {result.context.version}")
    print(f"output: {result.output}")
    print(f"total: {result.usage}")
