"""Mistakes are caught early with clear errors; the test agents behave exactly as documented."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    ConfigurationError,
    InputTypeError,
    Pipeline,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime.agents import FakeModel, ScriptExhausted, StubAgent


@step
async def count_words(text: str) -> int:
    return len(text.split())


class NotAContext:
    pass


# --- run arguments -------------------------------------------------------------------------------


async def test_input_of_the_wrong_type_names_the_step_and_types(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    with pytest.raises(
        InputTypeError, match="the first step 'count_words' expects str, got int: 42"
    ):
        await rt.run(count_words, 42)

    assert await trioflow_store.list_runs() == []


async def test_input_of_a_union_type(rt: Runtime) -> None:
    @step
    async def either(value: int | str) -> str:
        return str(value)

    assert (await rt.run(either, 3)).output == "3"
    assert (await rt.run(either, "3")).output == "3"
    with pytest.raises(
        InputTypeError, match=r"the first step 'either' expects int \| str, got float"
    ):
        await rt.run(either, 3.0)


async def test_input_checked_against_the_first_step_of_a_pipeline(rt: Runtime) -> None:
    @step
    async def to_text(number: int) -> str:
        return str(number)

    with pytest.raises(InputTypeError, match="the first step 'to_text' expects int, got str"):
        await rt.run(to_text >> count_words, "12")


async def test_context_that_is_not_a_base_context(rt: Runtime) -> None:
    with pytest.raises(ConfigurationError, match=r"context .*BaseContext.*, got dict$"):
        await rt.run(count_words, "a b", context={"user": "ann"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"context .*BaseContext.*, got NotAContext$"):
        await rt.run(count_words, "a b", context=NotAContext())  # type: ignore[arg-type]


async def test_running_something_that_is_not_a_pipeline(rt: Runtime) -> None:
    with pytest.raises(ConfigurationError, match="run\\(\\) needs a Pipeline or a Step"):
        await rt.run(count_words.agent, "x")  # type: ignore[arg-type]


def test_negative_or_malformed_limits() -> None:
    with pytest.raises(ValueError, match="total_cost_usd must be >= 0"):
        UsageLimits(total_cost_usd=-1)
    with pytest.raises(ValueError, match="total_cost_usd must be >= 0"):
        UsageLimits(total_cost_usd="-0.01")
    with pytest.raises(ValueError, match="total_tokens must be >= 0, got -5"):
        UsageLimits(total_tokens=-5)
    with pytest.raises(TypeError, match="total_tokens must be an int"):
        UsageLimits(total_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be finite"):
        UsageLimits(total_cost_usd=float("nan"))
    with pytest.raises(ValueError, match="must be a number"):
        UsageLimits(total_cost_usd="lots")
    with pytest.raises(TypeError, match="must be a number"):
        UsageLimits(total_cost_usd=True)
    assert UsageLimits(total_cost_usd=0).total_cost_usd == Decimal(0)


def test_negative_usage_is_rejected() -> None:
    with pytest.raises(ValueError, match="usage cannot be negative"):
        Usage("-0.01")
    with pytest.raises(ValueError, match="usage cannot be negative"):
        Usage(0, -1, 0)
    assert Usage(0.1).cost_usd == Decimal("0.1")


# --- step and pipeline construction --------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a/b", "/"])
def test_bad_step_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="a step name must be a non-empty string"):
        AgentStep(name, StubAgent([]))


def test_nested_pipeline_name_cannot_contain_a_slash() -> None:
    """A '/' in a nested pipeline's name would make its steps' paths ambiguous."""
    pipeline = Pipeline.of(AgentStep("a", StubAgent([])))
    with pytest.raises(ConfigurationError):
        pipeline.as_step("x/y")


def test_agent_without_run() -> None:
    with pytest.raises(ConfigurationError, match=r"step 'lazy': agent .* has no async 'run'"):
        AgentStep("lazy", object())  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_non_positive_timeout(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="step 'slow': timeout_s must be > 0"):
        AgentStep("slow", StubAgent([]), timeout_s=timeout)


def test_empty_pipeline_and_non_steps() -> None:
    with pytest.raises(ConfigurationError, match="pipeline 'empty' has no steps"):
        Pipeline.of(name="empty")
    with pytest.raises(ConfigurationError, match="is not a step"):
        Pipeline.of(count_words, "not a step")  # type: ignore[arg-type]


# --- StubAgent -----------------------------------------------------------------------------------


async def test_stub_agent_replays_its_script_and_records_inputs() -> None:
    agent = StubAgent(["one", Completion("two", Usage("0.5")), ValueError("three")])

    assert await agent.run("a", context=None, resources=None) == "one"
    assert await agent.run("b", context=None, resources=None) == Completion("two", Usage("0.5"))
    with pytest.raises(ValueError, match="three"):
        await agent.run("c", context=None, resources=None)
    with pytest.raises(ScriptExhausted, match="call 4 but only 3 scripted"):
        await agent.run("d", context=None, resources=None)
    assert agent.inputs == ["a", "b", "c", "d"]
    assert agent.calls == 4
    assert issubclass(ScriptExhausted, ConfigurationError)


async def test_scripted_exception_is_an_agent_error(rt: Runtime) -> None:
    agent = StubAgent([KeyError("missing field")])

    result = await rt.run(AgentStep("s", agent, retry=RetryPolicy(max_attempts=1)), "x")

    assert result.status is RunStatus.FAILED
    assert result.step("s").metadata == {"failure": "agent_error"}
    assert result.error == "step 'main/0:s' failed (agent_error): KeyError: 'missing field'"
    assert agent.calls == 1


# --- FakeModel -----------------------------------------------------------------------------------


async def test_fake_model_is_deterministic(autojump_clock: Any) -> None:
    model = FakeModel(seed=42)
    twin = FakeModel(seed=42)

    started = trio.current_time()
    first = await model.run("explain trio", context=None, resources=None)
    first_latency = trio.current_time() - started
    started = trio.current_time()
    second = await twin.run("explain trio", context=None, resources=None)
    second_latency = trio.current_time() - started

    assert first == second
    assert first_latency == second_latency
    assert 0.05 <= first_latency <= 0.25


async def test_fake_model_seed_and_input_change_the_output(autojump_clock: Any) -> None:
    base = await FakeModel(seed=1).run("explain trio", context=None, resources=None)
    other_seed = await FakeModel(seed=2).run("explain trio", context=None, resources=None)
    other_input = await FakeModel(seed=1).run("explain asyncio", context=None, resources=None)

    assert isinstance(base, Completion)
    assert base.output != other_seed.output
    assert base.output != other_input.output


async def test_fake_model_cost_is_tokens_times_price(autojump_clock: Any) -> None:
    model = FakeModel(seed=3)
    reply = await model.run("a prompt of some length", context=None, resources=None)
    usage = reply.usage

    assert usage.input_tokens == 6  # 23 characters, about four a token
    assert usage.output_tokens == (len(str(reply.output)) + 3) // 4
    assert usage.cost_usd == (
        usage.input_tokens * Decimal(3) + usage.output_tokens * Decimal(15)
    ) / Decimal(1_000_000)


async def test_fake_model_with_a_response_function_and_prices(autojump_clock: Any) -> None:
    model = FakeModel(
        respond=lambda data: "x" * 40,
        input_price_per_mtok="2.5",
        output_price_per_mtok=10,
        latency_s=(0.5, 0.5),
    )

    started = trio.current_time()
    reply = await model.run("y" * 8, context=None, resources=None)

    assert trio.current_time() - started == 0.5
    assert reply == Completion("x" * 40, Usage(Decimal("0.000105"), 2, 10))


async def test_fake_model_output_tokens_are_capped(autojump_clock: Any) -> None:
    model = FakeModel(respond=lambda data: "z" * 400, max_output_tokens=50, latency_s=(0, 0))

    reply = await model.run("q", context=None, resources=None)

    assert reply.usage == Usage(Decimal(1 * 3 + 50 * 15) / Decimal(1_000_000), 1, 50)


def test_fake_model_rejects_negative_prices() -> None:
    with pytest.raises(ValueError, match="a price cannot be negative"):
        FakeModel(input_price_per_mtok=-1)


async def test_fake_model_in_a_run_is_reproducible(autojump_clock: Any) -> None:
    model = FakeModel(seed=9)
    outcomes = []
    for _ in range(2):
        async with open_runtime() as runtime:
            result = await runtime.run(AgentStep("model", model), "the same prompt")
            outcomes.append((result.output, result.usage, result.step("model").latency_s))

    assert outcomes[0] == outcomes[1]
