"""OpenAIChat against a real HTTP server on 127.0.0.1: replies, usage, failures, retries."""

from __future__ import annotations

import socket
import time
from decimal import Decimal

import httpx
import pydantic
import pytest
import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentOutputInvalid,
    AgentStep,
    BaseContext,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    UsageLimits,
    open_runtime,
)
from trioflow.runtime.agents import DEFAULT_PRICES, ModelCallFailed, OpenAIChat
from trioflow.runtime.lowlevel import append_feedback

from tests.models.conftest import KEY
from tests.models.fake_openai import FakeOpenAI, Reply

MODEL = "gpt-4o-mini"
QUESTION = "Rate trio's structured concurrency"


class Answer(pydantic.BaseModel):
    title: str
    score: int


def chat(fake: FakeOpenAI, **options: object) -> OpenAIChat:
    options.setdefault("base_url", fake.base_url)
    options.setdefault("api_key", KEY)
    return OpenAIChat(MODEL, **options)  # type: ignore[arg-type]


def answer_step(agent: OpenAIChat, **options: object) -> AgentStep:
    return AgentStep("answer", agent, input_type=str, output_type=Answer, **options)  # type: ignore[arg-type]


def gpt_4o_mini_cost(input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * Decimal("0.15") + output_tokens * Decimal("0.60")) / 1_000_000


# Structured output.


async def test_structured_output_round_trip(fake_openai: FakeOpenAI, rt: Runtime) -> None:
    fake_openai.script(
        Reply('{"title": "Nurseries", "score": 9}', prompt_tokens=1200, completion_tokens=300)
    )
    agent = chat(fake_openai, system_prompt="You grade designs.", output_type=Answer)

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.status is RunStatus.COMPLETED
    assert result.output == Answer(title="Nurseries", score=9)
    step = result.step("answer")
    assert step.attempts == 1
    assert step.usage == Usage(gpt_4o_mini_cost(1200, 300), 1200, 300)
    assert step.usage.cost_usd == Decimal("0.00036")
    assert result.usage == step.usage
    [request] = fake_openai.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You grade designs."},
            {"role": "user", "content": QUESTION},
        ],
        "max_tokens": 1024,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Answer", "schema": Answer.model_json_schema()},
        },
    }


async def test_instructions_mode_puts_the_schema_in_the_system_prompt(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply('```json\n{"title": "Fenced", "score": 4}\n```'))
    agent = chat(
        fake_openai, system_prompt="Be brief.", output_type=Answer, schema_mode="instructions"
    )

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.output == Answer(title="Fenced", score=4)
    [request] = fake_openai.requests
    assert "response_format" not in request.body
    schema = (
        '{"properties":{"title":{"title":"Title","type":"string"},"score":{"title":"Score",'
        '"type":"integer"}},"required":["title","score"],"title":"Answer","type":"object"}'
    )
    assert request.system_message == (
        "Be brief.\n\nReply with one JSON object that matches this JSON schema, and nothing "
        f"else (no prose, no code fence):\n{schema}"
    )


async def test_plain_text_output_and_options(fake_openai: FakeOpenAI, rt: Runtime) -> None:
    fake_openai.script(
        Reply("Nurseries keep tasks together.", prompt_tokens=7, completion_tokens=6)
    )
    agent = chat(fake_openai, temperature=0.2, top_p=0.9, max_tokens=64, options={"seed": 3})

    result = await rt.run(AgentStep("say", agent, input_type=str, output_type=str), "Explain trio")

    assert result.output == "Nurseries keep tasks together."
    assert result.usage == Usage(gpt_4o_mini_cost(7, 6), 7, 6)
    assert fake_openai.requests[0].body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Explain trio"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 3,
    }


async def test_structured_input_is_sent_as_json(fake_openai: FakeOpenAI, rt: Runtime) -> None:
    agent = chat(fake_openai)

    result = await rt.run(AgentStep("say", agent), Answer(title="t", score=1))

    assert result.output == 'echo: {"title":"t","score":1}'


