"""Model agents under budgets: a strict budget holds against a real tokenizer's worst case,
an endpoint that reports more than was reserved is recorded as it reported, and a model
without a price is refused exactly where a cost limit applies."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    ConfigurationError,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
)
from trioflow.runtime._money import format_usd
from trioflow.runtime.agents import DEFAULT_PRICES, OpenAIChat

from tests.models.fake_openai import FakeOpenAI, Reply, serving, worst_case_prompt_tokens

TEMPLATE_TOKENS = 32  # the agent's default allowance, which the worst case below uses in full

#: Text a tokenizer finds hard: astral characters (4 UTF-8 bytes), emoji, combining marks.
HARD_TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.characters(categories=["Mn", "Me"]),
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, codec="utf-8"),
    ),
    max_size=40,
)


def gpt_4o_mini(input_tokens: int, output_tokens: int) -> Usage:
    cost = DEFAULT_PRICES.cost("gpt-4o-mini", input_tokens, output_tokens)
    assert cost is not None  # narrows Optional: gpt-4o-mini is priced
    return Usage(cost, input_tokens, output_tokens)


async def _run(step: AgentStep, data: str, limits: UsageLimits) -> PipelineResult:
    async with open_runtime(store=InMemoryStore()) as rt:
        try:
            return await rt.run(step, data, limits=limits)
        except UsageLimitExceeded as breach:
            assert isinstance(breach.result, PipelineResult)  # noqa: PT017 (the run's result)
            return breach.result


def _branches(fake: FakeOpenAI, systems: list[str], max_tokens: int) -> AgentStep:
    agents = {
        f"b{i}": AgentStep(
            f"s{i}",
            OpenAIChat(
                "gpt-4o-mini",
                base_url=fake.base_url,
                api_key="sk-test",
                system_prompt=system or None,
                max_tokens=max_tokens,
            ),
            retry=RetryPolicy(max_attempts=1),
        )
        for i, system in enumerate(systems)
    }
    return Step.parallel("par", agents)


@given(
    systems=st.lists(HARD_TEXT, min_size=1, max_size=3),
    user=HARD_TEXT,
    max_tokens=st.integers(1, 64),
    token_limit=st.none() | st.integers(0, 1_200),
    cost_limit=st.none() | st.decimals(0, "0.0004", places=7),
)
@settings(max_examples=60, deadline=None, database=None)
def test_a_strict_budget_never_overshoots_a_byte_level_tokenizer(
    systems: list[str],
    user: str,
    max_tokens: int,
    token_limit: int | None,
    cost_limit: Decimal | None,
) -> None:
    limits = UsageLimits(total_cost_usd=cost_limit, total_tokens=token_limit)
    with serving(api_key="sk-test") as fake:
        fake.script(*[Reply("x", worst_case_template_tokens=TEMPLATE_TOKENS)] * len(systems))
        result = trio.run(_run, _branches(fake, systems, max_tokens), user, limits)

    note(f"result: {result.status} {result.usage} {result.error}")
    # What the endpoint reported: the worst case of every call it answered.
    spent = [
        gpt_4o_mini(worst_case_prompt_tokens(r.body["messages"], TEMPLATE_TOKENS), max_tokens)
        for r in fake.requests
    ]
    assert result.usage == sum(spent, Usage(0))
    if token_limit is not None:
        assert result.usage.total_tokens <= token_limit
    if cost_limit is not None:
        assert result.usage.cost_usd <= cost_limit
    # Nothing is refused that fits: with room for every call's worst case, all run.
    every_call = [
        gpt_4o_mini(
            worst_case_prompt_tokens(
                [{"content": system} for system in [s] if system] + [{"content": user}],
                TEMPLATE_TOKENS,
            ),
            max_tokens,
        )
        for s in systems
    ]
    fits = limits.exceeded_by(sum(every_call, Usage(0))) is None
    event("all fit" if fits else "some refused" if len(spent) < len(systems) else "refused none")
    if fits:
        assert (result.status, len(fake.requests)) == (RunStatus.COMPLETED, len(systems))
    else:
        assert result.status is RunStatus.USAGE_LIMIT
        assert result.error is not None  # narrows Optional; its text is checked next
        limit, _, rest = result.error.partition(" would be exceeded: step 'main/0:par/b")
        named = [f"Token limit of {token_limit}"]
        if cost_limit is not None:
            named.append(f"Cost limit of {format_usd(cost_limit)}")
        assert limit in named
        assert rest != ""


def test_the_example_of_the_issue_now_holds(fake_openai: FakeOpenAI) -> None:
    # 416 characters: about 104 tokens by the old estimate; a byte-level tokenizer may count
    # 416 of them, so a 110-token strict limit refuses the call instead of paying 409+.
    # Reserved: 416 bytes + 32 template tokens for the message and 32 for the reply's
    # header, and 1 (max_tokens) of output.
    fake_openai.script(Reply("x", worst_case_template_tokens=TEMPLATE_TOKENS))
    agent = OpenAIChat(
        "gpt-4o-mini", base_url=fake_openai.base_url, api_key="sk-test-key", max_tokens=1
    )
    step = AgentStep("ask", agent, retry=RetryPolicy(max_attempts=1))

    result = trio.run(_run, step, "word " * 83 + "x", UsageLimits(total_tokens=110))

    assert result.status is RunStatus.USAGE_LIMIT
    assert result.error == (
        "Token limit of 110 would be exceeded: step 'main/0:ask' needs up to "
        "$0.0000726, 481 tokens with $0.00 committed and $0.00 reserved"
    )
    assert fake_openai.requests == []


async def test_max_tokens_none_is_unbounded_so_a_limit_refuses_it(fake_openai: FakeOpenAI) -> None:
    agent = OpenAIChat(
        "gpt-4o-mini", base_url=fake_openai.base_url, api_key="sk-test-key", max_tokens=None
    )
    async with open_runtime(store=InMemoryStore()) as rt:
        unlimited = await rt.run(AgentStep("ask", agent), "hello")
        limited = await rt.run(
            AgentStep("ask", agent), "hello", limits=UsageLimits(total_tokens=10_000)
        )

    assert unlimited.status is RunStatus.COMPLETED
    assert "max_tokens" not in fake_openai.requests[0].body
    assert limited.status is RunStatus.FAILED
    assert limited.error == (
        "step 'main/0:ask' failed (configuration): OpenAIChat('gpt-4o-mini') has "
        "max_tokens=None, so its reply has no upper bound to reserve under a usage limit: "
        "set max_tokens=..."
    )
    assert len(fake_openai.requests) == 1


def test_options_may_not_replace_max_tokens() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAIChat("m", api_key="k", options={"max_tokens": 100_000})

    assert str(caught.value) == (
        "OpenAIChat('m'): options may not set max_tokens (the agent sets them)"
    )


async def test_more_than_was_reserved_is_recorded_and_traced(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore
) -> None:
    # An endpoint whose count is beyond any byte-level bound (or that misreports).
    fake_openai.script(Reply("hi", prompt_tokens=5_000, completion_tokens=3))
    agent = OpenAIChat("gpt-4o-mini", base_url=fake_openai.base_url, api_key="sk-test-key")
    reserved = agent.estimate_usage("hello")

    async with open_runtime(store=trioflow_store) as rt:
        result = await rt.run(
            AgentStep("ask", agent), "hello", limits=UsageLimits(total_cost_usd=1)
        )
        trace = await trioflow_store.trace_of(result.run_id)

    assert reserved == gpt_4o_mini(5 + 2 * TEMPLATE_TOKENS, 1024)
    assert result.status is RunStatus.COMPLETED
    assert result.usage == gpt_4o_mini(5_000, 3)
    [excess] = [e for e in trace if e.label == "excess"]
    assert (excess.path, excess.peer) == ("governor", "main/0:ask")
    assert excess.detail == f"{gpt_4o_mini(5_000, 3)} spent, {reserved} reserved"


# --- A model the price table does not know -------------------------------------------------------

UNPRICED_ERROR = (
    "step 'main/0:ask' failed (configuration): model 'house-model' has no price in the "
    "agent's price table, so its cost cannot be counted against a usage limit: add it "
    "with prices=DEFAULT_PRICES.with_prices({'house-model': (input, output)}) in dollars "
    "per million tokens (0 for a free model)"
)


def _unpriced(fake: FakeOpenAI) -> OpenAIChat:
    return OpenAIChat("house-model", base_url=fake.base_url, api_key="sk-test-key")


@pytest.mark.parametrize(
    ("run_limits", "step_limits"),
    [
        (UsageLimits(total_cost_usd=1), None),
        (None, UsageLimits(total_cost_usd=1)),
        (UsageLimits(total_tokens=10_000), UsageLimits(total_cost_usd=1)),
    ],
    ids=["run-cost", "step-cost", "run-tokens-step-cost"],
)
@pytest.mark.parametrize("estimate", [None, Usage(Decimal("0.01"), 100, 100)], ids=["", "est"])
async def test_an_unpriced_model_under_a_cost_limit_is_refused_with_or_without_an_estimate(
    fake_openai: FakeOpenAI,
    run_limits: UsageLimits | None,
    step_limits: UsageLimits | None,
    estimate: Usage | None,
) -> None:
    step = AgentStep(
        "ask",
        _unpriced(fake_openai),
        usage_estimate=estimate,
        limits=step_limits,
        retry=RetryPolicy(max_attempts=3),
    )
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(step, "hello", limits=run_limits)

    assert (result.status, result.error) == (RunStatus.FAILED, UNPRICED_ERROR)
    assert result.step("ask").attempts == 1
    assert fake_openai.requests == []


@pytest.mark.parametrize("estimate", [None, Usage(0, 100, 100)], ids=["", "est"])
async def test_an_unpriced_model_under_a_token_limit_runs(
    fake_openai: FakeOpenAI, estimate: Usage | None
) -> None:
    fake_openai.script(Reply("hi", prompt_tokens=30, completion_tokens=2))
    step = AgentStep("ask", _unpriced(fake_openai), usage_estimate=estimate)
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(step, "hello", limits=UsageLimits(total_tokens=2_000))

    assert (result.status, result.output, result.usage) == (
        RunStatus.COMPLETED,
        "hi",
        Usage(0, 30, 2),
    )
