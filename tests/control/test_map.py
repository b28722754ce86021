"""map_over: one body run per item, a bounded number at once, results in input order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    ConfigurationError,
    Merge,
    OnBranchFailure,
    RetryPolicy,
    RunStatus,
    Runtime,
    SetField,
    Step,
    StepResult,
    Usage,
    WithPatch,
)
from trioflow.runtime.lowlevel import DEFAULT_MAP_CONCURRENCY, MapStep


class Ctx(BaseContext):
    topics: list[str] = []
    name: str = ""
    total: int = 0
    seen: list[str] = []
    last: int = -1


class Gauge:
    """Counts the bodies running at once and remembers the most there ever were."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[Any] = []

    def body(self, *, seconds: float = 1.0) -> AgentStep:
        async def work(item: Any) -> str:
            self.started.append(item)
            self.running += 1
            self.most = max(self.most, self.running)
            await trio.sleep(seconds)
            self.running -= 1
            return f"done-{item}"

        return Step.from_callable(work, name="work")


def item_body(*, log: list[Any] | None = None, fail_on: Any = None, delay: Any = None) -> AgentStep:
    """``body(item) -> f"item{item}"``; optionally logs, fails on one item, or waits."""

    async def body(item: Any) -> str:
        if delay is not None:
            await trio.sleep(delay(item))
        if item == fail_on:
            raise RuntimeError(f"bad item {item}")
        if log is not None:
            log.append(item)
        return f"item{item}"

    return Step.from_callable(body, name="body", retry=RetryPolicy(max_attempts=1))


# --- items and order -----------------------------------------------------------------------------


async def test_results_are_in_input_order_not_completion_order(
    rt: Runtime, autojump_clock: Any
) -> None:
    finished: list[int] = []
    mapped = Step.map_over("map", item_body(log=finished, delay=lambda item: 6 - item))

    result = await rt.run(mapped, [0, 1, 2, 3, 4, 5])

    assert finished == [5, 4, 3, 2, 1, 0]
    assert result.status is RunStatus.COMPLETED
    assert result.output == ["item0", "item1", "item2", "item3", "item4", "item5"]
    [map_result] = result.step_history
    assert map_result.metadata == {"items": 6}
    assert map_result.latency_s == 6.0
    assert [entry.path for entry in map_result.step_history] == [
        f"main/0:map/item[{index}]" for index in range(6)
    ]
    assert map_result.step_history[3] == StepResult(
        "body",
        "main/0:map/item[3]",
        output="item3",
        success=True,
        attempts=1,
        latency_s=3.0,
    )


async def test_items_may_come_from_a_context_field(rt: Runtime, autojump_clock: Any) -> None:
    mapped = Step.map_over("map", item_body(), items_from="topics")
    assert mapped.items_from == "topics"

    result = await rt.run(mapped, "the input is not used", context=Ctx(topics=["x", "y", "z"]))

    assert result.output == ["itemx", "itemy", "itemz"]


async def test_every_item_sees_the_same_snapshot_and_their_patches_merge(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[tuple[int, Ctx]] = []

    async def body(item: int, context: Ctx) -> WithPatch:
        await trio.sleep(10 - item)
        seen.append((item, context))
        return WithPatch(item * item, [AddTo("total", item), AppendTo("seen", f"i{item}")])

    async def start(data: list[int]) -> WithPatch:
        return WithPatch(data, [SetField("name", "started")])

    pipeline = Step.from_callable(start, name="start") >> Step.map_over(
        "map", Step.from_callable(body, name="body")
    )

    result = await rt.run(pipeline, [1, 2, 3, 4], context=Ctx())

    snapshot = Ctx(run_id=result.run_id, name="started")
    assert seen == [(4, snapshot), (3, snapshot), (2, snapshot), (1, snapshot)]
    assert result.output == [1, 4, 9, 16]
    # Appends merge in input order, whatever order the items finished in.
    assert result.context == Ctx(
        run_id=result.run_id, name="started", total=10, seen=["i1", "i2", "i3", "i4"]
    )


@pytest.mark.parametrize(
    ("items", "output"),
    [
        ((1, 2), ["item1", "item2"]),
        (["a", "b", "c"], ["itema", "itemb", "itemc"]),
        ({"k1": 1, "k2": 2}, ["itemk1", "itemk2"]),
        ([], []),
    ],
)
async def test_any_iterable_of_items_is_mapped(
    rt: Runtime, autojump_clock: Any, items: Any, output: list[str]
) -> None:
    result = await rt.run(Step.map_over("map", item_body()), items)

    assert result.status is RunStatus.COMPLETED
    assert result.output == output
    assert result.step_history[0].metadata == {"items": len(output)}


@pytest.mark.parametrize(
    ("items", "shown"),
    [
        ("abc", "str: 'abc'"),
        (b"abc", "bytes: b'abc'"),
        (5, "int: 5"),
        (None, "NoneType: None"),
    ],
)
async def test_a_string_or_non_iterable_input_is_a_clear_failure(
    rt: Runtime, autojump_clock: Any, items: Any, shown: str
) -> None:
    ran: list[Any] = []

    result = await rt.run(Step.map_over("map", item_body(log=ran)), items)

    assert ran == []
    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:map' maps over its input, which must be an iterable of items "
        f"(not a string), got {shown}"
    )


