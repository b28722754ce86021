"""Research fan-out: three researchers at once, their findings merged.

What it shows:

* ``Step.parallel``: three model-backed branches start from one context
  snapshot and run at once; the output maps branch name to answer in
  declaration order, whatever order they finished in;
* the context merge: each branch appends to ``findings`` (appends always
  compose) and sets its own key in ``sources`` (no conflict: no two
  branches write the same key); the supervisor merges in declaration
  order, so the merged context never depends on the schedule;
* a summarizer reading the merged context.

Run it::

    python examples/research_fanout.py
    trioflow run examples/research_fanout.py:pipeline --input "trio nurseries"
"""

from __future__ import annotations

from pydantic import Field
from trioflow.runtime import (
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    SetKey,
    Step,
    WithPatch,
    run_sync,
    step,
)
from trioflow.runtime.agents import FakeModel


class Research(BaseContext):
    findings: list[str] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict)


def researcher(name: str, angle: str, seed: int) -> AgentStep:
    model = FakeModel(f"{name}-model", respond=lambda q: f"{angle} of {q}", seed=seed)

    async def research(question: str) -> Completion:
        reply = await model.run(question, context=None, resources=None)
        finding = str(reply.output)
        patch = [AppendTo("findings", finding), SetKey("sources", name, model.name)]
        return Completion(WithPatch(finding, patch), reply.usage)

    return Step.from_callable(research, name=name, output_type=str)


fan_out = Step.parallel(
    "research",
    {
        "history": researcher("history", "the history", seed=1),
        "practice": researcher("practice", "the practice", seed=2),
        "pitfalls": researcher("pitfalls", "the pitfalls", seed=3),
    },
)


@step
async def summarize(answers: dict[str, str], *, context: Research) -> str:
    return f"{len(context.findings)} findings from {', '.join(sorted(context.sources))}"


pipeline = (fan_out >> summarize).named("research").with_context(Research)


if __name__ == "__main__":
    result = run_sync(pipeline, "trio nurseries")
    branches = result.step("research")
    print(f"status: {result.status.value}")
    print(f"branches: {[entry.path for entry in branches.step_history]}")
    print(f"findings: {result.context.findings}")
    print(f"sources: {result.context.sources}")
    print(f"output: {result.output}")
    print(f"total: {result.usage}")
