"""Property proofs: a loop carries its context from each iteration to the next.

Each example draws a loop (its maximum, its exit threshold, how many
parallel branches its body fans out to) and a delay for every step of every
iteration, applied with ``trio.sleep`` under trio's ``MockClock``. Every
iteration must see every earlier iteration's updates, so a counter added to
once per iteration equals the number of iterations, exactly; the loop ends
for the reason the plan predicts, after exactly as many attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import trio
import trio.testing
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    Pipeline,
    PipelineResult,
    RunStatus,
    Step,
    StepResult,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    WithPatch,
    open_runtime,
    step,
)
from trioflow.runtime.lowlevel import apply_patch

DELAYS = st.lists(st.sampled_from([0, 0.5, 1, 2, 3]), min_size=1, max_size=24)
LOOP_PATH = "main/0:loop"


class Tally(BaseContext):
    counter: int = 0
    trail: list[tuple[int, int]] = []


def run_on_mock_clock(
    pipeline: Pipeline, context: Tally, limits: UsageLimits | None = None
) -> tuple[PipelineResult, str | None]:
    """The run's result and, if a usage limit stopped it, the breach message."""

    async def main() -> tuple[PipelineResult, str | None]:
        async with open_runtime(store=InMemoryStore()) as rt:
            try:
                return await rt.run(pipeline, "go", context=context, limits=limits), None
            except UsageLimitExceeded as error:
                assert isinstance(error.result, PipelineResult)  # noqa: PT017 (inside trio.run)
                return error.result, error.message

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def cycling(delays: list[float], salt: int) -> float:
    return delays[salt % len(delays)]


def at_least(threshold: int) -> Callable[[object, Tally], bool]:
    def exit_condition(output: object, context: Tally) -> bool:
        return context.counter >= threshold

    return exit_condition


@given(
    max_loops=st.integers(1, 10),
    threshold=st.integers(1, 12),
    width=st.integers(1, 4),
    delays=DELAYS,
)
@settings(max_examples=150, deadline=None, database=None)
def test_every_iteration_sees_every_earlier_update(
    max_loops: int, threshold: int, width: int, delays: list[float]
) -> None:
    seen_by_tick: list[int] = []
    seen_after: list[int] = []

    @step
    async def tick(data: object, context: Tally) -> WithPatch:
        seen_by_tick.append(context.counter)
        await trio.sleep(cycling(delays, context.counter * 7))
        return WithPatch(context.counter + 1, [AddTo("counter", 1)])

    def mark(branch: int) -> AgentStep:
        @step(name=f"mark{branch}")
        async def mark_iteration(data: int, context: Tally) -> WithPatch:
            await trio.sleep(cycling(delays, data * 5 + branch))
            assert data == context.counter  # tick's output and its update arrive together
            return WithPatch(branch, [AppendTo("trail", (context.counter, branch))])

        return mark_iteration

    @step
    async def after(data: object, context: Tally) -> int:
        seen_after.append(context.counter)
        return context.counter

    fan = Step.parallel("fan", {f"m{branch}": mark(branch) for branch in range(width)})
    loop = Step.loop_until("loop", tick >> fan, at_least(threshold), max_loops=max_loops)
    start = Tally(counter=0, trail=[])

    result, breach = run_on_mock_clock(Pipeline.of(loop, after, context_type=Tally), start)

    note(f"seen by tick: {seen_by_tick}")
    assert breach is None
    met = threshold <= max_loops
    event("condition" if met else "max_loops")
    iterations = threshold if met else max_loops
    trail = [
        (iteration, branch) for iteration in range(1, iterations + 1) for branch in range(width)
    ]
    assert seen_by_tick == list(range(iterations))
    looped: StepResult = result.step_history[0]
    assert looped.path == LOOP_PATH
    assert looped.attempts == iterations
    assert looped.metadata == {
        "exit_reason": "condition" if met else "max_loops",
        "iterations": iterations,
    }
    assert [entry.path for entry in looped.step_history] == [
        f"{LOOP_PATH}/loop[{iteration}]" for iteration in range(1, iterations + 1)
    ]
    assert all(entry.success for entry in looped.step_history)
    carried = apply_patch(start, looped.patch, step="check")
    assert (carried.counter, carried.trail) == (iterations, trail)
    if met:
        assert result.status is RunStatus.COMPLETED, result.error
        assert looped.success is True
        assert looped.output == {f"m{branch}": branch for branch in range(width)}
        assert (result.context.counter, result.context.trail) == (threshold, trail)
        assert seen_after == [threshold]
        assert result.output == threshold
    else:
        assert result.status is RunStatus.FAILED
        assert looped.success is False
        assert result.error == (
            f"step '{LOOP_PATH}' reached max_loops={max_loops} without meeting its exit condition"
        )
        # A failed step's changes do not reach its parent's context.
        assert (result.context.counter, result.context.trail) == (0, [])
        assert seen_after == []


@given(
    max_loops=st.integers(1, 10),
    threshold=st.integers(1, 12),
    cost=st.decimals(min_value=Decimal("0.01"), max_value=1, places=2),
    limit=st.decimals(min_value=0, max_value=5, places=2),
    delays=DELAYS,
)
@settings(max_examples=150, deadline=None, database=None)
def test_a_usage_limit_stops_the_loop_in_the_iteration_that_breaches(
    max_loops: int, threshold: int, cost: Decimal, limit: Decimal, delays: list[float]
) -> None:
    seen: list[int] = []

    @step
    async def paid(data: object, context: Tally) -> Completion:
        seen.append(context.counter)
        await trio.sleep(cycling(delays, context.counter))
        return Completion(WithPatch(context.counter + 1, [AddTo("counter", 1)]), Usage(cost))

    loop = Step.loop_until("loop", paid, at_least(threshold), max_loops=max_loops)
    pipeline = Pipeline.of(loop, context_type=Tally)

    result, breach = run_on_mock_clock(pipeline, Tally(), UsageLimits(total_cost_usd=limit))

    breaching = int(limit // cost) + 1  # the first iteration whose commit goes above the limit
    if breaching <= min(threshold, max_loops):
        exit_reason, iterations = "usage_limit", breaching
    elif threshold <= max_loops:
        exit_reason, iterations = "condition", threshold
    else:
        exit_reason, iterations = "max_loops", max_loops
    note(f"expected {exit_reason} after {iterations}; seen {seen}")
    event(exit_reason)
    looped: StepResult = result.step_history[0]
    assert seen == list(range(iterations))
    assert looped.attempts == iterations
    assert looped.metadata == {"exit_reason": exit_reason, "iterations": iterations}
    assert result.usage == Usage(cost * iterations)
    assert looped.usage == Usage(cost * iterations)
    assert [entry.usage for entry in looped.step_history] == [Usage(cost)] * iterations
    if exit_reason == "usage_limit":
        assert breach == f"Cost limit of ${limit:,.2f} exceeded"
        assert result.status is RunStatus.USAGE_LIMIT
        assert (looped.success, looped.feedback) == (False, breach)
        # The breaching iteration was paid for: its update is kept, like every earlier one.
        assert result.context.counter == iterations
    else:
        assert breach is None
        assert result.status is (
            RunStatus.COMPLETED if exit_reason == "condition" else RunStatus.FAILED
        )
        assert result.context.counter == (iterations if exit_reason == "condition" else 0)