async def test_a_string_context_field_is_a_clear_failure(rt: Runtime, autojump_clock: Any) -> None:
    mapped = Step.map_over("map", item_body(), items_from="name")

    result = await rt.run(mapped, None, context=Ctx(name="abc"))

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:map' maps over context field 'name', which must be an iterable of items "
        "(not a string), got str: 'abc'"
    )


async def test_an_unknown_context_field_is_a_clear_failure(
    rt: Runtime, autojump_clock: Any
) -> None:
    mapped = Step.map_over("map", item_body(), items_from="nope")

    result = await rt.run(mapped, None, context=Ctx())

    assert result.status is RunStatus.FAILED
    assert (
        result.error == "step 'main/0:map' maps over context field 'nope', which Ctx does not have"
    )


# --- concurrency ---------------------------------------------------------------------------------


async def test_exactly_max_concurrency_items_run_at_once(rt: Runtime, autojump_clock: Any) -> None:
    gauge = Gauge()
    mapped = Step.map_over("map", gauge.body(seconds=1), max_concurrency=7)
    assert mapped.max_concurrency == 7
    started = trio.current_time()

    result = await rt.run(mapped, list(range(50)))

    assert gauge.most == 7
    assert gauge.running == 0
    assert gauge.started == list(range(50))  # started in input order
    assert trio.current_time() - started == 8.0  # ceil(50 / 7) rounds of one second
    assert result.output == [f"done-{item}" for item in range(50)]


async def test_the_default_concurrency_limit(rt: Runtime, autojump_clock: Any) -> None:
    gauge = Gauge()

    result = await rt.run(Step.map_over("map", gauge.body()), list(range(40)))

    assert DEFAULT_MAP_CONCURRENCY == 16
    assert gauge.most == 16
    assert result.output == [f"done-{item}" for item in range(40)]


async def test_fewer_items_than_the_limit_all_run_at_once(rt: Runtime, autojump_clock: Any) -> None:
    gauge = Gauge()
    started = trio.current_time()

    await rt.run(Step.map_over("map", gauge.body(), max_concurrency=10), [1, 2, 3])

    assert gauge.most == 3
    assert trio.current_time() - started == 1.0


async def test_a_limit_of_one_runs_the_items_one_after_another(
    rt: Runtime, autojump_clock: Any
) -> None:
    gauge = Gauge()
    started = trio.current_time()

    result = await rt.run(Step.map_over("map", gauge.body(), max_concurrency=1), [3, 1, 2])

    assert gauge.most == 1
    assert trio.current_time() - started == 3.0
    assert result.output == ["done-3", "done-1", "done-2"]


# --- failures ------------------------------------------------------------------------------------


async def test_a_failing_item_cancels_the_running_ones_under_propagate(
    rt: Runtime, autojump_clock: Any
) -> None:
    finished: list[int] = []
    body = item_body(log=finished, fail_on=1, delay=lambda item: 0.5 if item == 1 else 1.0)
    mapped = Step.map_over("map", body, max_concurrency=2)
    assert mapped.on_item_failure is OnBranchFailure.PROPAGATE

    result = await rt.run(mapped, [0, 1, 2, 3, 4, 5])

    item_error = "step 'main/0:map/item[1]' failed (agent_error): RuntimeError: bad item 1"
    assert finished == []
    assert result.status is RunStatus.FAILED
    assert result.error == f"branch 'item[1]' failed: {item_error}"
    [map_result] = result.step_history
    assert map_result.metadata == {
        "items": 6,
        "failed_branches": {"item[1]": item_error},
        "cancelled_branches": ["item[0]"],
        "not_started": ["item[2]", "item[3]", "item[4]", "item[5]"],
        "stop_reason": "branch 'item[1]' failed",
    }


