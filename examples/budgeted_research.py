"""A budgeted research pipeline that stops cleanly at its cost limit.

What it shows:

* a run-wide budget (``UsageLimits(total_cost_usd=...)``) enforced by the
  run's governor actor, with exact ``Decimal`` money;
* strict budgeting: each model states an upper bound for its call (from
  the prompt and ``max_output_tokens``); the governor reserves it before
  the call, and refuses the call that could go over. Here the fourth step
  is refused (``Cost limit of $0.015 would be exceeded``) before any money
  is spent on it: the run stops with that step last in its history and
  exact totals of what the first three cost. (An agent that gives no
  estimate is checked after its call instead: then the message is ``Cost
  limit of $0.015 exceeded`` and the breaching call is counted.)

Run it::

    python examples/budgeted_research.py
    trioflow run examples/budgeted_research.py:pipeline --input "trio nurseries" --max-cost 0.015

The command line exits with code 3 when a usage limit stops the run.
"""

from __future__ import annotations

import trio
from trioflow.runtime import AgentStep, UsageLimitExceeded, UsageLimits, open_runtime
from trioflow.runtime.agents import FakeModel

#: The budget of one run, in US dollars.
BUDGET_USD = "0.015"

# Each model call costs about a tenth of a cent at these (large-model) prices.
pricey = dict(
    input_price_per_mtok="15",
    output_price_per_mtok="75",
    max_output_tokens=64,
    latency_s=(0.02, 0.08),
)
planner = FakeModel(
    "planner", respond=lambda topic: f"Questions about {topic}: why, how, when?", **pricey
)
searcher = FakeModel("searcher", seed=1, **pricey)
summarizer = FakeModel("summarizer", seed=2, **pricey)
writer = FakeModel("writer", seed=3, **pricey)

pipeline = (
    AgentStep("plan", planner, input_type=str, output_type=str)
    >> AgentStep("search", searcher, input_type=str, output_type=str)
    >> AgentStep("summarize", summarizer, input_type=str, output_type=str)
    >> AgentStep("write_report", writer, input_type=str, output_type=str)
).named("research")


async def main() -> None:
    async with open_runtime(limits=UsageLimits(total_cost_usd=BUDGET_USD)) as runtime:
        try:
            result = await runtime.run(pipeline, "trio nurseries")
        except UsageLimitExceeded as breach:
            assert breach.result is not None  # the governor always attaches the run's result
            print(f"stopped: {breach}")
            for step in breach.result.step_history:
                print(f"  {step.path:24} {step.usage}")
            print(f"  total spent: {breach.result.usage} (budget ${BUDGET_USD})")
        else:
            print(f"finished within budget: {result.usage}")


if __name__ == "__main__":
    trio.run(main)
