"""A batch job over many items, with a budget that stops it.

What it shows:

* ``Step.map_over``: one model call per item, at most four at once, the
  results in item order;
* a run budget enforced by the governor across concurrent items: each
  model states an upper bound for its call and the governor reserves it;
  while the bounds of the calls in flight crowd the budget, the next call
  waits for them to settle (concurrency is throttled, not failed); the
  first call that could exceed the budget even alone is refused before it
  is paid for, the running items are cancelled at once, and the items not
  yet started never start;
* exact totals: what the finished items cost, to the last digit.

Run it::

    python examples/batch_map.py
    trioflow run examples/batch_map.py:pipeline --input '["a", "b", "c"]' --max-cost 0.005
"""

from __future__ import annotations

import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import AgentStep, Step, UsageLimitExceeded, UsageLimits, open_runtime
from trioflow.runtime.agents import FakeModel

BUDGET_USD = "0.005"

tagger = FakeModel(
    "tagger",
    respond=lambda text: f"tags for {text}",
    seed=5,
    input_price_per_mtok="10",
    output_price_per_mtok="30",
    max_output_tokens=100,
    latency_s=(0.01, 0.05),
)

pipeline = Step.map_over(
    "tag_all", AgentStep("tag", tagger, input_type=str, output_type=str), max_concurrency=4
)

ITEMS = [f"document {number}" for number in range(20)]


async def main() -> None:
    budget = UsageLimits(total_cost_usd=BUDGET_USD)
    async with open_runtime(store=InMemoryStore(), limits=budget) as rt:
        try:
            result = await rt.run(pipeline, ITEMS)
        except UsageLimitExceeded as breach:
            assert breach.result is not None  # the governor always attaches the run's result
            mapped = breach.result.step("tag_all")
            print(f"stopped: {breach.message.split(':')[0]}")
            print(f"finished items: {sum(1 for entry in mapped.step_history if entry.success)}")
            print(f"never started: {len(mapped.metadata.get('not_started', []))}")
            print(f"total spent: {breach.result.usage} (budget ${BUDGET_USD})")
        else:
            print(f"all {len(result.output)} items tagged for {result.usage}")


if __name__ == "__main__":
    trio.run(main)
