"""AnthropicChat against a fake Messages API on 127.0.0.1: replies, structured output through a
forced tool, cache tokens and their cost, failures, the key, strict budgets."""

from __future__ import annotations

from decimal import Decimal

import pydantic_core
import pytest
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentOutputInvalid,
    AgentStep,
    BaseContext,
    ConfigurationError,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
)
from trioflow.runtime.agents import AnthropicChat, ModelCallFailed, ModelRequestRejected
from trioflow.runtime.lowlevel import append_feedback

from tests.models.conftest import ANTHROPIC_KEY
from tests.models.fake_anthropic import FakeAnthropic, Reply, serving
from tests.models.test_openai_agent import Answer

#: A dated snapshot: the price table prices it as claude-haiku-4-5.
MODEL = "claude-haiku-4-5-20251001"
QUESTION = "Why do nurseries help?"
SECRET = "sk-ant-api03-SECRET-7d41c0a9e3"


def claude(fake: FakeAnthropic, **options: object) -> AnthropicChat:
    options.setdefault("base_url", fake.base_url)
    options.setdefault("api_key", ANTHROPIC_KEY)
    return AnthropicChat(MODEL, **options)  # type: ignore[arg-type]


def haiku(uncached: int, output: int, *, read: int = 0, written: int = 0) -> Decimal:
    """claude-haiku-4-5: $1 in, $0.10 cache read, $1.25 cache write, $5 out per million."""
    spent = uncached * 1 + read * Decimal("0.1") + written * Decimal("1.25") + output * 5
    return spent / 1_000_000


# What is sent and what comes back.


async def test_plain_text_round_trip(fake_anthropic: FakeAnthropic, rt: Runtime) -> None:
    fake_anthropic.script(Reply("They keep tasks together.", input_tokens=1200, output_tokens=300))
    agent = claude(fake_anthropic, system_prompt="You explain.", temperature=0.5)

    result = await rt.run(AgentStep("say", agent, input_type=str, output_type=str), QUESTION)

    assert result.output == "They keep tasks together."
    assert result.usage == Usage(Decimal("0.0027"), 1200, 300)
    [request] = fake_anthropic.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": QUESTION}],
        "system": "You explain.",
        "temperature": 0.5,
    }


