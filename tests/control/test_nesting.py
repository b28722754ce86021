"""Control-flow steps inside one another: paths stay exact and every update reaches the top."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Pipeline,
    RetryPolicy,
    RunStatus,
    Runtime,
    SetField,
    Step,
    StepResult,
    WithPatch,
)
from trioflow.runtime.lowlevel import PatchOp


class Ctx(BaseContext):
    total: int = 0
    rounds: int = 0
    side: str = ""
    log: list[str] = []


def act(name: str, *ops: PatchOp, output: Any = None, delay: float = 0.0) -> AgentStep:
    async def run(data: Any) -> WithPatch:
        if delay:
            await trio.sleep(delay)
        return WithPatch(f"{name}({data})" if output is None else output, ops)

    return Step.from_callable(run, name=name)


def paths(results: Iterable[StepResult]) -> list[str]:
    """Every path in a history tree, depth first."""
    found: list[str] = []
    for result in results:
        found.append(result.path)
        found.extend(paths(result.step_history))
    return found


# --- nested pipelines ----------------------------------------------------------------------------


async def test_a_nested_pipeline_update_reaches_the_outer_pipeline(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    seen: list[tuple[str, Ctx]] = []

    def looking(name: str, *ops: PatchOp) -> AgentStep:
        async def run(data: str, context: Ctx) -> WithPatch:
            seen.append((name, context))
            return WithPatch(f"{data}>{name}", ops)

        return Step.from_callable(run, name=name)

    inner = (
        looking("i0", AppendTo("log", "i0"), AddTo("total", 5))
        >> looking("i1", SetField("side", "inner"), AppendTo("log", "i1"))
    ).named("inner")
    outer = (
        looking("first", AppendTo("log", "first"))
        >> inner.as_step()
        >> looking("last", AppendTo("log", "last"))
    )

    result = await rt.run(outer, "in", context=Ctx())

    run_id = result.run_id
    assert result.status is RunStatus.COMPLETED
    assert result.output == "in>first>i0>i1>last"
    assert result.context == Ctx(
        run_id=run_id, total=5, side="inner", log=["first", "i0", "i1", "last"]
    )
    assert seen == [
        ("first", Ctx(run_id=run_id)),
        ("i0", Ctx(run_id=run_id, log=["first"])),
        ("i1", Ctx(run_id=run_id, total=5, log=["first", "i0"])),
        ("last", Ctx(run_id=run_id, total=5, side="inner", log=["first", "i0", "i1"])),
    ]
    [first, nested, last] = result.step_history
    assert nested == StepResult(
        "inner",
        "main/1:inner",
        output="in>first>i0>i1",
        success=True,
        attempts=1,
        patch=(
            AppendTo("log", "i0"),
            AddTo("total", 5),
            SetField("side", "inner"),
            AppendTo("log", "i1"),
        ),
        step_history=(
            StepResult(
                "i0",
                "main/1:inner/0:i0",
                output="in>first>i0",
                success=True,
                attempts=1,
                patch=(AppendTo("log", "i0"), AddTo("total", 5)),
            ),
            StepResult(
                "i1",
                "main/1:inner/1:i1",
                output="in>first>i0>i1",
                success=True,
                attempts=1,
                patch=(SetField("side", "inner"), AppendTo("log", "i1")),
            ),
        ),
    )
    assert (first.path, last.path) == ("main/0:first", "main/2:last")
    # Each step is journaled when it completes: a nested pipeline after its steps.
    journal = [record.path for record in await trioflow_store.steps_of(run_id)]
    assert journal == [
        "main/0:first",
        "main/1:inner/0:i0",
        "main/1:inner/1:i1",
        "main/1:inner",
        "main/2:last",
        "main",
    ]


async def test_pipelines_nest_three_deep_with_their_own_paths(
    rt: Runtime, autojump_clock: Any
) -> None:
    deepest = Pipeline.of(act("d", AddTo("total", 100)), name="deepest")
    middle = (act("m", AddTo("total", 10)) >> deepest.as_step()).named("middle")
    top = act("t", AddTo("total", 1)) >> middle.as_step("mid")

    result = await rt.run(top, "x", context=Ctx())

    assert result.output == "d(m(t(x)))"
    assert result.context == Ctx(run_id=result.run_id, total=111)
    assert paths(result.step_history) == [
        "main/0:t",
        "main/1:mid",
        "main/1:mid/0:m",
        "main/1:mid/1:deepest",
        "main/1:mid/1:deepest/0:d",
    ]


async def test_a_failing_nested_pipeline_fails_the_outer_one_with_its_error(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []

    async def broken(data: Any) -> str:
        raise RuntimeError("inner trouble")

    async def after(data: Any) -> str:
        ran.append("after")
        return "never"

    inner = (
        act("ok", AppendTo("log", "lost"))
        >> Step.from_callable(broken, name="broken", retry=RetryPolicy(max_attempts=1))
    ).named("inner")
    outer = inner.as_step() >> Step.from_callable(after, name="after")

    result = await rt.run(outer, "x", context=Ctx())

    message = "step 'main/0:inner/1:broken' failed (agent_error): RuntimeError: inner trouble"
    assert ran == []
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert result.context == Ctx(run_id=result.run_id)
    [nested] = result.step_history
    assert nested.feedback == message
    assert [(entry.path, entry.success) for entry in nested.step_history] == [
        ("main/0:inner/0:ok", True),
        ("main/0:inner/1:broken", False),
    ]


async def test_nested_pipelines_as_parallel_branches_and_map_bodies(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def each(item: int) -> WithPatch:
        return WithPatch(item + 1, [AddTo("total", item)])

    body = (Step.from_callable(each, name="each") >> act("tag")).named("body")
    branch = (act("b0", AppendTo("log", "b0")) >> act("b1", AppendTo("log", "b1"))).named("seq")
    pipeline = Step.parallel(
        "par",
        {"seq": branch.as_step(), "items": Step.map_over("map", body.as_step(), items_from="log")},
    )

    result = await rt.run(pipeline, "x", context=Ctx(log=["1", "2"]))

    assert result.status is RunStatus.FAILED  # "1" + 1 is not an int: see the next assertion
    assert result.error == (
        "branch 'items' failed: branch 'item[0]' failed: step "
        "'main/0:par/items/item[0]/0:each' failed (agent_error): "
        'TypeError: can only concatenate str (not "int") to str'
    )

    class Numbers(BaseContext):
        numbers: list[int] = []
        log: list[str] = []
        total: int = 0

    pipeline = Step.parallel(
        "par",
        {
            "seq": branch.as_step(),
            "items": Step.map_over("map", body.as_step(), items_from="numbers"),
        },
    )

    result = await rt.run(pipeline, "x", context=Numbers(numbers=[3, 4]))

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"seq": "b1(b0(x))", "items": ["tag(4)", "tag(5)"]}
    assert result.context == Numbers(
        run_id=result.run_id, numbers=[3, 4], log=["b0", "b1"], total=7
    )
    # A branch (or item body) of one step runs at the branch's (item's) own path; when that
    # step is a nested pipeline, its steps are beneath it.
    assert paths(result.step_history) == [
        "main/0:par",
        "main/0:par/seq",
        "main/0:par/seq/0:b0",
        "main/0:par/seq/1:b1",
        "main/0:par/items",
        "main/0:par/items/item[0]",
        "main/0:par/items/item[0]/0:each",
        "main/0:par/items/item[0]/1:tag",
        "main/0:par/items/item[1]",
        "main/0:par/items/item[1]/0:each",
        "main/0:par/items/item[1]/1:tag",
    ]
    [par] = result.step_history
    assert [(entry.name, entry.path) for entry in par.step_history] == [
        ("seq", "main/0:par/seq"),
        ("map", "main/0:par/items"),
    ]
    assert [entry.name for entry in par.step_history[1].step_history] == ["body", "body"]


# --- parallel inside loop inside parallel --------------------------------------------------------


async def test_parallel_inside_loop_inside_parallel(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    seen: list[tuple[str, Ctx]] = []

    def fan_branch(name: str, add: int, delay: float) -> AgentStep:
        async def run(data: Any, context: Ctx) -> WithPatch:
            await trio.sleep(delay)
            seen.append((name, context))
            tag = f"{name}{context.rounds}"
            return WithPatch(tag, [AppendTo("log", tag), AddTo("total", add)])

        return Step.from_callable(run, name=name)

    async def bump(data: dict[str, str]) -> WithPatch:
        return WithPatch(f"{data['p']}+{data['q']}", [AddTo("rounds", 1)])

    # p finishes after q in every round; the merge is still in declaration order.
    fan = Step.parallel("fan", {"p": fan_branch("p", 1, 2), "q": fan_branch("q", 10, 1)})
    rounds = Step.loop_until(
        "rounds",
        fan >> Step.from_callable(bump, name="bump"),
        lambda output, context: context.rounds == 2,
    )
    outer = Step.parallel(
        "outer",
        {
            "left": rounds,
            "right": act(
                "right", SetField("side", "right"), AppendTo("log", "right"), output="r", delay=1
            ),
        },
    )

    result = await rt.run(outer, "go", context=Ctx(log=["start"]))

    run_id = result.run_id
    assert result.status is RunStatus.COMPLETED
    assert result.output == {"left": "p1+q1", "right": "r"}
    assert result.context == Ctx(
        run_id=run_id,
        total=22,
        rounds=2,
        side="right",
        log=["start", "p0", "q0", "p1", "q1", "right"],
    )
    # Round two's branches saw round one's merged context, and never the "right" branch.
    after_round_one = Ctx(run_id=run_id, total=11, rounds=1, log=["start", "p0", "q0"])
    assert seen == [
        ("q", Ctx(run_id=run_id, log=["start"])),
        ("p", Ctx(run_id=run_id, log=["start"])),
        ("q", after_round_one),
        ("p", after_round_one),
    ]
    assert trio.current_time() == 4.0
    # The "left" branch is the loop itself; each round (fan, then bump) is a pipeline.
    loop = "main/0:outer/left"
    assert paths(result.step_history) == [
        "main/0:outer",
        loop,
        f"{loop}/loop[1]",
        f"{loop}/loop[1]/0:fan",
        f"{loop}/loop[1]/0:fan/p",
        f"{loop}/loop[1]/0:fan/q",
        f"{loop}/loop[1]/1:bump",
        f"{loop}/loop[2]",
        f"{loop}/loop[2]/0:fan",
        f"{loop}/loop[2]/0:fan/p",
        f"{loop}/loop[2]/0:fan/q",
        f"{loop}/loop[2]/1:bump",
        "main/0:outer/right",
    ]
    [outer_result] = result.step_history
    [loop_result, right] = outer_result.step_history
    assert (right.name, right.output, right.patch) == (
        "right",
        "r",
        (SetField("side", "right"), AppendTo("log", "right")),
    )
    assert loop_result.name == "rounds"
    assert loop_result.metadata == {"exit_reason": "condition", "iterations": 2}
    assert [entry.output for entry in loop_result.step_history] == ["p0+q0", "p1+q1"]
    assert loop_result.step_history[1].step_history[0].output == {"p": "p1", "q": "q1"}
    assert outer_result.patch == (
        AppendTo("log", "p0"),
        AddTo("total", 1),
        AppendTo("log", "q0"),
        AddTo("total", 10),
        AddTo("rounds", 1),
        AppendTo("log", "p1"),
        AddTo("total", 1),
        AppendTo("log", "q1"),
        AddTo("total", 10),
        AddTo("rounds", 1),
        SetField("side", "right"),
        AppendTo("log", "right"),
    )
    # Every step path of the tree has its completion record, and so has the run's top.
    journal = [record.path for record in await trioflow_store.steps_of(run_id)]
    assert sorted(journal) == sorted(["main", *paths(result.step_history)])


async def test_a_conditional_inside_a_loop_picks_per_iteration(
    rt: Runtime, autojump_clock: Any
) -> None:
    choose = Step.branch_on(
        "cond",
        lambda data, context: "even" if context.rounds % 2 == 0 else "odd",
        {
            "even": act("e", AppendTo("log", "even"), AddTo("rounds", 1)),
            "odd": act("o", AppendTo("log", "odd"), AddTo("rounds", 1)),
        },
    )
    loop = Step.loop_until("loop", choose, lambda output, context: context.rounds == 3)

    result = await rt.run(loop, "x", context=Ctx())

    assert result.context == Ctx(run_id=result.run_id, rounds=3, log=["even", "odd", "even"])
    assert paths(result.step_history) == [
        "main/0:loop",
        "main/0:loop/loop[1]",
        "main/0:loop/loop[1]/even",
        "main/0:loop/loop[2]",
        "main/0:loop/loop[2]/odd",
        "main/0:loop/loop[3]",
        "main/0:loop/loop[3]/even",
    ]
    # Each iteration is the conditional itself; each chosen branch is its one step.
    [loop_result] = result.step_history
    assert [
        (iteration.name, iteration.metadata, [branch.name for branch in iteration.step_history])
        for iteration in loop_result.step_history
    ] == [
        ("cond", {"branch_key": "even"}, ["e"]),
        ("cond", {"branch_key": "odd"}, ["o"]),
        ("cond", {"branch_key": "even"}, ["e"]),
    ]
