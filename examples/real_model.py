"""A model agent with structured output: a real endpoint when one is set, FakeModel otherwise.

What it shows:

* ``OpenAIChat`` asking an OpenAI-compatible endpoint for JSON matching a
  pydantic model (``Review``); the reply is parsed and validated, and one
  that does not validate is retried with the problem as feedback;
* tokens from the endpoint's usage and cost from the price table, under a
  run budget that the governor enforces with the agent's estimate (the
  prompt's length and ``max_tokens``);
* the same pipeline offline: without ``OPENAI_API_KEY`` and
  ``OPENAI_BASE_URL`` it uses ``FakeModel`` (deterministic, no network).
  The first line it prints says which it used.

Run it::

    python examples/real_model.py "structured concurrency"
    OPENAI_API_KEY=sk-... python examples/real_model.py "structured concurrency"
    OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=llama3.2 \\
        python examples/real_model.py "structured concurrency"
    trioflow run examples/real_model.py:pipeline --input "structured concurrency"

``OPENAI_MODEL`` picks the model (default ``gpt-4o-mini``). ``OPENAI_API_KEY``
goes only to OpenAI's own endpoint: with ``OPENAI_BASE_URL`` pointing
elsewhere (a local server) it is not sent, even when set. An endpoint there
that needs a key gets the one in ``OPENAI_BASE_URL_KEY``; without it the
endpoint is taken for one that needs none, and a model the price table does
not know is priced at zero.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Literal

from pydantic import BaseModel
from trioflow.runtime import AgentStep, RetryPolicy, UsageLimits, run_sync, step
from trioflow.runtime.agents import DEFAULT_PRICES, Agent, FakeModel, OpenAIChat

#: The variable holding the key of the endpoint at ``OPENAI_BASE_URL``.
BASE_URL_KEY = "OPENAI_BASE_URL_KEY"

SYSTEM_PROMPT = (
    "You review technologies for a team's tech radar. Give a verdict (adopt, trial or "
    "hold), two or three strengths and two or three risks, each under twelve words."
)


class Review(BaseModel):
    """What the model must answer: the schema it is asked to match."""

    verdict: Literal["adopt", "trial", "hold"]
    strengths: list[str]
    risks: list[str]


def _offline_review(topic: str) -> Review:
    return Review(
        verdict="trial",
        strengths=[f"{topic} ties task lifetimes to scopes", "errors propagate, none are lost"],
        risks=["the team must learn nurseries", "some libraries assume asyncio"],
    )


def choose_model() -> tuple[Agent, str]:
    """The agent to call, and a line saying which it is."""
    key = os.environ.get("OPENAI_API_KEY")
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not key and not base_url:
        offline = FakeModel("fake-reviewer", respond=_offline_review, seed=3)
        said = "FakeModel (offline: set OPENAI_API_KEY or OPENAI_BASE_URL for a real model)"
        return offline, said
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    prices = DEFAULT_PRICES
    if model not in prices:
        prices = prices.with_prices({model: (0, 0)})
    options: dict[str, Any] = {}
    if base_url is not None:
        # Never OPENAI_API_KEY for another host: this endpoint's own key, if it needs one.
        options = {"base_url": base_url, "requires_key": False}
        if os.environ.get(BASE_URL_KEY):
            options.update(api_key_env=BASE_URL_KEY, requires_key=True)
    agent = OpenAIChat(
        model,
        system_prompt=SYSTEM_PROMPT,
        output_type=Review,
        prices=prices,
        temperature=0,
        max_tokens=400,
        timeout_s=60,
        **options,
    )
    return agent, f"OpenAIChat: model {model} at {agent.base_url}"


reviewer, USING = choose_model()

review = AgentStep(
    "review",
    reviewer,
    input_type=str,
    output_type=Review,
    retry=RetryPolicy(max_attempts=3, backoff_s=1.0),
)


@step
async def summarize(review: Review) -> str:
    """One line for the radar."""
    return f"{review.verdict.upper()}: {len(review.strengths)} strengths, {len(review.risks)} risks"


pipeline = (review >> summarize).named("tech_review")


if __name__ == "__main__":
    topic = sys.argv[1] if len(sys.argv) > 1 else "structured concurrency"
    print(f"using {USING}")
    result = run_sync(pipeline, topic, limits=UsageLimits(total_cost_usd="0.05"))
    if not result.success:
        print(f"failed: {result.error}")
        sys.exit(1)
    reviewed = result.step("review")
    print(f"review: attempts={reviewed.attempts} cost={reviewed.usage}")
    print(f"verdict: {reviewed.output.verdict}")
    for strength in reviewed.output.strengths:
        print(f"  + {strength}")
    for risk in reviewed.output.risks:
        print(f"  - {risk}")
    print(f"radar: {result.output}")
    print(f"total: {result.usage} (budget $0.05)")
