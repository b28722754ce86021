"""loop_until: every iteration sees the one before it; exits, limits and mappers are exact."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    ConfigurationError,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    StepResult,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    WithPatch,
)
from trioflow.runtime.lowlevel import LoopStep


class Ctx(BaseContext):
    count: int = 0
    notes: list[str] = []


def counting(seen: list[Ctx] | None = None, *, cost: str | None = None) -> AgentStep:
    """A body step: adds 1 to ``count``, appends ``iter<n>``, outputs ``v<n>``."""

    async def body(data: Any, context: Ctx) -> Any:
        if seen is not None:
            seen.append(context)
        n = context.count + 1
        value = WithPatch(f"v{n}", [AddTo("count", 1), AppendTo("notes", f"iter{n}")])
        return value if cost is None else Completion(value, Usage(cost))

    return Step.from_callable(body, name="body")


def reached(count: int) -> Any:
    def condition(output: Any, context: Ctx) -> bool:
        return context.count == count

    return condition


def iteration(n: int, cost: str = "0", breach: str | None = None) -> StepResult:
    """The result of iteration ``n`` of ``counting()`` in a loop at ``main/0:loop``.

    The body is one step, so the iteration's result is that step's own, at
    the iteration's path. A breaching call is recorded as a success (it ran
    and was paid for) with the breach as its feedback.
    """
    return StepResult(
        "body",
        f"main/0:loop/loop[{n}]",
        output=f"v{n}",
        success=True,
        attempts=1,
        usage=Usage(cost),
        feedback=breach,
        patch=(AddTo("count", 1), AppendTo("notes", f"iter{n}")),
    )


async def test_each_iteration_sees_the_context_of_the_one_before(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[Ctx] = []
    loop = Step.loop_until("loop", counting(seen), reached(3), max_loops=10)

    result = await rt.run(loop, "x", context=Ctx())

    run_id = result.run_id
    assert seen == [
        Ctx(run_id=run_id),
        Ctx(run_id=run_id, count=1, notes=["iter1"]),
        Ctx(run_id=run_id, count=2, notes=["iter1", "iter2"]),
    ]
    assert result.status is RunStatus.COMPLETED
    assert result.output == "v3"
    assert result.context == Ctx(run_id=run_id, count=3, notes=["iter1", "iter2", "iter3"])
    assert result.step_history == (
        StepResult(
            "loop",
            "main/0:loop",
            output="v3",
            success=True,
            attempts=3,
            metadata={"exit_reason": "condition", "iterations": 3},
            patch=(
                AddTo("count", 1),
                AppendTo("notes", "iter1"),
                AddTo("count", 1),
                AppendTo("notes", "iter2"),
                AddTo("count", 1),
                AppendTo("notes", "iter3"),
            ),
            step_history=(iteration(1), iteration(2), iteration(3)),
        ),
    )


async def test_the_exit_condition_gets_the_output_and_the_updated_context(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[tuple[Any, Ctx]] = []

    async def done(output: Any, context: Ctx) -> bool:  # an async condition works too
        calls.append((output, context))
        return bool(output == "v2")

    result = await rt.run(Step.loop_until("loop", counting(), done), "x", context=Ctx())

    run_id = result.run_id
    assert calls == [
        ("v1", Ctx(run_id=run_id, count=1, notes=["iter1"])),
        ("v2", Ctx(run_id=run_id, count=2, notes=["iter1", "iter2"])),
    ]
    assert result.output == "v2"


async def test_a_multi_step_body_sees_its_own_earlier_steps_and_earlier_iterations(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[tuple[str, int, list[str]]] = []

    async def first(data: Any, context: Ctx) -> WithPatch:
        seen.append(("first", context.count, context.notes))
        return WithPatch(data, [AppendTo("notes", f"first{context.count}")])

    async def second(data: Any, context: Ctx) -> WithPatch:
        seen.append(("second", context.count, context.notes))
        return WithPatch(f"{data}!", [AddTo("count", 1)])

    body = Step.from_callable(first, name="first") >> Step.from_callable(second, name="second")
    loop = Step.loop_until("loop", body, reached(2))

    result = await rt.run(loop, "go", context=Ctx())

    assert seen == [
        ("first", 0, []),
        ("second", 0, ["first0"]),
        ("first", 1, ["first0"]),
        ("second", 1, ["first0", "first1"]),
    ]
    assert result.output == "go!!"
    assert result.context == Ctx(run_id=result.run_id, count=2, notes=["first0", "first1"])
    [loop_result] = result.step_history
    assert [[inner.path for inner in entry.step_history] for entry in loop_result.step_history] == [
        ["main/0:loop/loop[1]/0:first", "main/0:loop/loop[1]/1:second"],
        ["main/0:loop/loop[2]/0:first", "main/0:loop/loop[2]/1:second"],
    ]


async def test_steps_around_a_loop_see_its_updates(rt: Runtime, autojump_clock: Any) -> None:
    async def before(data: str) -> WithPatch:
        return WithPatch(data, [AppendTo("notes", "before")])

    async def after(data: str, context: Ctx) -> str:
        return f"{data} after {context.count} with {context.notes}"

    pipeline = (
        Step.from_callable(before, name="before")
        >> Step.loop_until("loop", counting(), reached(2))
        >> Step.from_callable(after, name="after")
    )

    result = await rt.run(pipeline, "x", context=Ctx())

    assert result.output == "v2 after 2 with ['before', 'iter1', 'iter2']"
    assert [entry.path for entry in result.step_history] == [
        "main/0:before",
        "main/1:loop",
        "main/2:after",
    ]


# --- how a loop ends without its condition -------------------------------------------------------


async def test_reaching_max_loops_is_a_failure_with_its_reason(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[Ctx] = []
    loop = Step.loop_until("loop", counting(seen), lambda output, context: False, max_loops=3)

    result = await rt.run(loop, "x", context=Ctx())

    message = "step 'main/0:loop' reached max_loops=3 without meeting its exit condition"
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert len(seen) == 3
    assert result.context == Ctx(run_id=result.run_id)  # a failed step changes nothing
    [loop_result] = result.step_history
    assert loop_result.success is False
    assert loop_result.output is None
    assert loop_result.attempts == 3
    assert loop_result.feedback == message
    assert loop_result.metadata == {"exit_reason": "max_loops", "iterations": 3}
    assert loop_result.step_history == (iteration(1), iteration(2), iteration(3))


async def test_max_loops_of_one_runs_the_body_once(rt: Runtime, autojump_clock: Any) -> None:
    seen: list[Ctx] = []
    loop = Step.loop_until("loop", counting(seen), reached(2), max_loops=1)

    result = await rt.run(loop, "x", context=Ctx())

    assert len(seen) == 1
    assert (
        result.error == "step 'main/0:loop' reached max_loops=1 without meeting its exit condition"
    )
    assert result.step_history[0].attempts == 1


async def test_a_failing_body_stops_the_loop_with_the_body_error(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[int] = []

    async def body(data: Any, context: Ctx) -> WithPatch:
        calls.append(context.count)
        if context.count == 1:
            raise RuntimeError("bad iteration 2")
        return WithPatch("ok", [AddTo("count", 1)])

    loop = Step.loop_until(
        "loop",
        Step.from_callable(body, name="body", retry=RetryPolicy(max_attempts=1)),
        lambda output, context: False,
        max_loops=5,
    )

    result = await rt.run(loop, "x", context=Ctx())

    message = "step 'main/0:loop/loop[2]' failed (agent_error): RuntimeError: bad iteration 2"
    assert calls == [0, 1]
    assert result.status is RunStatus.FAILED
    assert result.error == message
    [loop_result] = result.step_history
    assert loop_result.feedback == message
    assert loop_result.metadata == {"exit_reason": "body_failed", "iterations": 2}
    assert loop_result.attempts == 2
    assert [(entry.path, entry.success) for entry in loop_result.step_history] == [
        ("main/0:loop/loop[1]", True),
        ("main/0:loop/loop[2]", False),
    ]
    assert result.context == Ctx(run_id=result.run_id)


async def test_a_raising_exit_condition_fails_the_loop_naming_it(
    rt: Runtime, autojump_clock: Any
) -> None:
    def finished(output: Any, context: Ctx) -> bool:
        return 1 / (2 - context.count) == 0

    result = await rt.run(Step.loop_until("loop", counting(), finished), "x", context=Ctx())

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:loop': exit_condition finished raised ZeroDivisionError: division by zero"
    )
    [loop_result] = result.step_history
    assert loop_result.metadata == {"exit_reason": "callback_failed", "iterations": 2}


async def test_a_breach_in_iteration_k_stops_the_loop_there(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[Ctx] = []
    loop = Step.loop_until(
        "loop", counting(seen, cost="0.40"), lambda output, context: False, max_loops=10
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(loop, "x", context=Ctx(), limits=UsageLimits(total_cost_usd=1))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert len(seen) == 3
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.usage == Usage(Decimal("1.20"))
    # The breaching iteration ran and was paid for: its context changes are kept.
    assert result.context == Ctx(run_id=result.run_id, count=3, notes=["iter1", "iter2", "iter3"])
    [loop_result] = result.step_history
    assert loop_result.success is False
    assert loop_result.feedback == "Cost limit of $1.00 exceeded"
    assert loop_result.metadata == {"exit_reason": "usage_limit", "iterations": 3}
    assert loop_result.usage == Usage(Decimal("1.20"))
    assert loop_result.step_history == (
        iteration(1, "0.40"),
        iteration(2, "0.40"),
        iteration(3, "0.40", breach="Cost limit of $1.00 exceeded"),
    )


async def test_the_loop_usage_is_the_exact_sum_of_its_iterations(
    rt: Runtime, autojump_clock: Any
) -> None:
    loop = Step.loop_until("loop", counting(cost="0.1"), reached(10), max_loops=10)

    result = await rt.run(loop, "x", context=Ctx())

    assert result.status is RunStatus.COMPLETED
    assert result.step_history[0].usage == Usage(Decimal("1.0"))
    assert result.total_cost_usd == Decimal("1.0")


# --- mappers -------------------------------------------------------------------------------------


async def test_input_mappers_and_the_output_mapper(rt: Runtime, autojump_clock: Any) -> None:
    inputs: list[Any] = []

    async def body(data: str) -> WithPatch:
        inputs.append(data)
        return WithPatch(f"[{data}]", [AddTo("count", 1)])

    def first_input(data: str, context: Ctx) -> str:
        return f"init({data},{context.count})"

    def next_input(output: str, context: Ctx, iteration: int) -> str:
        return f"{output}>{iteration}@{context.count}"

    async def final_output(output: str, context: Ctx) -> str:
        return f"final({output},{context.count})"

    loop = Step.loop_until(
        "loop",
        Step.from_callable(body, name="body"),
        reached(3),
        initial_input_mapper=first_input,
        iteration_input_mapper=next_input,
        output_mapper=final_output,
    )

    result = await rt.run(loop, "in", context=Ctx())

    assert inputs == [
        "init(in,0)",
        "[init(in,0)]>1@1",
        "[[init(in,0)]>1@1]>2@2",
    ]
    assert result.output == "final([[[init(in,0)]>1@1]>2@2],3)"
    assert [entry.output for entry in result.step_history[0].step_history] == [
        "[init(in,0)]",
        "[[init(in,0)]>1@1]",
        "[[[init(in,0)]>1@1]>2@2]",
    ]


async def test_without_an_iteration_mapper_each_output_is_the_next_input(
    rt: Runtime, autojump_clock: Any
) -> None:
    inputs: list[int] = []

    async def double(data: int) -> int:
        inputs.append(data)
        return data * 2

    loop = Step.loop_until(
        "loop", Step.from_callable(double, name="double"), lambda output, context: output > 20
    )

    result = await rt.run(loop, 3)

    assert inputs == [3, 6, 12]
    assert result.output == 24


@pytest.mark.parametrize(
    "role", ["initial_input_mapper", "iteration_input_mapper", "output_mapper"]
)
async def test_a_raising_mapper_fails_the_loop_naming_its_role(
    rt: Runtime, autojump_clock: Any, role: str
) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("missing")

    loop = Step.loop_until("loop", counting(), reached(2), **{role: broken})

    result = await rt.run(loop, "x", context=Ctx())

    assert result.status is RunStatus.FAILED
    assert result.error == f"step 'main/0:loop': {role} broken raised KeyError: 'missing'"
    assert result.step_history[0].metadata["exit_reason"] == "callback_failed"


# --- building ------------------------------------------------------------------------------------


def test_a_loop_step_keeps_its_options() -> None:
    body = counting()
    condition = reached(1)
    loop = Step.loop_until("loop", body, condition, max_loops=7)

    assert isinstance(loop, LoopStep)
    assert loop.body.steps == (body,)
    assert loop.exit_condition is condition
    assert loop.max_loops == 7
    assert Step.loop_until("loop", body, condition).max_loops == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_loops": 0}, r"^step 'loop': max_loops must be >= 1$"),
        ({"max_loops": -3}, r"^step 'loop': max_loops must be >= 1$"),
        ({"max_loops": True}, r"^step 'loop': max_loops must be an int$"),
        ({"max_loops": 2.0}, r"^step 'loop': max_loops must be an int$"),
    ],
)
def test_a_bad_max_loops_is_refused_when_building(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Step.loop_until("loop", counting(), reached(1), **options)


def test_an_exit_condition_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match=r"^step 'loop': exit_condition must be callable$"):
        Step.loop_until("loop", counting(), "done")  # type: ignore[arg-type]


# --- iteration_input_mapper maps the input of the next iteration only ---------------------------


def recording_mapper(calls: list[int], *, fail_from: int | None = None) -> Any:
    def next_input(output: str, context: Ctx, iteration: int) -> str:
        calls.append(iteration)
        if fail_from is not None and iteration >= fail_from:
            raise ValueError(f"no input after iteration {iteration}")
        return f"{output}>"

    return next_input


async def test_the_iteration_mapper_is_not_called_after_the_last_iteration(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[int] = []
    loop = Step.loop_until(
        "loop", counting(), reached(99), max_loops=2, iteration_input_mapper=recording_mapper(calls)
    )

    result = await rt.run(loop, "x", context=Ctx())

    assert calls == [1]
    assert result.status is RunStatus.FAILED
    assert result.step_history[0].metadata == {"exit_reason": "max_loops", "iterations": 2}
    assert result.error == (
        "step 'main/0:loop' reached max_loops=2 without meeting its exit condition"
    )


async def test_a_mapper_that_cannot_map_past_the_last_iteration_leaves_max_loops_the_reason(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[int] = []
    mapper = recording_mapper(calls, fail_from=2)
    loop = Step.loop_until(
        "loop", counting(), reached(99), max_loops=2, iteration_input_mapper=mapper
    )

    result = await rt.run(loop, "x", context=Ctx())

    assert calls == [1]
    assert result.step_history[0].metadata == {"exit_reason": "max_loops", "iterations": 2}


async def test_the_iteration_mapper_is_not_called_when_the_exit_condition_holds(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[int] = []
    loop = Step.loop_until(
        "loop", counting(), reached(2), max_loops=5, iteration_input_mapper=recording_mapper(calls)
    )

    result = await rt.run(loop, "x", context=Ctx())

    assert calls == [1]
    assert result.status is RunStatus.COMPLETED
    assert result.output == "v2"
    assert result.step_history[0].metadata == {"exit_reason": "condition", "iterations": 2}


async def test_the_iteration_mapper_across_a_pause_in_each_iteration(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[int] = []
    body = counting() >> Step.human_in_the_loop("ask", "Go on?", bool)
    loop = Step.loop_until(
        "loop", body, reached(99), max_loops=2, iteration_input_mapper=recording_mapper(calls)
    )

    first = await rt.run(loop, "x", context=Ctx())
    assert (first.status, calls) == (RunStatus.PAUSED, [])

    second = await rt.resume(first.run_id, True)
    # Iteration 1 is answered, so iteration 2 gets its input; then it pauses.
    assert (second.status, calls) == (RunStatus.PAUSED, [1])

    third = await rt.resume(first.run_id, True)
    # The resume re-walks iteration 1 (its mapper runs again for iteration 2's input);
    # after iteration 2, the last, there is no next input to map.
    assert (third.status, calls) == (RunStatus.FAILED, [1, 1])
    assert third.step_history[0].metadata == {"exit_reason": "max_loops", "iterations": 2}
