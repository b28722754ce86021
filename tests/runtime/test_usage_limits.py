"""Usage limits: breaches are recorded before the run stops; totals are exact Decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentOutputInvalid,
    AgentStep,
    BaseContext,
    Completion,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    SetField,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    ValidationResult,
    open_runtime,
    step,
)
from trioflow.runtime.agents import StubAgent


class Noted(BaseContext):
    note: str = ""


def priced(name: str, cost: str, input_tokens: int = 0, output_tokens: int = 0) -> AgentStep:
    """A step whose one call returns ``out-<name>`` and costs ``cost``."""
    return AgentStep(
        name, StubAgent([Completion(f"out-{name}", Usage(cost, input_tokens, output_tokens))])
    )


def breach_result(caught: pytest.ExceptionInfo[UsageLimitExceeded]) -> PipelineResult:
    result = caught.value.result
    assert isinstance(result, PipelineResult)
    return result


# --- run limits ----------------------------------------------------------------------------------


async def test_cost_breach_on_the_last_step_is_recorded_with_exact_totals(rt: Runtime) -> None:
    pipeline = (
        priced("s0", "0.50", 10, 5) >> priced("s1", "0.50", 10, 5) >> priced("s2", "0.50", 10, 5)
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.20 exceeded$") as caught:
        await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.20"))

    assert caught.value.message == "Cost limit of $1.20 exceeded"
    result = breach_result(caught)
    assert result.status is RunStatus.USAGE_LIMIT
    assert len(result.step_history) == 3
    assert [entry.path for entry in result.step_history] == ["main/0:s0", "main/1:s1", "main/2:s2"]
    breaching = result.step_history[-1]
    assert breaching.name == "s2"
    assert breaching.success is True
    assert breaching.output == "out-s2"
    assert breaching.usage == Usage(Decimal("0.50"), 10, 5)
    assert result.usage == Usage(Decimal("1.50"), 30, 15)
    assert result.total_cost_usd == Decimal("1.50")
    assert result.total_tokens == 45
    assert result.error == "Cost limit of $1.20 exceeded"


async def test_breaching_step_keeps_its_context_update(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    """The breaching step is recorded as a success; its patch must not be lost with it."""

    @step(updates_context=True)
    async def costly(text: str) -> Completion:
        return Completion({"note": "set by the breaching step"}, Usage("2"))

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(costly, "x", context=Noted(), limits=UsageLimits(total_cost_usd=1))

    result = breach_result(caught)
    breaching = result.step("costly")
    assert breaching.success is True
    assert breaching.patch == (SetField("note", "set by the breaching step"),)
    assert result.context.note == "set by the breaching step"
    [record, top] = await trioflow_store.steps_of(result.run_id)
    assert record.path == "main/0:costly"
    assert record.patch == (SetField("note", "set by the breaching step"),)
    assert top.path == "main"
    assert top.patch == (SetField("note", "set by the breaching step"),)


async def test_limit_message_shows_money_as_people_write_it(rt: Runtime) -> None:
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$2\.00 exceeded$"):
        await rt.run(priced("s", "2.5"), "x", limits=UsageLimits(total_cost_usd=2))
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.0005 exceeded$"):
        await rt.run(priced("s", "0.001"), "x", limits=UsageLimits(total_cost_usd="0.0005"))
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1,500\.00 exceeded$"):
        await rt.run(priced("s", "1500.01"), "x", limits=UsageLimits(total_cost_usd=1500))
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.30 exceeded$"):
        await rt.run(priced("s", "0.31"), "x", limits=UsageLimits(total_cost_usd=0.3))


async def test_reaching_a_limit_exactly_is_allowed(rt: Runtime) -> None:
    pipeline = priced("s0", "0.40") >> priced("s1", "0.40") >> priced("s2", "0.40")

    result = await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.20"))

    assert result.status is RunStatus.COMPLETED
    assert result.total_cost_usd == Decimal("1.20")


async def test_breach_in_the_middle_stops_the_run(rt: Runtime) -> None:
    last = StubAgent([Completion("never", Usage("0.01"))])
    pipeline = priced("s0", "0.50") >> priced("s1", "0.60") >> AgentStep("s2", last)

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd=1))

    result = breach_result(caught)
    assert [entry.name for entry in result.step_history] == ["s0", "s1"]
    assert result.usage == Usage(Decimal("1.10"))
    assert last.calls == 0


async def test_token_breach_on_the_last_step(rt: Runtime) -> None:
    pipeline = priced("s0", "0", 30, 10) >> priced("s1", "0", 30, 10) >> priced("s2", "0", 30, 10)

    with pytest.raises(UsageLimitExceeded, match=r"^Token limit of 100 exceeded$") as caught:
        await rt.run(pipeline, "x", limits=UsageLimits(total_tokens=100))

    result = breach_result(caught)
    assert len(result.step_history) == 3
    assert result.step_history[-1].name == "s2"
    assert result.step_history[-1].success is True
    assert result.usage == Usage(Decimal("0"), 90, 30)
    assert result.total_tokens == 120


async def test_runtime_limits_apply_unless_the_run_overrides_them() -> None:
    async with open_runtime(limits=UsageLimits(total_cost_usd="0.10")) as runtime:
        with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.10 exceeded$"):
            await runtime.run(priced("s", "0.50"), "x")

        result = await runtime.run(priced("s", "0.50"), "x", limits=UsageLimits(total_cost_usd=1))

    assert result.status is RunStatus.COMPLETED
    assert result.total_cost_usd == Decimal("0.50")


async def test_retries_spend_toward_the_run_limit(rt: Runtime) -> None:
    def never(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("no")

    agent = StubAgent([Completion("a", Usage("0.40")) for _ in range(5)])
    step = AgentStep("s", agent, validators=[never], retry=RetryPolicy(max_attempts=5))

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    result = breach_result(caught)
    assert agent.calls == 3
    assert result.step("s").attempts == 3
    assert result.usage == Usage(Decimal("1.20"))


# --- strict mode: reservations before the call ---------------------------------------------------


async def test_reservation_that_would_exceed_is_denied_before_the_call(rt: Runtime) -> None:
    expensive = StubAgent([Completion("never", Usage("0.10"))])
    pipeline = priced("cheap", "0.50") >> AgentStep(
        "expensive", expensive, usage_estimate=Usage("0.80")
    )

    with pytest.raises(
        UsageLimitExceeded,
        match=r"^Cost limit of \$1\.20 .*exceeded.*step 'main/1:expensive' needs up to \$0\.80",
    ) as caught:
        await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.20"))

    assert expensive.calls == 0
    result = breach_result(caught)
    assert result.status is RunStatus.USAGE_LIMIT
    assert [entry.path for entry in result.step_history] == ["main/0:cheap", "main/1:expensive"]
    denied = result.step_history[-1]
    assert denied.success is False
    assert denied.usage == Usage()
    assert denied.attempts == 0  # the refused attempt never called its agent
    assert result.usage == Usage(Decimal("0.50"))


async def test_a_denial_after_a_paid_retry_counts_only_the_paid_attempt(rt: Runtime) -> None:
    agent = StubAgent([Completion("bad", Usage("0.60")), "never"])

    def reject(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("try again")

    step = AgentStep(
        "s",
        agent,
        validators=[reject],
        usage_estimate=Usage("0.60"),
        retry=RetryPolicy(max_attempts=3),
    )
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 would be exceeded"):
        await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    assert agent.calls == 1


async def test_reservation_within_the_limit_is_granted(rt: Runtime) -> None:
    agent = StubAgent([Completion("ok", Usage("0.30", 10, 10))])
    pipeline = priced("cheap", "0.50") >> AgentStep(
        "estimated", agent, usage_estimate=Usage("0.70")
    )

    result = await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.20"))

    assert result.status is RunStatus.COMPLETED
    assert agent.calls == 1
    assert result.usage == Usage(Decimal("0.80"), 10, 10)


async def test_token_reservation_is_denied_before_the_call(rt: Runtime) -> None:
    agent = StubAgent(["never"])
    step = AgentStep("big", agent, usage_estimate=Usage(0, 400, 200))

    with pytest.raises(
        UsageLimitExceeded, match=r"^Token limit of 500 .*exceeded.*step 'main/0:big'"
    ):
        await rt.run(step, "x", limits=UsageLimits(total_tokens=500))

    assert agent.calls == 0


# --- per-step limits -----------------------------------------------------------------------------


async def test_per_step_cost_limit_is_enforced(rt: Runtime) -> None:
    step = AgentStep(
        "capped",
        StubAgent([Completion("o", Usage("0.30"))]),
        limits=UsageLimits(total_cost_usd="0.25"),
    )

    with pytest.raises(
        UsageLimitExceeded, match=r"^Cost limit of \$0\.25 (?=.*exceeded).*step 'main/1:capped'"
    ) as caught:
        await rt.run(priced("free", "0.10") >> step, "x")

    result = breach_result(caught)
    assert [entry.name for entry in result.step_history] == ["free", "capped"]
    assert result.step_history[-1].success is True
    assert result.usage == Usage(Decimal("0.40"))


async def test_per_step_limit_counts_every_attempt(rt: Runtime) -> None:
    def never(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("no")

    agent = StubAgent([Completion("o", Usage("0.10", 5, 5)) for _ in range(5)])
    step = AgentStep(
        "capped",
        agent,
        validators=[never],
        retry=RetryPolicy(max_attempts=5),
        limits=UsageLimits(total_cost_usd="0.25"),
    )

    with pytest.raises(
        UsageLimitExceeded, match=r"^Cost limit of \$0\.25 (?=.*exceeded).*step 'main/0:capped'"
    ) as caught:
        await rt.run(step, "x")

    result = breach_result(caught)
    assert agent.calls == 3
    assert result.step("capped").attempts == 3
    assert result.usage == Usage(Decimal("0.30"), 15, 15)


async def test_per_step_limit_does_not_count_other_steps(rt: Runtime) -> None:
    capped = AgentStep(
        "capped",
        StubAgent([Completion("o", Usage("0.20"))]),
        limits=UsageLimits(total_cost_usd="0.25"),
    )

    result = await rt.run(priced("big", "5.00") >> capped, "x")

    assert result.status is RunStatus.COMPLETED
    assert result.usage == Usage(Decimal("5.20"))


async def test_per_step_token_limit_with_estimate_denies_before_the_call(rt: Runtime) -> None:
    agent = StubAgent(["never"])
    step = AgentStep(
        "s", agent, usage_estimate=Usage(0, 80, 40), limits=UsageLimits(total_tokens=100)
    )

    with pytest.raises(
        UsageLimitExceeded, match=r"^Token limit of 100 (?=.*exceeded).*step 'main/0:s'"
    ):
        await rt.run(step, "x")

    assert agent.calls == 0


# --- exact money ---------------------------------------------------------------------------------


async def test_ten_dimes_are_exactly_one_dollar(rt: Runtime) -> None:
    assert sum([0.1] * 10) != 1.0  # what float would do
    pipeline = Pipeline.of(*[priced(f"s{index}", "0.1") for index in range(10)])

    result = await rt.run(pipeline, "x")

    assert result.total_cost_usd == Decimal("1.0")
    assert str(result.total_cost_usd) == "1.0"
    assert result.total_cost_usd == sum(
        (entry.cost_usd for entry in result.step_history), Decimal(0)
    )
    assert [entry.cost_usd for entry in result.step_history] == [Decimal("0.1")] * 10


async def test_float_costs_are_read_as_written(rt: Runtime) -> None:
    pipeline = Pipeline.of(
        *[AgentStep(f"s{i}", StubAgent([Completion(i, Usage(0.1))])) for i in range(3)]
    )

    result = await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd=0.3))

    assert result.status is RunStatus.COMPLETED
    assert result.total_cost_usd == Decimal("0.3")


async def test_total_is_the_sum_over_step_history(rt: Runtime) -> None:
    costs = ["0.0001", "0.0123", "1.1", "0.000007", "2"]
    pipeline = Pipeline.of(*[priced(f"s{i}", cost, i, 2 * i) for i, cost in enumerate(costs)])

    result = await rt.run(pipeline, "x")

    assert result.total_cost_usd == Decimal("3.112407")
    assert result.total_cost_usd == sum(
        (entry.cost_usd for entry in result.step_history), Decimal(0)
    )
    assert result.total_tokens == sum(entry.total_tokens for entry in result.step_history)
    assert result.total_tokens == 30


async def test_a_rejected_reply_that_breaches_is_not_a_success(rt: Runtime) -> None:
    rejected = StubAgent([AgentOutputInvalid("not JSON", usage=Usage("2.00"))])

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(AgentStep("ask", rejected), "q", limits=UsageLimits(total_cost_usd=1))

    assert caught.value.result is not None  # narrows Optional; exact checks follow
    asked = caught.value.result.step("ask")
    assert (asked.success, asked.output, asked.attempts) == (False, None, 1)
    assert asked.usage == Usage(Decimal("2.00"))