async def test_invalid_json_is_a_validation_failure_with_feedback(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(
        Reply("Sure! Here it is: {title: Nurseries}", prompt_tokens=40, completion_tokens=9),
        Reply('{"title": "Nurseries", "score": 9}', prompt_tokens=70, completion_tokens=12),
    )
    agent = chat(fake_openai, output_type=Answer)

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.output == Answer(title="Nurseries", score=9)
    assert result.step("answer").attempts == 2
    feedback = (
        "the reply of model 'gpt-4o-mini' is not a valid Answer: "
        "Invalid JSON: expected value at line 1 column 1"
    )
    first, second = fake_openai.requests
    assert first.user_message == QUESTION
    assert second.user_message == append_feedback(QUESTION, feedback)
    assert second.user_message == (f"{QUESTION}\n\nFeedback on the previous attempt: {feedback}")


async def test_a_reply_missing_a_field_names_the_field(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    fake_openai.script(Reply('{"title": "Nurseries", "score": "high"}'), Reply('{"title": "x"}'))
    agent = chat(fake_openai, output_type=Answer)

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:answer' failed (validation): the reply of model 'gpt-4o-mini' is not a "
        "valid Answer: score: Field required"
    )
    assert result.step("answer").attempts == 2
    assert fake_openai.requests[1].user_message == append_feedback(
        QUESTION,
        "the reply of model 'gpt-4o-mini' is not a valid Answer: "
        "score: Input should be a valid integer, unable to parse string as an integer",
    )


async def test_a_refusal_is_a_validation_failure(fake_openai: FakeOpenAI, rt: Runtime) -> None:
    fake_openai.script(
        Reply(None, refusal="I cannot grade that."), Reply('{"title":"a","score":1}')
    )
    agent = chat(fake_openai, output_type=Answer)

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.output == Answer(title="a", score=1)
    assert fake_openai.requests[1].user_message == append_feedback(
        QUESTION, "model 'gpt-4o-mini' refused: I cannot grade that."
    )


# Usage and cost.


async def test_cost_comes_from_a_price_table_users_extend(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply("hi", prompt_tokens=2_000, completion_tokens=400))
    prices = DEFAULT_PRICES.with_prices({"house-model": ("1.25", 5)})
    agent = OpenAIChat("house-model", base_url=fake_openai.base_url, api_key=KEY, prices=prices)

    result = await rt.run(AgentStep("say", agent), "hello")

    # 2,000 x $1.25 + 400 x $5, per million tokens.
    assert result.usage == Usage(Decimal("0.0045"), 2_000, 400)
    assert "house-model" not in DEFAULT_PRICES


async def test_tokens_are_counted_from_text_when_the_endpoint_reports_none(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply("twelve chars", prompt_tokens=None, completion_tokens=None))
    agent = chat(fake_openai)

    result = await rt.run(AgentStep("say", agent), "sixteen chars ok")

    # Input: 16 characters = 4 tokens + 4 for the message; output: 12 characters = 3 tokens.
    assert result.usage == Usage(gpt_4o_mini_cost(8, 3), 8, 3)


async def test_the_estimate_bounds_the_prompt_by_its_bytes_and_the_reply_by_max_tokens(
    fake_openai: FakeOpenAI,
) -> None:
    agent = chat(fake_openai, system_prompt="x" * 40, max_tokens=200)

    estimate = agent.estimate_usage("y" * 78 + "é")  # é is two bytes in UTF-8

    # System: 40 bytes + 32 template tokens; user: 80 bytes + 32; the reply's header: 32.
    # Output: max_tokens.
    assert estimate == Usage(gpt_4o_mini_cost(216, 200), 216, 200)


async def test_the_governor_reserves_the_estimate(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore
) -> None:
    agent = chat(fake_openai, max_tokens=100_000)
    limits = UsageLimits(total_cost_usd="0.05")

    async with open_runtime(store=trioflow_store, limits=limits) as rt:
        with pytest.raises(Exception, match=r"Cost limit of \$0.05 would be exceeded") as caught:
            await rt.run(AgentStep("say", agent), "hello")

    assert fake_openai.requests == []
    assert caught.value.result.step("say").attempts == 0  # type: ignore[attr-defined]


async def test_a_model_with_no_price_under_a_cost_limit_is_a_configuration_error(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore
) -> None:
    agent = OpenAIChat("house-model", base_url=fake_openai.base_url, api_key=KEY)

    async with open_runtime(store=trioflow_store, limits=UsageLimits(total_cost_usd=1)) as rt:
        result = await rt.run(AgentStep("say", agent, retry=RetryPolicy(max_attempts=3)), "hello")

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:say' failed (configuration): model 'house-model' has no price in the "
        "agent's price table, so its cost cannot be counted against a usage limit: add it "
        "with prices=DEFAULT_PRICES.with_prices({'house-model': (input, output)}) in dollars "
        "per million tokens (0 for a free model)"
    )
    assert result.step("say").attempts == 1
    assert fake_openai.requests == []


