"""Property proofs: a stopped fan-out leaves nothing running and says exactly what it stopped.

Each example draws a parallel step (or a map-over) whose branches are a
single step, two steps in sequence, or a nested parallel step, each with
drawn whole-second delays under trio's ``MockClock``; one trigger branch
fails, breaches the run's cost limit, or is refused its reservation at a
drawn half-second. No other step ends at that instant, so which branches
finished, which were cancelled and which never started follows from the
plan alone, and the run must report exactly that:

* every step function that was entered has exited by the time ``rt.run``
  returns (a cancelled one through ``trio.Cancelled``);
* every cancelled branch's actor has a ``CANCEL`` trace event at its path
  whose detail is the stop reason, and no other actor was cancelled;
* the step's ``metadata["cancelled_branches"]`` lists exactly those branches.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

import attrs
import trio
import trio.testing
from hypothesis import given, note, settings
from hypothesis import strategies as st
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Step,
    StepResult,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime.lowlevel import ParallelStep

PARALLEL_PATH = "main/0:par"
MAP_PATH = "main/0:map"
NO_RETRY = RetryPolicy(max_attempts=1)
Branch = AgentStep | ParallelStep | Pipeline


@attrs.define
class Tracker:
    """What the step functions did: who entered, and how each one left."""

    entered: list[str] = attrs.field(factory=list)
    left: dict[str, str] = attrs.field(factory=dict)
    #: Functions still running when ``rt.run`` returned.
    running_after_run: set[str] | None = None


def tracked(
    name: str,
    delay: float,
    tracker: Tracker,
    *,
    fail: bool = False,
    cost: str = "0",
    estimate: str | None = None,
) -> AgentStep:
    """A step that sleeps ``delay``, then raises (``fail``) or returns at a ``cost``."""

    @step(
        name=name,
        retry=NO_RETRY,
        usage_estimate=None if estimate is None else Usage(estimate),
    )
    async def work(data: object) -> Completion:
        tracker.entered.append(name)
        how = "raised"
        try:
            await trio.sleep(delay)
            if fail:
                raise RuntimeError(f"boom {name}")
            how = "returned"
            return Completion(name, Usage(cost))
        except trio.Cancelled:
            how = "cancelled"
            raise
        finally:
            tracker.left[name] = how

    return work


@attrs.frozen
class Shape:
    """A non-trigger branch: one step, two in sequence, or a parallel of two."""

    kind: str
    first: int
    second: int

    def functions(self, index: int) -> list[str]:
        return [f"w{index}a"] if self.kind == "single" else [f"w{index}a", f"w{index}b"]

    def ends(self) -> list[float]:
        """When each function returns if nothing stops the branch."""
        if self.kind == "single":
            return [self.first]
        if self.kind == "pair":
            return [self.first, self.first + self.second]
        return [self.first, self.second]

    def finish(self) -> float:
        return max(self.ends())

    def entered_before(self, index: int, stop: float) -> list[str]:
        names = self.functions(index)
        if self.kind == "pair" and self.first > stop:
            return names[:1]  # the second step never started
        return names

    def returned_before(self, index: int, stop: float) -> list[str]:
        return [
            name for name, end in zip(self.functions(index), self.ends(), strict=True) if end < stop
        ]

    def result_name(self, index: int) -> str:
        """The name of the branch's result: a one-step body is its step, at the branch's path."""
        return {"single": f"w{index}a", "pair": f"b{index}", "nested": "inner"}[self.kind]

    def build(self, index: int, tracker: Tracker, **options: str) -> Branch:
        first, second = self.functions(index)[0], f"w{index}b"
        if self.kind == "single":
            return tracked(first, self.first, tracker, **options)
        a = tracked(first, self.first, tracker, **options)
        b = tracked(second, self.second, tracker, **options)
        if self.kind == "pair":
            return a >> b
        return Step.parallel("inner", {"x": a, "y": b})


@attrs.frozen
class FanPlan:
    shapes: tuple[Shape, ...]
    trigger: int
    stop_at: float

    @property
    def names(self) -> list[str]:
        return [f"b{index}" for index in range(len(self.shapes))]

    def cancelled(self) -> list[str]:
        return [
            f"b{index}"
            for index, shape in enumerate(self.shapes)
            if index != self.trigger and shape.finish() > self.stop_at
        ]

    def finished(self) -> list[str]:
        cancelled = self.cancelled()
        return [name for name in self.names if name not in cancelled]

    def finished_results(self) -> list[tuple[str, str]]:
        """Name and path of each finished branch's result; the trigger is a single step."""
        finished = self.finished()
        return [
            (
                f"w{index}a" if index == self.trigger else shape.result_name(index),
                f"{PARALLEL_PATH}/b{index}",
            )
            for index, shape in enumerate(self.shapes)
            if f"b{index}" in finished
        ]

    def others(self) -> list[tuple[int, Shape]]:
        return [(index, shape) for index, shape in enumerate(self.shapes) if index != self.trigger]


