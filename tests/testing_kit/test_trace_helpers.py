"""run_history, ran_steps and assert_ran: which steps ran, in what order, attempts and cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from trio.testing import MockClock
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    RetryPolicy,
    Runtime,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
)
from trioflow.runtime.agents import FakeModel
from trioflow.testing import StubAgent, assert_ran, ran_steps, run_history

from tests.testing_kit.test_swap import build

EVERY_KIND_IN_ORDER = [
    "main/0:draft",
    "main/1:checks",
    "main/1:checks/fast",
    "main/1:checks/slow/0:audit",
    "main/1:checks/slow/1:sign",
    "main/2:refine",
    "main/2:refine/loop[1]",
    "main/3:nest",
    "main/3:nest/0:inner",
    "main/3:nest/1:shout",
    "main/4:pick",
    "main/4:pick/default",
    "main/5:route",
    "main/5:route/router",
    "main/5:route/a",
    "main/6:split",
    "main/7:each",
    "main/7:each/item[0]",
    "main/7:each/item[1]",
]


def priced(name: str, reply: str) -> FakeModel:
    """$3 in, $15 out per million tokens; four characters a token."""
    return FakeModel(name, respond=lambda text: reply)


async def test_steps_of_every_kind_in_execution_order(trioflow_runtime: Runtime) -> None:
    result = await trioflow_runtime.run(build(), "hi")

    assert result.success
    assert await ran_steps(result, trioflow_runtime) == EVERY_KIND_IN_ORDER
    assert await ran_steps(result.run_id, trioflow_runtime.store) == EVERY_KIND_IN_ORDER
    await assert_ran(result, trioflow_runtime, EVERY_KIND_IN_ORDER)
    trace = await assert_ran(
        result,
        trioflow_runtime,
        [
            "draft",
            "checks",
            "lint",
            "audit",
            "sign",
            "refine",
            "polish",
            "nest",
            "inner",
            "shout",
            "pick",
            "long",
            "route",
            "router",
            "ra",
            "split",
            "each",
            "item",
            "item",
        ],
    )
    assert trace.status == "completed"
    assert trace.usage == result.usage


async def test_attempts_retries_and_cost(
    trioflow_runtime: Runtime, autojump_clock: MockClock
) -> None:
    flaky = StubAgent([RuntimeError("overloaded"), TimeoutError("slow"), "drafted"])
    pipeline = AgentStep("draft", flaky, retry=RetryPolicy(max_attempts=3)) >> AgentStep(
        "review", priced("critic", "x" * 40)
    )

    result = await trioflow_runtime.run(pipeline, "abcd" * 5)

    trace = await assert_ran(result, trioflow_runtime, ["draft", "review"])
    assert trace.step("draft").attempts == 3
    assert trace.retries("draft") == [
        "attempt 1 agent_error: RuntimeError: overloaded",
        "attempt 2 agent_error: TimeoutError: slow",
    ]
    assert trace.retries("review") == []
    # "drafted" is 2 tokens in; 40 characters are 10 tokens out: (2 x $3 + 10 x $15) / 1M.
    assert trace.step("review").usage == Usage(Decimal("0.000156"), 2, 10)
    assert trace.step("main/1:review").cost_usd == Decimal("0.000156")
    assert trace.step("draft").cost_usd == 0
    assert trace.total_cost_usd == Decimal("0.000156")
    assert trace.step("review").output == "x" * 40


async def test_a_fallback_is_part_of_its_step(trioflow_runtime: Runtime) -> None:
    pipeline = AgentStep(
        "draft",
        StubAgent([RuntimeError("down"), RuntimeError("down")]),
        fallback=AgentStep("backup", StubAgent(["from the backup"])),
    )

    result = await trioflow_runtime.run(pipeline, "topic")

    trace = await assert_ran(result, trioflow_runtime, ["main/0:draft"])
    draft = trace.step("draft")
    assert (draft.success, draft.attempts, draft.output) == (True, 3, "from the backup")
    assert draft.metadata["fallback_triggered"] is True
    assert trace.notes("fallback") == ["backup"]


async def test_a_failed_run(trioflow_runtime: Runtime) -> None:
    pipeline = AgentStep("draft", StubAgent(["ok"])) >> AgentStep(
        "review", StubAgent([RuntimeError("no"), RuntimeError("still no")])
    )

    result = await trioflow_runtime.run(pipeline, "topic")

    trace = await assert_ran(result, trioflow_runtime, ["draft", "review"])
    assert trace.status == "failed"
    assert trace.error == "step 'main/1:review' failed (agent_error): RuntimeError: still no"
    assert [step.success for step in trace.steps] == [True, False]


async def test_a_run_stopped_by_a_limit(
    trioflow_store: InMemoryStore, trioflow_runtime: Runtime, autojump_clock: MockClock
) -> None:
    def model(name: str) -> FakeModel:
        return FakeModel(name, respond=lambda text: "y" * 400, max_output_tokens=100)

    pipeline = (
        AgentStep("one", model("a"))
        >> AgentStep("two", model("b"))
        >> AgentStep("three", model("c"))
    )

    with pytest.raises(UsageLimitExceeded) as caught:
        await trioflow_runtime.run(pipeline, "go", limits=UsageLimits(total_cost_usd="0.004"))

    assert caught.value.result is not None  # narrows Optional; exact checks follow
    trace = await assert_ran(caught.value.result, trioflow_store, ["one", "two", "three"])
    assert trace.status == "usage_limit"
    # one: 1 token in, 100 out; two: 100 in, 100 out ($3 and $15 per million).
    assert [step.cost_usd for step in trace.steps] == [
        Decimal("0.001503"),
        Decimal("0.0018"),
        Decimal(0),
    ]
    # The governor refused three's reservation: it is recorded, with no attempt.
    assert (trace.step("three").success, trace.step("three").attempts) == (False, 0)
    assert trace.total_cost_usd == Decimal("0.003303")


async def test_a_resumed_run_lists_each_step_once(trioflow_runtime: Runtime) -> None:
    pipeline = (
        AgentStep("draft", StubAgent(["drafted"]))
        >> Step.human_in_the_loop("approve", "Publish?", bool)
        >> AgentStep("publish", StubAgent(["published"]))
    )

    paused = await trioflow_runtime.run(pipeline, "topic")
    assert await ran_steps(paused, trioflow_runtime) == ["main/0:draft"]
    done = await trioflow_runtime.resume(paused.run_id, True)

    assert done.output == "published"
    await assert_ran(done, trioflow_runtime, ["draft", "approve", "publish"])


async def test_a_mismatch_says_what_ran(trioflow_runtime: Runtime) -> None:
    pipeline = AgentStep("draft", StubAgent(["d"])) >> AgentStep("review", StubAgent(["r"]))
    result = await trioflow_runtime.run(pipeline, "topic")

    with pytest.raises(AssertionError) as caught:
        await assert_ran(result, trioflow_runtime, ["review", "draft"])

    assert str(caught.value) == (
        f"run {result.run_id} (completed) ran ['draft', 'review'], expected ['review', 'draft']"
        "\n  paths that ran: ['main/0:draft', 'main/1:review']"
    )
    with pytest.raises(TypeError, match=r"^assert_ran wants a list of step names or paths"):
        await assert_ran(result, trioflow_runtime, "draft")


async def test_looking_up_a_step(trioflow_runtime: Runtime) -> None:
    result = await trioflow_runtime.run(build(), "hi")
    trace = await run_history(result, trioflow_runtime)

    assert trace.step("main/7:each/item[1]").output == "item(second)"
    with pytest.raises(KeyError, match="2 steps named 'item' ran"):
        trace.step("item")
    with pytest.raises(KeyError, match="no step named 'critic' ran; steps that ran: draft, "):
        trace.step("critic")
    with pytest.raises(KeyError, match="no step ran at 'main/9:x'; steps that ran: main/0:"):
        trace.step("main/9:x")
