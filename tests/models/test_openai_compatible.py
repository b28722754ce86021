"""OpenAI-compatible servers' quirks: an unsupported parameter, a template with no system role,
cached prompt tokens."""

from __future__ import annotations

from decimal import Decimal

import pydantic
from trioflow.runtime import AgentStep, RetryPolicy, RunStatus, Runtime, Usage

from tests.models.fake_openai import FakeOpenAI, Reply
from tests.models.test_openai_agent import chat

#: What llama.cpp's server answers, with HTTP 500, to a response_format it does not support.
LLAMA_CPP_REFUSAL = (
    'response_format type must be one of "text" or "json_object", but got: json_schema'
)


class Verdict(pydantic.BaseModel):
    ok: bool


async def test_a_500_for_an_unsupported_parameter_is_a_configuration_error(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply(status=500, error=LLAMA_CPP_REFUSAL, error_type="server_error"))
    agent = chat(fake_openai, output_type=Verdict)
    step = AgentStep("judge", agent, retry=RetryPolicy(max_attempts=5))

    result = await rt.run(step, "is it fine?")

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:judge' failed (configuration): model 'gpt-4o-mini' at "
        f"{fake_openai.base_url}/chat/completions: HTTP 500 Internal Server Error: "
        f"{LLAMA_CPP_REFUSAL} (the request asks for what the server does not support)"
    )
    assert result.step("judge").attempts == 1
    assert len(fake_openai.requests) == 1


async def test_a_500_that_calls_the_request_invalid_is_not_retried(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(
        Reply(status=502, error="bad 'tools' field", error_type="invalid_request_error")
    )
    step = AgentStep("say", chat(fake_openai), retry=RetryPolicy(max_attempts=3))

    result = await rt.run(step, "hello")

    assert result.step("say").metadata["failure"] == "configuration"
    assert len(fake_openai.requests) == 1


async def test_without_a_system_role_the_instructions_lead_the_user_turn(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    fake_openai.script(Reply('{"ok": true}'))
    agent = chat(
        fake_openai,
        system_prompt="You judge.",
        output_type=Verdict,
        schema_mode="instructions",
        system_role=False,
    )

    result = await rt.run(AgentStep("judge", agent), "is it fine?")

    assert result.output == Verdict(ok=True)
    [request] = fake_openai.requests
    schema = '{"properties":{"ok":{"title":"Ok","type":"boolean"}},"required":["ok"],'
    schema += '"title":"Verdict","type":"object"}'
    assert request.body["messages"] == [
        {
            "role": "user",
            "content": "You judge.\n\nReply with one JSON object that matches this JSON "
            f"schema, and nothing else (no prose, no code fence):\n{schema}\n\nis it fine?",
        }
    ]


async def test_without_a_system_role_or_prompt_the_user_turn_is_the_input(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    agent = chat(fake_openai, system_role=False)

    await rt.run(AgentStep("say", agent), "hello")

    [request] = fake_openai.requests
    assert request.body["messages"] == [{"role": "user", "content": "hello"}]
    assert agent.fingerprint != chat(fake_openai).fingerprint


async def test_cached_prompt_tokens_cost_the_cache_read_price(
    fake_openai: FakeOpenAI, rt: Runtime
) -> None:
    # gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out per million tokens.
    fake_openai.script(Reply("ok", prompt_tokens=2000, completion_tokens=100, cached_tokens=1500))

    result = await rt.run(AgentStep("say", chat(fake_openai)), "hello")

    expected = (500 * Decimal("0.15") + 1500 * Decimal("0.075") + 100 * Decimal("0.6")) / 10**6
    assert expected == Decimal("0.0002475")
    assert result.usage == Usage(expected, 2000, 100)
