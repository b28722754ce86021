"""The governor: reservations, releases, commits and what it records in the trace."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.actors import TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime.agents import FakeModel, StubAgent


async def governor_notes(store: InMemoryStore, run_id: str) -> list[tuple[str, str | None]]:
    """(label, about) of every note the governor recorded, in order."""
    return [
        (event.label, event.peer)
        for event in await store.trace_of(run_id)
        if event.kind is TraceKind.NOTE and event.path == "governor"
    ]


async def test_a_failed_call_releases_its_reservation(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    agent = StubAgent([RuntimeError("transient"), Completion("ok", Usage("0.60"))])
    step = AgentStep("s", agent, usage_estimate=Usage("0.60"))

    # Two reservations of 0.60 exceed 1.00: the second attempt is granted only if the
    # first attempt's reservation was released when its call failed.
    result = await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    assert result.status is RunStatus.COMPLETED
    assert result.step("s").attempts == 2
    assert agent.calls == 2
    assert result.usage == Usage(Decimal("0.60"))
    assert await governor_notes(trioflow_store, result.run_id) == [
        ("grant", "main/0:s"),
        ("grant", "main/0:s"),
        ("commit", "main/0:s"),
    ]


async def test_a_commit_settles_its_reservation(rt: Runtime) -> None:
    first = StubAgent([Completion("a", Usage("0.20"))])
    second = StubAgent([Completion("b", Usage("0.70"))])
    pipeline = AgentStep("first", first, usage_estimate=Usage("0.60")) >> AgentStep(
        "second", second, usage_estimate=Usage("0.70")
    )

    # 0.20 committed + 0.70 estimated fits in 1.00; it would not if the first
    # step's 0.60 reservation were still held.
    result = await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd=1))

    assert result.status is RunStatus.COMPLETED
    assert second.calls == 1
    assert result.usage == Usage(Decimal("0.90"))


async def test_spending_above_the_estimate_is_caught_at_commit(rt: Runtime) -> None:
    agent = StubAgent([Completion("costly", Usage("2.00"))])
    step = AgentStep("s", agent, usage_estimate=Usage("0.10"))

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert result.step("s").success is True
    assert result.usage == Usage(Decimal("2.00"))


async def test_denial_is_noted_and_nothing_is_committed(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    agent = StubAgent(["never"])
    step = AgentStep("s", agent, usage_estimate=Usage("5"))

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert await governor_notes(trioflow_store, result.run_id) == [("deny", "main/0:s")]
    assert result.usage == Usage()
    assert agent.calls == 0


async def test_breach_is_noted_after_the_commit(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    step = AgentStep("s", StubAgent([Completion("o", Usage("1.50"))]))

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(step, "x", limits=UsageLimits(total_cost_usd=1))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    # Under a limit every call asks first (a zero reservation when there is no
    # estimate), so that no call starts after a breach.
    assert await governor_notes(trioflow_store, result.run_id) == [
        ("grant", "main/0:s"),
        ("commit", "main/0:s"),
        ("breach", "main/0:s"),
    ]


async def test_free_calls_without_limits_do_not_bother_the_governor(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    result = await rt.run(AgentStep("s", StubAgent(["free"])), "x")

    assert await governor_notes(trioflow_store, result.run_id) == []
    assert result.usage == Usage()


async def test_estimating_agent_is_reserved_before_its_call(
    rt: Runtime, autojump_clock: Any
) -> None:
    model = FakeModel(seed=7, max_output_tokens=512)
    estimate = model.estimate_usage("prompt")
    assert estimate == Usage((Decimal(2) * 3 + Decimal(512) * 15) / Decimal(1_000_000), 2, 512)

    started = trio.current_time()
    with pytest.raises(UsageLimitExceeded, match=r"^Token limit of 500 .*exceeded") as caught:
        await rt.run(AgentStep("model", model), "prompt", limits=UsageLimits(total_tokens=500))

    # denied before the call: no simulated latency elapsed, nothing spent
    assert trio.current_time() - started == 0.0
    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert result.usage == Usage()


async def test_estimating_agent_within_budget_runs(rt: Runtime, autojump_clock: Any) -> None:
    model = FakeModel(seed=7, respond=lambda prompt: "short reply")
    step = AgentStep("model", model, retry=RetryPolicy(max_attempts=1))

    result = await rt.run(step, "prompt", limits=UsageLimits(total_tokens=600))

    assert result.output == "short reply"
    assert result.usage == Usage((Decimal(2) * 3 + Decimal(3) * 15) / Decimal(1_000_000), 2, 3)


async def test_a_cancelled_run_keeps_what_it_spent(autojump_clock: Any) -> None:
    @step
    async def paid(text: str) -> Completion:
        return Completion(text, Usage("0.25", 3, 4))

    @step
    async def forever(text: str) -> str:
        await trio.sleep(100)
        return text

    store = InMemoryStore()
    async with open_runtime(store=store) as rt:
        with trio.move_on_after(10):
            await rt.run(paid >> forever, "x")

    [record] = await store.list_runs()
    assert record.status == RunStatus.CANCELLED.value
    assert (record.total_cost_usd, record.input_tokens, record.output_tokens) == ("0.25", 3, 4)


async def test_a_cancelled_branch_gives_its_reservation_back(
    rt: Runtime, autojump_clock: Any
) -> None:
    @step
    async def slow(text: str) -> Completion:
        await trio.sleep(10)
        return Completion(text, Usage("0.60"))

    @step
    async def boom(text: str) -> str:
        await trio.sleep(1)
        raise RuntimeError("boom")

    @step
    async def wait_a_while(text: str) -> str:
        await trio.sleep(5)  # until the inner parallel has cancelled `slow`
        return text

    @step
    async def later(text: str) -> Completion:
        return Completion("later", Usage("0.60"))

    estimate = Usage("0.60")
    inner = Step.parallel(
        "inner",
        {
            "slow": Step.from_callable(slow.agent.fn, name="slow", usage_estimate=estimate),
            "boom": boom,
        },
    )
    outer = Step.parallel(
        "outer",
        {
            "x": inner,
            "y": wait_a_while
            >> Step.from_callable(later.agent.fn, name="later", usage_estimate=estimate),
        },
        on_branch_failure="ignore",
    )
    with trio.fail_after(60):  # a leaked reservation would make `later` wait for ever
        result = await rt.run(outer, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"y": "later"}
    assert result.usage == Usage(Decimal("0.60"))