@st.composite
def fan_plans(draw: st.DrawFn, *, min_delay: int = 0) -> FanPlan:
    branches = draw(st.integers(2, 8))
    delays = st.integers(min_delay, 6)
    shapes = tuple(
        Shape(draw(st.sampled_from(["single", "pair", "nested"])), draw(delays), draw(delays))
        for _ in range(branches)
    )
    # A half second: no other step ends at the instant the trigger stops the fan-out.
    stop_at = draw(st.integers(0, 5)) + 0.5
    return FanPlan(shapes, draw(st.integers(0, branches - 1)), stop_at)


def run_traced(
    pipeline: Branch, data: object, tracker: Tracker, limits: UsageLimits | None = None
) -> tuple[PipelineResult, str | None, list[TraceEvent]]:
    async def main() -> tuple[PipelineResult, str | None, list[TraceEvent]]:
        store = InMemoryStore()
        async with open_runtime(store=store) as rt:
            breach = None
            try:
                result = await rt.run(pipeline, data, limits=limits)
            except UsageLimitExceeded as error:
                assert isinstance(error.result, PipelineResult)  # noqa: PT017 (inside trio.run)
                result, breach = error.result, error.message
            tracker.running_after_run = set(tracker.entered) - set(tracker.left)
            trace = await store.trace_of(result.run_id)
        return result, breach, trace

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def assert_nothing_left_running(tracker: Tracker) -> None:
    assert tracker.running_after_run == set()
    assert Counter(tracker.entered) == Counter(set(tracker.left))  # each entered once, and left


def assert_cancelled_exactly(
    trace: list[TraceEvent], under: str, cancelled: Sequence[str], reason: str
) -> None:
    """Each cancelled branch's actor (and only actors inside one) was cancelled for ``reason``."""
    events = [event for event in trace if event.kind is TraceKind.CANCEL]
    at = [f"{under}/{name}" for name in cancelled]
    for path in at:
        assert [event.detail for event in events if event.path == path] == [reason], path
    for event in events:
        assert event.detail == reason, event
        assert any(event.path == path or event.path.startswith(f"{path}/") for path in at), event


def assert_metadata_apart_from_the_trigger(
    parallel: StepResult, expected: dict[str, object], trigger: str
) -> None:
    """Exact metadata: the branch that hit the limit is listed as breached, not failed."""
    assert parallel.metadata == {**expected, "breached_branches": [trigger]}


def assert_fan_out_stopped(
    plan: FanPlan, tracker: Tracker, trace: list[TraceEvent], parallel: StepResult, reason: str
) -> None:
    note(f"entered: {tracker.entered}; left: {tracker.left}")
    assert_nothing_left_running(tracker)
    cancelled = plan.cancelled()
    assert_cancelled_exactly(trace, PARALLEL_PATH, cancelled, reason)
    assert parallel.metadata.get("cancelled_branches", []) == cancelled
    assert "not_started" not in parallel.metadata
    assert parallel.metadata["stop_reason"] == reason
    assert [(entry.name, entry.path) for entry in parallel.step_history] == plan.finished_results()
    for index, shape in plan.others():
        entered = shape.entered_before(index, plan.stop_at)
        returned = shape.returned_before(index, plan.stop_at)
        mine = [name for name in tracker.entered if name in shape.functions(index)]
        assert sorted(mine) == sorted(entered), f"b{index}"
        for name in entered:
            assert tracker.left[name] == ("returned" if name in returned else "cancelled"), name


# --- a failed branch ------------------------------------------------------------------------------