async def test_structured_output_through_a_forced_tool(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    fake_anthropic.script(Reply(tool_input={"title": "Nurseries", "score": 9}))
    agent = claude(fake_anthropic, output_type=Answer, max_tokens=200)

    result = await rt.run(AgentStep("answer", agent, output_type=Answer), QUESTION)

    assert result.output == Answer(title="Nurseries", score=9)
    [request] = fake_anthropic.requests
    assert request.body == {
        "model": MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [
            {
                "name": "Answer",
                "description": "Give your answer as this tool's input.",
                "input_schema": Answer.model_json_schema(),
            }
        ],
        "tool_choice": {"type": "tool", "name": "Answer"},
    }


async def test_a_tool_input_that_does_not_validate_is_retried_with_feedback(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    fake_anthropic.script(
        Reply(tool_input={"title": "Nurseries"}, input_tokens=40, output_tokens=9),
        Reply(tool_input={"title": "Nurseries", "score": 9}, input_tokens=70, output_tokens=12),
    )
    agent = claude(fake_anthropic, output_type=Answer)

    result = await rt.run(AgentStep("answer", agent, output_type=Answer), QUESTION)

    assert result.output == Answer(title="Nurseries", score=9)
    assert result.step("answer").attempts == 2
    first, second = fake_anthropic.requests
    assert first.user_message == QUESTION
    assert second.user_message == append_feedback(
        QUESTION, f"the reply of model '{MODEL}' is not a valid Answer: score: Field required"
    )
    # The rejected reply is paid for too.
    assert result.usage == Usage(haiku(40, 9) + haiku(70, 12), 110, 21)


async def test_a_refusal_is_a_validation_failure_carrying_its_cost(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(Reply("I can't help with that.", stop_reason="refusal"))

    with pytest.raises(AgentOutputInvalid) as caught:
        await claude(fake_anthropic).run(QUESTION, context=BaseContext(), resources=None)

    assert str(caught.value) == f"model '{MODEL}' refused: I can't help with that."
    assert caught.value.usage == Usage(haiku(10, 5), 10, 5)


# Prompt caching.


async def test_cache_tokens_are_counted_and_priced_at_the_cache_prices(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    fake_anthropic.script(
        Reply("a", input_tokens=50, cache_creation_input_tokens=2000, output_tokens=10),
        Reply("b", input_tokens=50, cache_read_input_tokens=2000, output_tokens=10),
    )
    agent = claude(fake_anthropic, system_prompt="Long shared instructions.", cache_prompt=True)

    wrote = await rt.run(AgentStep("say", agent), QUESTION)
    read = await rt.run(AgentStep("say", agent), QUESTION)

    # The whole prompt is the input; each part at its own price.
    assert wrote.usage == Usage(haiku(50, 10, written=2000), 2050, 10)
    assert wrote.usage.cost_usd == Decimal("0.0026")
    assert read.usage == Usage(haiku(50, 10, read=2000), 2050, 10)
    assert read.usage.cost_usd == Decimal("0.0003")
    assert fake_anthropic.requests[0].body["system"] == [
        {
            "type": "text",
            "text": "Long shared instructions.",
            "cache_control": {"type": "ephemeral"},
        }
    ]


# Failures.


async def test_429_waits_for_retry_after_then_retries(
    fake_anthropic: FakeAnthropic, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    fake_anthropic.script(
        Reply(status=429, error="Rate limit exceeded", headers={"retry-after": "1"}),
        Reply("later"),
    )

    result = await rt.run(AgentStep("say", claude(fake_anthropic)), QUESTION)

    assert result.output == "later"
    assert result.step("say").attempts == 2
    first, second = fake_anthropic.requests
    assert second.at - first.at >= 1.0
    notes = [e.detail for e in await trioflow_store.trace_of(result.run_id) if e.label == "retry"]
    assert notes == [
        f"attempt 1 agent_error: ModelCallFailed: model '{MODEL}' at "
        f"{fake_anthropic.base_url}/v1/messages: HTTP 429 Too Many Requests: Rate limit "
        "exceeded (waited 1s as Retry-After asked)"
    ]


async def test_overloaded_529_is_retried(
    fake_anthropic: FakeAnthropic, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    fake_anthropic.script(Reply(status=529, error="Overloaded"), Reply("fine"))

    result = await rt.run(AgentStep("say", claude(fake_anthropic)), QUESTION)

    assert result.output == "fine"
    assert result.step("say").attempts == 2
    notes = [e.detail for e in await trioflow_store.trace_of(result.run_id) if e.label == "retry"]
    assert notes == [
        f"attempt 1 agent_error: ModelCallFailed: model '{MODEL}' at "
        f"{fake_anthropic.base_url}/v1/messages: HTTP 529: Overloaded"
    ]


async def test_an_invalid_request_is_rejected_as_configuration(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(Reply(status=400, error="max_tokens: must be at most 8192"))

    with pytest.raises(ModelRequestRejected) as caught:
        await claude(fake_anthropic).run(QUESTION, context=BaseContext(), resources=None)

    assert (caught.value.status, str(caught.value)) == (
        400,
        f"model '{MODEL}' at {fake_anthropic.base_url}/v1/messages: HTTP 400 Bad Request: "
        "max_tokens: must be at most 8192",
    )


# The key.


async def test_a_key_echoed_in_an_error_is_redacted(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    step = AgentStep("say", claude(fake_anthropic, api_key=SECRET), retry=RetryPolicy(3))

    result = await rt.run(step, QUESTION)

    assert result.error == (
        f"step 'main/0:say' failed (configuration): model '{MODEL}' at "
        f"{fake_anthropic.base_url}/v1/messages: HTTP 401 Unauthorized: "
        "invalid x-api-key: [api key]"
    )
    assert fake_anthropic.requests[0].headers["x-api-key"] == SECRET
    assert len(fake_anthropic.requests) == 1


def test_the_environment_key_is_not_sent_to_another_host(
    fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)

    with pytest.raises(ConfigurationError) as caught:
        AnthropicChat(MODEL, base_url=fake_anthropic.base_url)

    assert str(caught.value) == (
        f"AnthropicChat('{MODEL}'): no API key for {fake_anthropic.base_url}: "
        "$ANTHROPIC_API_KEY is sent only to https://api.anthropic.com; pass api_key=... or "
        "name the variable holding this host's key with api_key_env=... "
        "(requires_key=False for an endpoint that needs none)"
    )


async def test_a_host_without_keys_gets_no_key_header(
    monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with serving(api_key=None) as fake:
        agent = AnthropicChat(MODEL, base_url=fake.base_url, requires_key=False)
        result = await rt.run(AgentStep("say", agent), QUESTION)

    assert result.output == f"echo: {QUESTION}"
    [request] = fake.requests
    assert "x-api-key" not in request.headers


async def test_a_named_variable_gives_another_host_its_key(
    fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("HOUSE_KEY", ANTHROPIC_KEY)
    agent = AnthropicChat(MODEL, base_url=fake_anthropic.base_url, api_key_env="HOUSE_KEY")

    result = await rt.run(AgentStep("say", agent), QUESTION)

    assert result.status is RunStatus.COMPLETED
    assert fake_anthropic.requests[0].headers["x-api-key"] == ANTHROPIC_KEY


def test_the_official_endpoint_takes_the_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)

    agent = AnthropicChat(MODEL)

    assert agent.endpoint == "https://api.anthropic.com/v1/messages"
    assert agent.headers()["x-api-key"] == SECRET
    assert SECRET not in repr(agent)
    assert SECRET not in agent.fingerprint


# Budgets.


async def test_a_strict_budget_refuses_before_the_call(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    agent = claude(fake_anthropic, max_tokens=64)
    # "hello": 5 bytes, + 32 template tokens for the turn and 32 for the reply's header;
    # every prompt token at the dearest input price (a cache write, $1.25), 64 out at $5.
    assert agent.estimate_usage("hello") == Usage(Decimal("0.00040625"), 69, 64)

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(AgentStep("ask", agent), "hello", limits=UsageLimits(total_tokens=100))

    assert str(caught.value) == (
        "Token limit of 100 would be exceeded: step 'main/0:ask' needs up to "
        "$0.00040625, 133 tokens with $0.00 committed and $0.00 reserved"
    )
    assert fake_anthropic.requests == []


def test_the_estimate_counts_the_system_prompt_and_the_output_tool(
    fake_anthropic: FakeAnthropic,
) -> None:
    agent = claude(fake_anthropic, system_prompt="Grade it.", output_type=Answer, max_tokens=100)
    body = agent.request_body(QUESTION)
    tool = pydantic_core.to_json({"tools": body["tools"], "tool_choice": body["tool_choice"]})
    # The user turn and the system prompt byte for byte, a template allowance for each and
    # for the reply's header, and the tool definition as the JSON the API renders.
    prompt = len(QUESTION) + len("Grade it.") + 3 * 32 + len(tool)

    assert agent.estimate_usage(QUESTION) == Usage(
        (prompt * Decimal("1.25") + 100 * 5) / 1_000_000, prompt, 100
    )


async def test_an_unpriced_model_under_a_cost_limit_is_refused(
    fake_anthropic: FakeAnthropic, rt: Runtime
) -> None:
    agent = AnthropicChat("house-claude", base_url=fake_anthropic.base_url, api_key="k")

    result = await rt.run(
        AgentStep("ask", agent), "hello", limits=UsageLimits(total_cost_usd=Decimal("0.01"))
    )

    assert result.error == (
        "step 'main/0:ask' failed (configuration): model 'house-claude' has no price in the "
        "agent's price table, so its cost cannot be counted against a usage limit: add it "
        "with prices=DEFAULT_PRICES.with_prices({'house-claude': (input, output)}) in dollars "
        "per million tokens (0 for a free model)"
    )
    assert fake_anthropic.requests == []


# Construction.


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"temperature": 1.5}, "temperature must be between 0 and 1, got 1.5"),
        ({"max_tokens": None}, "max_tokens is required by the Messages API, got None"),
        ({"options": {"system": "x"}}, "options may not set system (the agent sets them)"),
        (
            {"options": {"tools": [], "tool_choice": {}}},
            "options may not set tool_choice, tools (the agent sets them)",
        ),
        ({"cache_prompt": True}, "cache_prompt=True caches the system prompt, and there is none"),
    ],
)
def test_construction_checks(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AnthropicChat("m", api_key="k", **options)  # type: ignore[arg-type]

    assert str(caught.value) == f"AnthropicChat('m'): {problem}"


# Replies that are not what was asked for (read without a server: the body is given).


def test_a_body_that_is_not_a_message_is_a_retried_failure(fake_anthropic: FakeAnthropic) -> None:
    agent = claude(fake_anthropic)

    with pytest.raises(ModelCallFailed) as caught:
        agent.parse_reply({"type": "message"}, agent.request_body(QUESTION))

    assert str(caught.value) == (
        f"model '{MODEL}' at {fake_anthropic.base_url}/v1/messages: the reply is not a "
        "message (no content list)"
    )
    assert caught.value.status == 200


def test_a_structured_reply_without_the_tool_call_is_a_validation_failure(
    fake_anthropic: FakeAnthropic,
) -> None:
    agent = claude(fake_anthropic, output_type=Answer)
    reply = {"content": [{"type": "text", "text": "Nurseries, 9"}], "usage": _USAGE}

    with pytest.raises(AgentOutputInvalid) as caught:
        agent.parse_reply(reply, agent.request_body(QUESTION))

    assert str(caught.value) == (
        f"the reply of model '{MODEL}' did not call its output tool 'Answer'"
    )
    assert caught.value.usage == Usage(haiku(7, 3), 7, 3)


def test_a_tool_input_that_is_not_an_object_names_the_problem(
    fake_anthropic: FakeAnthropic,
) -> None:
    agent = claude(fake_anthropic, output_type=Answer)
    tool_use = {"type": "tool_use", "id": "t", "name": "Answer", "input": ["Nurseries", 9]}

    with pytest.raises(AgentOutputInvalid) as caught:
        agent.parse_reply({"content": [tool_use], "usage": _USAGE}, agent.request_body(QUESTION))

    assert str(caught.value) == (
        f"the reply of model '{MODEL}' is not a valid Answer: Input should be a valid "
        "dictionary or instance of Answer"
    )


def test_a_text_reply_without_text_is_a_validation_failure(
    fake_anthropic: FakeAnthropic,
) -> None:
    agent = claude(fake_anthropic)

    with pytest.raises(AgentOutputInvalid) as caught:
        agent.parse_reply({"content": [], "usage": _USAGE}, agent.request_body(QUESTION))

    assert str(caught.value) == f"the reply of model '{MODEL}' has no text"


def test_text_blocks_are_joined_and_missing_usage_is_counted(
    fake_anthropic: FakeAnthropic,
) -> None:
    agent = claude(fake_anthropic)
    blocks = [{"type": "text", "text": "Nurseries "}, {"type": "text", "text": "help."}]

    completion = agent.parse_reply({"content": blocks}, agent.request_body(QUESTION))

    # About four characters a token: the user turn as JSON (55 characters), the reply's
    # blocks as JSON (75 characters).
    assert completion.output == "Nurseries help."
    assert completion.usage == Usage(haiku(14, 19), 14, 19)


_USAGE = {"input_tokens": 7, "output_tokens": 3}