async def test_a_model_with_no_price_and_no_limit_reports_tokens(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply("hi", prompt_tokens=30, completion_tokens=2))
    agent = OpenAIChat("house-model", base_url=fake_openai.base_url, api_key=KEY)

    result = await rt.run(AgentStep("say", agent), "hello")

    assert result.usage == Usage(0, 30, 2)


# Failures.


async def test_429_waits_for_retry_after_then_retries(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    fake_openai.script(
        Reply(status=429, error="Rate limit reached", headers={"Retry-After": "1"}),
        Reply('{"title": "Later", "score": 2}'),
    )
    agent = chat(fake_openai, output_type=Answer)

    result = await rt.run(answer_step(agent), QUESTION)

    assert result.output == Answer(title="Later", score=2)
    assert result.step("answer").attempts == 2
    first, second = fake_openai.requests
    assert second.at - first.at >= 1.0
    assert second.user_message == QUESTION  # an agent error carries no feedback
    notes = [e.detail for e in await trioflow_store.trace_of(result.run_id) if e.label == "retry"]
    assert notes == [
        f"attempt 1 agent_error: ModelCallFailed: model 'gpt-4o-mini' at "
        f"{fake_openai.base_url}/chat/completions: HTTP 429 Too Many Requests: Rate limit "
        "reached (waited 1s as Retry-After asked)"
    ]


async def test_retry_after_ms_and_the_cap(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        Reply(status=503, headers={"retry-after-ms": "250"}),
        Reply(status=429, headers={"Retry-After": "30"}),
    )
    agent = chat(fake_openai, max_retry_after_s=0.5)

    started = trio.current_time()
    with pytest.raises(ModelCallFailed) as first:
        await agent.run("hi", context=BaseContext(), resources=None)
    middle = trio.current_time()
    with pytest.raises(ModelCallFailed) as second:
        await agent.run("hi", context=BaseContext(), resources=None)
    ended = trio.current_time()

    assert (first.value.status, first.value.retry_after_s) == (503, 0.25)
    assert (second.value.status, second.value.retry_after_s) == (429, 0.5)
    assert 0.25 <= middle - started < 2
    assert 0.5 <= ended - middle < 2
    assert str(second.value).endswith("(waited 0.5s as Retry-After asked)")


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "Internal Server Error"), (502, "Bad Gateway"), (408, "Request Timeout")],
)
async def test_server_errors_are_retried(
    fake_openai: FakeOpenAI, rt: Runtime, status: int, reason: str
) -> None:
    fake_openai.script(Reply(status=status, error="try again"), Reply("fine"))
    agent = chat(fake_openai)

    result = await rt.run(AgentStep("say", agent), "hello")

    assert result.output == "fine"
    assert result.step("say").attempts == 2
    assert len(fake_openai.requests) == 2