@given(plan=fan_plans())
@settings(max_examples=150, deadline=None, database=None)
def test_a_failed_branch_cancels_every_running_sibling(plan: FanPlan) -> None:
    tracker = Tracker()
    branches: dict[str, Branch] = {}
    for index, shape in enumerate(plan.shapes):
        if index == plan.trigger:
            branches[f"b{index}"] = tracked(f"w{index}a", plan.stop_at, tracker, fail=True)
        else:
            branches[f"b{index}"] = shape.build(index, tracker)

    result, breach, trace = run_traced(Step.parallel("par", branches), "go", tracker)

    trigger = f"b{plan.trigger}"
    reason = f"branch {trigger!r} failed"
    failure = f"step '{PARALLEL_PATH}/{trigger}' failed (agent_error): "
    failure += f"RuntimeError: boom w{plan.trigger}a"
    assert breach is None
    assert result.status is RunStatus.FAILED
    assert result.error == f"branch {trigger!r} failed: {failure}"
    parallel: StepResult = result.step_history[0]
    expected_metadata: dict[str, object] = {"failed_branches": {trigger: failure}}
    if plan.cancelled():
        expected_metadata["cancelled_branches"] = plan.cancelled()
    expected_metadata["stop_reason"] = reason
    assert parallel.metadata == expected_metadata
    assert tracker.left[f"w{plan.trigger}a"] == "raised"
    assert_fan_out_stopped(plan, tracker, trace, parallel, reason)


# --- a usage limit breached at commit -------------------------------------------------------------


@given(plan=fan_plans())
@settings(max_examples=150, deadline=None, database=None)
def test_a_breach_cancels_every_running_sibling(plan: FanPlan) -> None:
    tracker = Tracker()
    branches: dict[str, Branch] = {}
    for index, shape in enumerate(plan.shapes):
        if index == plan.trigger:  # alone above the limit: the breach is its commit
            branches[f"b{index}"] = tracked(f"w{index}a", plan.stop_at, tracker, cost="1.00")
        else:  # at most 14 cents in all
            branches[f"b{index}"] = shape.build(index, tracker, cost="0.01")

    result, breach, trace = run_traced(
        Step.parallel("par", branches), "go", tracker, UsageLimits(total_cost_usd="0.50")
    )

    assert breach == "Cost limit of $0.50 exceeded"
    reason = f"usage limit: {breach}"
    assert result.status is RunStatus.USAGE_LIMIT
    parallel: StepResult = result.step_history[0]
    expected_metadata: dict[str, object] = {}
    if plan.cancelled():
        expected_metadata["cancelled_branches"] = plan.cancelled()
    expected_metadata["stop_reason"] = reason
    assert_metadata_apart_from_the_trigger(parallel, expected_metadata, f"b{plan.trigger}")
    paid = sum(len(shape.returned_before(index, plan.stop_at)) for index, shape in plan.others())
    assert result.usage == Usage(Decimal("1.00") + Decimal("0.01") * paid)
    assert tracker.left[f"w{plan.trigger}a"] == "returned"
    assert_fan_out_stopped(plan, tracker, trace, parallel, reason)


# --- a reservation refused (strict mode) ----------------------------------------------------------


@given(plan=fan_plans(min_delay=1))
@settings(max_examples=150, deadline=None, database=None)
def test_a_refused_reservation_cancels_every_running_sibling(plan: FanPlan) -> None:
    tracker = Tracker()
    branches: dict[str, Branch] = {}
    for index, shape in enumerate(plan.shapes):
        if index == plan.trigger:  # needs more than the whole limit: refused at once
            branches[f"b{index}"] = tracked(f"w{index}a", 1, tracker, estimate="5.00")
        else:
            branches[f"b{index}"] = shape.build(index, tracker, cost="0.01", estimate="0.01")

    result, breach, trace = run_traced(
        Step.parallel("par", branches), "go", tracker, UsageLimits(total_cost_usd="1.00")
    )

    assert breach is not None  # narrows Optional; exact checks follow
    trigger_path = f"{PARALLEL_PATH}/b{plan.trigger}"
    assert breach.startswith(
        f"Cost limit of $1.00 would be exceeded: step '{trigger_path}' needs up to $5.00, 0 tokens"
    )
    reason = f"usage limit: {breach}"
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.usage == Usage(0)
    parallel: StepResult = result.step_history[0]
    # Refused at t=0, before any sibling (each sleeps at least a second) could finish.
    cancelled = [name for name in plan.names if name != f"b{plan.trigger}"]
    expected_metadata = {"cancelled_branches": cancelled, "stop_reason": reason}
    assert_metadata_apart_from_the_trigger(parallel, expected_metadata, f"b{plan.trigger}")
    assert [(entry.name, entry.path) for entry in parallel.step_history] == [
        (f"w{plan.trigger}a", trigger_path)
    ]
    assert f"w{plan.trigger}a" not in tracker.entered
    assert_nothing_left_running(tracker)
    assert set(tracker.left.values()) <= {"cancelled"}
    assert_cancelled_exactly(trace, PARALLEL_PATH, cancelled, reason)


