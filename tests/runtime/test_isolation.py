"""Many runs at once on one runtime: each keeps its own output, context, id and totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AddTo,
    AppendTo,
    BaseContext,
    Completion,
    PipelineResult,
    RunStatus,
    Runtime,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    WithPatch,
    open_runtime,
    step,
)


class RunContext(BaseContext):
    tag: str = ""
    trail: list[str] = pydantic.Field(default_factory=list)
    spent: int = 0


def delay_of(resources: Any, index: int, default: float) -> float:
    """The sleep a run's resources give step ``index``, in hundredths of a second."""
    return resources["delays"][index] / 100 if resources else default


@step
async def scale(number: int, *, context: RunContext, resources: Any) -> Completion:
    await trio.sleep(delay_of(resources, 0, default=(number % 7) / 100))
    return Completion(
        WithPatch(number * 10, [AppendTo("trail", f"scale:{context.tag}"), AddTo("spent", number)]),
        Usage(Decimal(number) / 100, number, 1),
    )


@step
async def label(number: int, *, context: RunContext, resources: Any) -> Completion:
    await trio.sleep(delay_of(resources, 1, default=((number * 3) % 5) / 100))
    return Completion(
        WithPatch(
            f"{context.tag}={number}",
            [AppendTo("trail", f"label:{context.tag}:{number}:{context.spent}")],
        ),
        Usage(Decimal("0.001"), 2, 3),
    )


PIPELINE = scale >> label


def expected_usage(number: int) -> Usage:
    return Usage(Decimal(number) / 100 + Decimal("0.001"), number + 2, 4)


def check_run(result: PipelineResult, number: int) -> None:
    tag = f"run{number}"
    assert result.status is RunStatus.COMPLETED
    assert result.output == f"{tag}={number * 10}"
    assert result.context.tag == tag
    assert result.context.trail == [f"scale:{tag}", f"label:{tag}:{number * 10}:{number}"]
    assert result.context.spent == number
    assert result.context.run_id == result.run_id
    assert result.usage == expected_usage(number)
    assert result.total_cost_usd == sum(
        (entry.cost_usd for entry in result.step_history), Decimal(0)
    )
    assert [entry.path for entry in result.step_history] == ["main/0:scale", "main/1:label"]


async def test_a_hundred_concurrent_runs_do_not_see_each_other(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    results: dict[int, PipelineResult] = {}

    async def one(number: int) -> None:
        results[number] = await rt.run(PIPELINE, number, context=RunContext(tag=f"run{number}"))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for number in range(100):
            nursery.start_soon(one, number)

    # the runs overlapped: the whole batch took as long as the slowest run (6/100 + 0)
    assert trio.current_time() - started == 0.06

    assert sorted(results) == list(range(100))
    for number, result in results.items():
        check_run(result, number)
    assert len({result.run_id for result in results.values()}) == 100

    for number, result in results.items():
        steps = await trioflow_store.steps_of(result.run_id)
        assert [(s.path, s.output) for s in steps] == [
            ("main/0:scale", number * 10),
            ("main/1:label", f"run{number}={number * 10}"),
            ("main", f"run{number}={number * 10}"),
        ]
        record = await trioflow_store.get_run(result.run_id)
        assert record.status == "completed"
        assert record.input == number
        assert Decimal(record.total_cost_usd) == expected_usage(number).cost_usd


async def test_one_shared_initial_context_is_not_shared_state(
    rt: Runtime, autojump_clock: Any
) -> None:
    shared = RunContext(tag="same")
    results: list[PipelineResult] = []

    async def one(number: int) -> None:
        results.append(await rt.run(PIPELINE, number, context=shared))

    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(one, number)

    assert shared == RunContext(tag="same")
    for result in results:
        number = result.context.spent
        assert result.context.trail == ["scale:same", f"label:same:{number * 10}:{number}"]
        assert result.output == f"same={number * 10}"
    assert sorted(result.context.spent for result in results) == list(range(20))
    assert len({result.context.run_id for result in results}) == 20


async def test_a_breach_in_one_run_does_not_stop_the_others(
    rt: Runtime, autojump_clock: Any
) -> None:
    # a run costs number/100 + 0.001: within $0.05 for 0..4; run 5 breaches on its last
    # step (0.051), runs 6..9 on their first (0.06 and up)
    limits = UsageLimits(total_cost_usd="0.05")
    completed: dict[int, PipelineResult] = {}
    breached: dict[int, PipelineResult] = {}

    async def one(number: int) -> None:
        context = RunContext(tag=f"run{number}")
        if number < 5:
            completed[number] = await rt.run(PIPELINE, number, context=context, limits=limits)
            return
        with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.05 exceeded$") as caught:
            await rt.run(PIPELINE, number, context=context, limits=limits)
        result = caught.value.result
        assert isinstance(result, PipelineResult)
        breached[number] = result

    async with trio.open_nursery() as nursery:
        for number in range(10):
            nursery.start_soon(one, number)

    assert sorted(completed) == [0, 1, 2, 3, 4]
    for number, result in completed.items():
        check_run(result, number)
    assert sorted(breached) == [5, 6, 7, 8, 9]
    assert [len(breached[number].step_history) for number in range(5, 10)] == [2, 1, 1, 1, 1]
    assert breached[5].usage == expected_usage(5)
    for number in range(6, 10):
        assert breached[number].usage == Usage(Decimal(number) / 100, number, 1)
        assert breached[number].status is RunStatus.USAGE_LIMIT


# --- scheduling does not change results ----------------------------------------------------------


async def _run_all(delays: list[tuple[int, int]]) -> list[PipelineResult]:
    results: dict[int, PipelineResult] = {}
    async with open_runtime() as runtime:

        async def one(number: int) -> None:
            results[number] = await runtime.run(
                PIPELINE,
                number,
                context=RunContext(tag=f"run{number}"),
                resources={"delays": delays[number]},
            )

        async with trio.open_nursery() as nursery:
            for number in range(len(delays)):
                nursery.start_soon(one, number)
    return [results[number] for number in range(len(delays))]


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50)),
        min_size=1,
        max_size=12,
    )
)
def test_results_do_not_depend_on_scheduling(delays: list[tuple[int, int]]) -> None:
    results = trio.run(_run_all, delays, clock=trio.testing.MockClock(autojump_threshold=0))

    assert len(results) == len(delays)
    for number, result in enumerate(results):
        check_run(result, number)
    assert len({result.run_id for result in results}) == len(delays)


class Tagged(BaseContext):
    tags: list[str] = Field(default_factory=list)


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