async def test_401_is_a_configuration_error_never_retried(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    agent = chat(fake_openai, api_key="sk-wrong-key-0123456789")
    step = AgentStep("say", agent, retry=RetryPolicy(max_attempts=4))

    result = await rt.run(step, "hello")

    assert result.status is RunStatus.FAILED
    assert result.error == (
        f"step 'main/0:say' failed (configuration): model 'gpt-4o-mini' at "
        f"{fake_openai.base_url}/chat/completions: HTTP 401 Unauthorized: "
        "Incorrect API key provided: [api key]"
    )
    assert result.step("say").attempts == 1
    assert len(fake_openai.requests) == 1
    assert result.step("say").metadata["failure"] == "configuration"


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "Bad Request"), (403, "Forbidden"), (404, "Not Found")]
)
async def test_request_errors_are_never_retried(
    fake_openai: FakeOpenAI, rt: Runtime, status: int, reason: str
) -> None:
    fake_openai.script(Reply(status=status, error="Invalid value for 'max_tokens'"))
    agent = chat(fake_openai)

    result = await rt.run(AgentStep("say", agent, retry=RetryPolicy(max_attempts=3)), "hello")

    assert result.error == (
        f"step 'main/0:say' failed (configuration): model 'gpt-4o-mini' at "
        f"{fake_openai.base_url}/chat/completions: HTTP {status} {reason}: "
        "Invalid value for 'max_tokens'"
    )
    assert len(fake_openai.requests) == 1


async def test_a_call_past_its_timeout_is_cancelled_and_retried(
    fake_openai: FakeOpenAI, trioflow_store: InMemoryStore, rt: Runtime
) -> None:
    fake_openai.script(Reply("too late", delay_s=30), Reply("in time"))
    agent = chat(fake_openai, timeout_s=0.5)

    started = time.monotonic()
    result = await rt.run(AgentStep("say", agent), "hello")
    elapsed = time.monotonic() - started

    assert result.output == "in time"
    assert result.step("say").attempts == 2
    assert 0.5 <= elapsed < 5
    notes = [e.detail for e in await trioflow_store.trace_of(result.run_id) if e.label == "retry"]
    assert notes == [
        f"attempt 1 agent_error: ModelTimeout: model 'gpt-4o-mini' at "
        f"{fake_openai.base_url}/chat/completions: no reply within 0.5s"
    ]


async def test_a_connection_failure_is_retried(rt: Runtime) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = OpenAIChat(MODEL, base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)

    result = await rt.run(AgentStep("say", agent, retry=RetryPolicy(max_attempts=3)), "hello")

    assert result.status is RunStatus.FAILED
    assert result.step("say").attempts == 3
    assert result.error is not None  # narrows Optional; exact checks follow
    assert result.error.startswith(
        f"step 'main/0:say' failed (agent_error): ModelCallFailed: model 'gpt-4o-mini': "
        f"cannot reach http://127.0.0.1:{port}/v1/chat/completions (ConnectError: "
    )


async def test_a_reply_that_is_not_a_completion_is_retried(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply(raw=b"<html>gateway</html>"), Reply("fine"))
    agent = chat(fake_openai)

    result = await rt.run(AgentStep("say", agent), "hello")

    assert result.output == "fine"
    assert result.step("say").attempts == 2


async def test_a_shared_http_client_is_used(fake_openai: FakeOpenAI, rt: Runtime) -> None:
    async with httpx.AsyncClient() as client:
        agent = chat(fake_openai, http_client=client)
        result = await rt.run(AgentStep("say", agent) >> AgentStep("again", agent), "hello")

    assert result.output == "echo: echo: hello"
    assert [r.user_message for r in fake_openai.requests] == ["hello", "echo: hello"]


async def test_a_rejected_reply_carries_what_it_cost(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply('{"title": 3}', prompt_tokens=40, completion_tokens=9))
    agent = chat(fake_openai, output_type=Answer)

    with pytest.raises(AgentOutputInvalid) as caught:
        await agent.run(QUESTION, context=BaseContext(), resources=None)

    assert str(caught.value) == (
        "the reply of model 'gpt-4o-mini' is not a valid Answer: title: Input should be a "
        "valid string; score: Field required"
    )
    assert caught.value.usage == Usage(gpt_4o_mini_cost(40, 9), 40, 9)