# --- map-over with a concurrency limit ------------------------------------------------------------


@attrs.frozen
class MapPlan:
    delays: tuple[float, ...]
    max_concurrency: int
    failing: int

    def schedule(self) -> tuple[dict[int, float], dict[int, float], float]:
        """Start and end time of every item that starts, and when the failing one stops all."""
        starts: dict[int, float] = {}
        ends: dict[int, float] = {}
        running: list[tuple[float, int]] = []
        waiting = list(range(len(self.delays)))
        for _ in range(min(self.max_concurrency, len(waiting))):
            item = waiting.pop(0)
            starts[item] = 0
            heapq.heappush(running, (self.delays[item], item))
        while True:
            end, item = heapq.heappop(running)
            ends[item] = end
            if item == self.failing:
                return starts, ends, end
            if waiting:  # a finished item frees its place for the next one
                following = waiting.pop(0)
                starts[following] = end
                heapq.heappush(running, (end + self.delays[following], following))


@st.composite
def map_plans(draw: st.DrawFn) -> MapPlan:
    items = draw(st.integers(2, 12))
    failing = draw(st.integers(0, items - 1))
    delays = [float(draw(st.integers(0, 4))) for _ in range(items)]
    delays[failing] += 0.5  # only the failing item ends on a half second
    return MapPlan(tuple(delays), draw(st.integers(1, items)), failing)


@given(plan=map_plans())
@settings(max_examples=150, deadline=None, database=None)
def test_a_failed_item_stops_the_map_exactly_where_the_schedule_says(plan: MapPlan) -> None:
    tracker = Tracker()
    entered_at: dict[int, float] = {}

    @step(retry=NO_RETRY)
    async def item_work(item: int) -> int:
        name = f"item{item}"
        tracker.entered.append(name)
        entered_at[item] = trio.current_time()
        how = "raised"
        try:
            await trio.sleep(plan.delays[item])
            if item == plan.failing:
                raise RuntimeError(f"boom {item}")
            how = "returned"
            return item * 10
        except trio.Cancelled:
            how = "cancelled"
            raise
        finally:
            tracker.left[name] = how

    mapped = Step.map_over("map", item_work, max_concurrency=plan.max_concurrency)
    items = list(range(len(plan.delays)))

    result, breach, trace = run_traced(mapped, items, tracker)

    starts, ends, stop = plan.schedule()
    note(f"starts {starts}, ends {ends}, stop at {stop}; entered at {entered_at}")
    finished = [item for item in items if item in ends]
    cancelled = [item for item in starts if item not in ends]
    not_started = [item for item in items if item not in starts]
    trigger = f"item[{plan.failing}]"
    reason = f"branch {trigger!r} failed"
    failure = f"step '{MAP_PATH}/{trigger}' failed (agent_error): "
    failure += f"RuntimeError: boom {plan.failing}"
    assert breach is None
    assert result.status is RunStatus.FAILED
    assert result.error == f"branch {trigger!r} failed: {failure}"
    mapping: StepResult = result.step_history[0]
    expected_metadata: dict[str, object] = {"items": len(items)}
    expected_metadata["failed_branches"] = {trigger: failure}
    if cancelled:
        expected_metadata["cancelled_branches"] = [f"item[{item}]" for item in cancelled]
    if not_started:
        expected_metadata["not_started"] = [f"item[{item}]" for item in not_started]
    expected_metadata["stop_reason"] = reason
    assert mapping.metadata == expected_metadata
    assert [(entry.name, entry.path) for entry in mapping.step_history] == [
        ("item_work", f"{MAP_PATH}/item[{i}]") for i in finished
    ]
    assert entered_at == starts
    assert_nothing_left_running(tracker)
    for item in starts:
        expected = "cancelled" if item in cancelled else "returned"
        assert tracker.left[f"item{item}"] == ("raised" if item == plan.failing else expected)
    assert_cancelled_exactly(trace, MAP_PATH, [f"item[{item}]" for item in cancelled], reason)
