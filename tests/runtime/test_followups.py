"""Edges found while reviewing the runtime: cache fields, parameter order, context copies."""

from __future__ import annotations

import pytest
from pydantic import Field
from trioflow.runtime import AgentStep, BaseContext, Cache, ConfigurationError, Runtime, step
from trioflow.runtime.agents import StubAgent


class Tagged(BaseContext):
    tags: list[str] = Field(default_factory=list)


async def test_caching_on_an_unknown_context_field_is_a_configuration_error(rt: Runtime) -> None:
    cached = AgentStep("lookup", StubAgent(["a"]), cache=Cache(context_fields=("user", "tags")))

    with pytest.raises(
        ConfigurationError,
        match=r"^step 'lookup' caches on context field\(s\) 'user', which Tagged does not have$",
    ):
        await rt.run(cached, "x", context=Tagged())


async def test_context_may_come_before_the_data_parameter(rt: Runtime) -> None:
    @step
    async def greet(context: Tagged, name: str) -> str:
        return f"hello {name} ({len(context.tags)} tags)"

    result = await rt.run(greet, "ann", context=Tagged(tags=["x"]))

    assert result.output == "hello ann (1 tags)"
    assert result.step("greet").attempts == 1


async def test_a_run_never_shares_mutable_context_values_with_its_caller(rt: Runtime) -> None:
    @step
    async def misbehave(text: str, *, context: Tagged) -> str:
        context.tags.append("mutated in place")  # wrong, but must not leak out of the run
        return text

    original = Tagged(tags=["kept"])
    first = await rt.run(misbehave, "a", context=original)
    second = await rt.run(misbehave, "b", context=original)

    assert original.tags == ["kept"]
    assert first.context.tags == ["kept", "mutated in place"]
    assert second.context.tags == ["kept", "mutated in place"]


async def test_a_rejected_reply_is_paid_for_and_counted(rt: Runtime) -> None:
    from decimal import Decimal

    from trioflow.runtime import AgentOutputInvalid, Completion, RetryPolicy, Usage

    agent = StubAgent(
        [
            AgentOutputInvalid("reply is not JSON", usage=Usage("0.10", 5, 7)),
            Completion("fine", Usage("0.25", 5, 3)),
        ]
    )
    result = await rt.run(AgentStep("ask", agent, retry=RetryPolicy(max_attempts=2)), "q")

    answered = result.step("ask")
    assert (answered.success, answered.attempts) == (True, 2)
    assert answered.usage == Usage(Decimal("0.35"), 10, 10)
    assert result.usage == Usage(Decimal("0.35"), 10, 10)
    assert agent.inputs[1] == "q\n\nFeedback on the previous attempt: reply is not JSON"