async def test_failing_items_are_reported_under_ignore(rt: Runtime, autojump_clock: Any) -> None:
    mapped = Step.map_over("map", item_body(fail_on=2), on_item_failure="ignore")

    result = await rt.run(mapped, [1, 2, 3, 2])

    assert result.status is RunStatus.COMPLETED
    assert result.output == ["item1", None, "item3", None]
    assert result.step_history[0].metadata == {
        "items": 4,
        "failed_branches": {
            "item[1]": "step 'main/0:map/item[1]' failed (agent_error): RuntimeError: bad item 2",
            "item[3]": "step 'main/0:map/item[3]' failed (agent_error): RuntimeError: bad item 2",
        },
    }


async def test_every_item_failing_under_ignore_fails_the_step(
    rt: Runtime, autojump_clock: Any
) -> None:
    mapped = Step.map_over("map", item_body(fail_on=7), on_item_failure=OnBranchFailure.IGNORE)

    result = await rt.run(mapped, [7])

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "every branch failed; first: 'item[0]': "
        "step 'main/0:map/item[0]' failed (agent_error): RuntimeError: bad item 7"
    )


async def test_items_setting_one_field_differently_conflict(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def body(item: int) -> WithPatch:
        return WithPatch(item, [SetField("last", item)])

    step = Step.from_callable(body, name="body")

    conflicting = await rt.run(Step.map_over("map", step), [5, 6, 7], context=Ctx())
    overwriting = await rt.run(
        Step.map_over("map", step, merge=Merge.OVERWRITE), [5, 6, 7], context=Ctx()
    )

    assert conflicting.error == (
        "step 'main/0:map': branches 'item[0]' and 'item[1]' conflict on context field 'last': "
        "'item[0]' sets 5, 'item[1]' sets 6"
    )
    assert overwriting.context == Ctx(run_id=overwriting.run_id, last=7)


# --- scale ---------------------------------------------------------------------------------------


async def test_a_map_over_ten_thousand_items_is_exact(rt: Runtime) -> None:
    async def body(item: int) -> Completion:
        return Completion(WithPatch(item * 2, [AddTo("total", item)]), Usage("0.0001", 1, 2))

    mapped = Step.map_over("map", Step.from_callable(body, name="body"), max_concurrency=64)

    result = await rt.run(mapped, list(range(10_000)), context=Ctx())

    assert result.status is RunStatus.COMPLETED
    assert result.output == [item * 2 for item in range(10_000)]
    assert result.context == Ctx(run_id=result.run_id, total=49_995_000)
    assert result.usage == Usage(Decimal("1.0000"), 10_000, 20_000)
    assert result.total_cost_usd == Decimal("1")
    [map_result] = result.step_history
    assert map_result.metadata == {"items": 10_000}
    assert len(map_result.step_history) == 10_000
    last = map_result.step_history[9_999]
    assert (last.name, last.path, last.step_history) == ("body", "main/0:map/item[9999]", ())


# --- building ------------------------------------------------------------------------------------


def test_a_map_step_keeps_its_options() -> None:
    body = item_body()
    mapped = Step.map_over("map", body, items_from="topics", max_concurrency=3)

    assert isinstance(mapped, MapStep)
    assert mapped.body.steps == (body,)
    assert mapped.max_concurrency == 3
    assert mapped.merge is Merge.ERROR_ON_CONFLICT
    assert mapped.on_item_failure is OnBranchFailure.PROPAGATE


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (0, r"^step 'map': max_concurrency must be >= 1$"),
        (-1, r"^step 'map': max_concurrency must be >= 1$"),
        (True, r"^step 'map': max_concurrency must be an int$"),
        (2.5, r"^step 'map': max_concurrency must be an int$"),
    ],
)
def test_a_bad_concurrency_limit_is_refused_when_building(limit: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Step.map_over("map", item_body(), max_concurrency=limit)


def test_a_bad_failure_policy_is_refused_when_building() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'map': on_branch_failure must be 'propagate' or 'ignore', got 'skip'$",
    ):
        Step.map_over("map", item_body(), on_item_failure="skip")
