"""A router: a model picks which specialists answer.

What it shows:

* ``Step.router``: the router model's choice (a name or a list of names)
  runs as a parallel step; the output maps each chosen branch to its answer;
* an unknown choice is an error naming it and the choices (never dropped
  silently); an empty choice is a success with an empty mapping;
* the router's own call is a step at ``main/0:triage/router`` and counts
  in the totals.

Run it::

    python examples/router.py
    trioflow run examples/router.py:pipeline --input "integrate x squared, then write a haiku"
"""

from __future__ import annotations

import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import AgentStep, Step, open_runtime
from trioflow.runtime.agents import FakeModel


def choose(question: str) -> list[str]:
    """The router's reply: which specialists the question needs."""
    wanted = {"math": "integrate", "poetry": "haiku", "law": "contract"}
    return [name for name, word in wanted.items() if word in question]


router_model = FakeModel("router-small", respond=choose, seed=11, latency_s=(0.01, 0.02))


def specialist(name: str) -> AgentStep:
    model = FakeModel(f"{name}-model", respond=lambda q: f"{name} answer to: {q}", seed=12)
    return AgentStep(name, model, input_type=str, output_type=str)


pipeline = Step.router(
    "triage",
    router_model,
    {"math": specialist("math"), "poetry": specialist("poetry"), "law": specialist("law")},
)


async def main() -> None:
    async with open_runtime(store=InMemoryStore()) as rt:
        for question in ("integrate x squared, then write a haiku", "what is the weather?"):
            result = await rt.run(pipeline, question)
            chosen = result.step("triage").metadata["chosen"]
            print(f"{question!r}: chose {chosen}, {result.status.value}, {result.usage}")
            for name, answer in result.output.items():
                print(f"  {name}: {answer}")


if __name__ == "__main__":
    trio.run(main)
