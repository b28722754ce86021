"""The runner: run_sync, what the store records, and the trace of a run."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, StepRecord, UnknownRun
from trioflow.runtime import (
    AddTo,
    AgentStep,
    BaseContext,
    Completion,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    WithPatch,
    run_sync,
    step,
)
from trioflow.runtime.agents import StubAgent


class Tally(BaseContext):
    total: int = 0


@step
async def add_one(number: int) -> Completion:
    return Completion(WithPatch(number + 1, [AddTo("total", number)]), Usage("0.01", 1, 1))


def priced(name: str, output: Any, cost: str, tokens: tuple[int, int] = (0, 0)) -> AgentStep:
    return AgentStep(name, StubAgent([Completion(output, Usage(cost, *tokens))]))


# --- run_sync ------------------------------------------------------------------------------------


def test_run_sync_from_sync_code() -> None:
    pipeline = priced("a", "A", "0.10", (3, 4)) >> priced("b", "B", "0.20", (5, 6))

    result = run_sync(pipeline, "x", context=Tally(total=7))

    assert isinstance(result, PipelineResult)
    assert result.status is RunStatus.COMPLETED
    assert result.status == "completed"
    assert result.success is True
    assert result.output == "B"
    assert result.usage == Usage(Decimal("0.30"), 8, 10)
    assert result.context.total == 7
    assert result.context.run_id == result.run_id
    assert [entry.path for entry in result.step_history] == ["main/0:a", "main/1:b"]


def test_run_sync_with_limits_raises_usage_limit_exceeded() -> None:
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.05 exceeded$"):
        run_sync(priced("a", "A", "0.10"), "x", limits=UsageLimits(total_cost_usd="0.05"))


def test_run_sync_passes_resources() -> None:
    @step
    async def use(text: str, *, resources: dict[str, int]) -> int:
        return resources["n"] + len(text)

    assert run_sync(use, "abc", resources={"n": 10}).output == 13


# --- the store -----------------------------------------------------------------------------------


async def test_store_records_a_completed_run(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    pipeline = priced("a", "A", "0.10", (1, 2)) >> priced("b", "B", "0.25", (3, 4))

    result = await rt.run(pipeline, "in")

    record = await trioflow_store.get_run(result.run_id)
    assert record.run_id == result.run_id
    assert record.status == "completed"
    assert record.pipeline_name == "pipeline"
    assert record.input == "in"
    assert record.output == "B"
    assert Decimal(record.total_cost_usd) == Decimal("0.35")
    assert record.total_tokens == 10
    assert record.error is None
    assert record.started_at.tzinfo is datetime.UTC
    assert isinstance(record.finished_at, datetime.datetime)
    assert record.finished_at >= record.started_at

    steps = await trioflow_store.steps_of(result.run_id)
    assert [(s.path, s.name, s.success, s.output, s.attempts) for s in steps] == [
        ("main/0:a", "a", True, "A", 1),
        ("main/1:b", "b", True, "B", 1),
        ("main", "pipeline", True, "B", 1),  # the top pipeline's own record comes last
    ]
    assert [(Decimal(s.cost_usd), s.input_tokens, s.output_tokens) for s in steps] == [
        (Decimal("0.10"), 1, 2),
        (Decimal("0.25"), 3, 4),
        (Decimal("0.35"), 4, 6),
    ]
    assert steps[-1].children == ("main/0:a", "main/1:b")
    assert {s.run_id for s in steps} == {result.run_id}


async def test_store_records_a_failed_run_up_to_the_failing_step(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    unreached = StubAgent(["never"])
    pipeline = (
        priced("a", "A", "0")
        >> AgentStep("b", StubAgent([RuntimeError("b broke")]), retry=RetryPolicy(max_attempts=1))
        >> AgentStep("c", unreached)
    )

    result = await rt.run(pipeline, "in")

    assert result.status is RunStatus.FAILED
    record = await trioflow_store.get_run(result.run_id)
    assert record.status == "failed"
    assert record.error == "step 'main/1:b' failed (agent_error): RuntimeError: b broke"
    assert record.output is None
    steps = await trioflow_store.steps_of(result.run_id)
    assert [(s.path, s.success) for s in steps] == [
        ("main/0:a", True),
        ("main/1:b", False),
        ("main", False),
    ]
    assert unreached.calls == 0


async def test_store_records_a_usage_limit_run(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    pipeline = priced("a", "A", "0.60") >> priced("b", "B", "0.60")

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(pipeline, "in", limits=UsageLimits(total_cost_usd=1))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    record = await trioflow_store.get_run(result.run_id)
    assert record.status == "usage_limit"
    assert record.error == "Cost limit of $1.00 exceeded"
    assert Decimal(record.total_cost_usd) == Decimal("1.20")
    steps = await trioflow_store.steps_of(result.run_id)
    assert [(s.path, s.success, s.breach) for s in steps] == [
        ("main/0:a", True, None),
        ("main/1:b", True, "Cost limit of $1.00 exceeded"),
        ("main", False, "Cost limit of $1.00 exceeded"),
    ]


async def test_store_has_one_record_per_step_path_of_a_nested_pipeline(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    inner = (add_one >> add_one).named("inner")
    pipeline = Pipeline.of(add_one, inner.as_step(), add_one)

    result = await rt.run(pipeline, 1, context=Tally())

    assert result.output == 5
    assert result.context.total == 1 + 2 + 3 + 4
    steps = await trioflow_store.steps_of(result.run_id)
    assert sorted(s.path for s in steps) == [
        "main",
        "main/0:add_one",
        "main/1:inner",
        "main/1:inner/0:add_one",
        "main/1:inner/1:add_one",
        "main/2:add_one",
    ]
    by_path: dict[str, StepRecord] = {s.path: s for s in steps}
    assert by_path["main/1:inner"].cost_usd == "0.02"
    assert by_path["main/1:inner"].patch == (AddTo("total", 2), AddTo("total", 3))
    assert by_path["main/2:add_one"].patch == (AddTo("total", 4),)


async def test_store_lists_every_run(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    first = await rt.run(priced("a", "A", "0"), "1")
    second = await rt.run(priced("a", "A", "0"), "2")

    runs = await trioflow_store.list_runs()
    assert [run.run_id for run in runs] == [first.run_id, second.run_id]
    with pytest.raises(UnknownRun, match="no run with id 'nope' is stored"):
        await trioflow_store.get_run("nope")


async def test_a_cancelled_run_is_recorded_as_cancelled(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    @step
    async def forever(text: str) -> str:
        await trio.sleep(1000)
        return text

    with trio.move_on_after(5):
        await rt.run(forever, "x")

    [record] = await trioflow_store.list_runs()
    assert record.status == "cancelled"


# --- the trace -----------------------------------------------------------------------------------


async def test_trace_has_spawn_events_for_main_governor_and_every_step(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    inner = Pipeline.of(priced("x", "X", "0"), name="inner")
    pipeline = priced("a", "A", "0") >> inner.as_step() >> priced("b", "B", "0")

    result = await rt.run(pipeline, "in")

    events = await trioflow_store.trace_of(result.run_id)
    spawned = [event.path for event in events if event.kind is TraceKind.SPAWN]
    assert spawned == [
        "governor",
        "main",
        "main/0:a",
        "main/1:inner",
        "main/1:inner/0:x",
        "main/2:b",
    ]
    parents = {event.path: event.peer for event in events if event.kind is TraceKind.SPAWN}
    assert parents["main/0:a"] == "main"
    assert parents["main/1:inner/0:x"] == "main/1:inner"


async def test_trace_records_each_step_exit(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    result = await rt.run(priced("a", "A", "0") >> priced("b", "B", "0"), "in")

    events = await trioflow_store.trace_of(result.run_id)
    exits = {event.path: event.label for event in events if event.kind is TraceKind.EXIT}
    assert exits["main/0:a"] == "ok"
    assert exits["main/1:b"] == "ok"
    assert exits["main"] == "ok"


async def test_trace_records_retries_with_their_reason(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    agent = StubAgent([RuntimeError("first try"), "ok"])

    result = await rt.run(AgentStep("s", agent), "in")

    notes = [
        (event.path, event.label, event.detail)
        for event in await trioflow_store.trace_of(result.run_id)
        if event.kind is TraceKind.NOTE and event.label == "retry"
    ]
    assert notes == [("main/0:s", "retry", "attempt 1 agent_error: RuntimeError: first try")]


async def test_result_step_lookup(rt: Runtime) -> None:
    result = await rt.run(priced("a", "A", "0") >> priced("b", "B", "0"), "in")

    assert result.step("b").output == "B"
    with pytest.raises(KeyError, match="no step named 'zzz'"):
        result.step("zzz")


async def test_a_watcher_that_raises_is_dropped_and_the_run_goes_on(rt: Runtime) -> None:
    class Broken:
        def record(self, event: TraceEvent) -> None:
            raise ValueError("display crashed")

    @step
    async def shout(text: str) -> str:
        return text.upper()

    with pytest.warns(UserWarning, match="trace watcher dropped after it raised ValueError"):
        result = await rt.run(shout, "hi", watch=Broken())

    assert result.output == "HI"
