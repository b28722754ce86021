"""Usage limits in concurrent branches: a breach stops siblings; strict budgets never overshoot."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.actors import TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
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
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import PatchOp


class Ctx(BaseContext):
    rounds: int = 0
    log: list[str] = []


def paid(
    name: str,
    cost: str,
    *ops: PatchOp,
    delay: float = 0.0,
    log: list[str] | None = None,
    **options: Any,
) -> AgentStep:
    """A step that waits ``delay``, then returns ``out-<name>`` with ``ops``, costing ``cost``."""

    async def run(data: Any) -> Completion:
        if log is not None:
            log.append(f"{name} called")
        if delay:
            await trio.sleep(delay)
        if log is not None:
            log.append(f"{name} returned")
        return Completion(WithPatch(f"out-{name}", ops), Usage(cost))

    return Step.from_callable(run, name=name, **options)


def wait(name: str, seconds: float) -> AgentStep:
    async def run(data: Any) -> Any:
        await trio.sleep(seconds)
        return data

    return Step.from_callable(run, name=name)


def breach_result(caught: pytest.ExceptionInfo[UsageLimitExceeded]) -> PipelineResult:
    result = caught.value.result
    assert isinstance(result, PipelineResult)
    return result


async def cancels(store: InMemoryStore, run_id: str) -> set[tuple[str, str | None]]:
    return {
        (event.path, event.detail)
        for event in await store.trace_of(run_id)
        if event.kind is TraceKind.CANCEL
    }


# --- optimistic mode: the breach is found at commit ----------------------------------------------


@pytest.mark.parametrize("policy", ["propagate", "ignore"])
async def test_a_breach_in_a_parallel_cancels_the_running_siblings_with_the_reason(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any, policy: str
) -> None:
    calls: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            "fast": paid("fast", "0.40", AppendTo("log", "fast"), delay=1),
            "breaching": paid("breaching", "0.70", AppendTo("log", "breaching"), delay=2),
            # Pays 0.05 at once, then is cancelled before its second (costly) call returns.
            "slow": paid("slow0", "0.05", AppendTo("log", "slow0"))
            >> paid("slow1", "1.00", delay=10, log=calls),
        },
        on_branch_failure=policy,
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(parallel, "x", context=Ctx(), limits=UsageLimits(total_cost_usd=1))

    reason = "usage limit: Cost limit of $1.00 exceeded"
    result = breach_result(caught)
    assert calls == ["slow1 called"]  # it started, and never returned
    assert trio.current_time() == 2.0
    assert await cancels(trioflow_store, result.run_id) == {
        ("main/0:par/slow", reason),
        ("main/0:par/slow/1:slow1", reason),
    }
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.error == "Cost limit of $1.00 exceeded"
    # The cancelled branch's first call was paid for and counts.
    assert result.usage == Usage(Decimal("1.15"))
    [par] = result.step_history
    assert par.success is False
    assert par.feedback == "Cost limit of $1.00 exceeded"
    assert par.usage == Usage(Decimal("1.15"))
    assert par.output == {"fast": "out-fast"}
    assert par.metadata["cancelled_branches"] == ["slow"]
    assert par.metadata["stop_reason"] == reason
    # Every branch that completed is in the history; the breaching branch did not
    # complete, but the call that breached ran and was paid for, and is recorded.
    # Each branch is one step: its history entry is that step's own result.
    assert par.step_history == (
        StepResult(
            "fast",
            "main/0:par/fast",
            output="out-fast",
            success=True,
            attempts=1,
            latency_s=1.0,
            usage=Usage(Decimal("0.40")),
            patch=(AppendTo("log", "fast"),),
        ),
        StepResult(
            "breaching",
            "main/0:par/breaching",
            output="out-breaching",
            success=True,
            attempts=1,
            latency_s=2.0,
            usage=Usage(Decimal("0.70")),
            feedback="Cost limit of $1.00 exceeded",
            patch=(AppendTo("log", "breaching"),),
        ),
    )
    # A breaching step keeps its context changes (as it does at the top of a run and
    # in a loop); the cancelled branch contributes nothing.
    assert result.context == Ctx(run_id=result.run_id, log=["fast", "breaching"])


async def test_a_per_step_limit_inside_a_branch_stops_the_parallel(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    calls: list[str] = []
    capped = paid("capped", "0.20", delay=1, limits=UsageLimits(total_cost_usd="0.10"))
    parallel = Step.parallel("par", {"a": capped, "b": paid("other", "0.01", delay=5, log=calls)})

    with pytest.raises(
        UsageLimitExceeded,
        match=r"^Cost limit of \$0\.10 for step 'main/0:par/a' exceeded$",
    ) as caught:
        await rt.run(parallel, "x")

    result = breach_result(caught)
    reason = "usage limit: Cost limit of $0.10 for step 'main/0:par/a' exceeded"
    assert calls == ["other called"]
    assert await cancels(trioflow_store, result.run_id) == {("main/0:par/b", reason)}
    assert result.usage == Usage(Decimal("0.20"))


async def test_a_breach_in_a_map_item_stops_the_items_not_yet_started(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[str] = []
    mapped = Step.map_over("map", paid("item", "0.30", delay=1, log=calls), max_concurrency=1)

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(mapped, ["a", "b", "c", "d", "e", "f"], limits=UsageLimits(total_cost_usd=1))

    result = breach_result(caught)
    assert calls == ["item called", "item returned"] * 4
    assert result.usage == Usage(Decimal("1.20"))
    [map_result] = result.step_history
    # item[3] breached: its call ran and was paid for, but the item did not complete.
    assert map_result.output == ["out-item", "out-item", "out-item", None, None, None]
    # A branch stopped by a limit did not fail: it is listed as breached, and
    # what it finished (its context changes) is kept.
    assert map_result.metadata == {
        "items": 6,
        "breached_branches": ["item[3]"],
        "not_started": ["item[4]", "item[5]"],
        "stop_reason": "usage limit: Cost limit of $1.00 exceeded",
    }
    assert [entry.path for entry in map_result.step_history] == [
        "main/0:map/item[0]",
        "main/0:map/item[1]",
        "main/0:map/item[2]",
        "main/0:map/item[3]",
    ]


async def test_a_breaching_router_runs_no_branch(rt: Runtime, autojump_clock: Any) -> None:
    calls: list[str] = []
    routed = Step.router(
        "route",
        StubAgent([Completion(["a"], Usage("2"))]),
        {"a": paid("in_a", "0.01", log=calls)},
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(routed, "x", limits=UsageLimits(total_cost_usd=1))

    result = breach_result(caught)
    assert calls == []
    assert result.usage == Usage(Decimal("2"))
    [route] = result.step_history
    assert route.usage == Usage(Decimal("2"))
    assert [(entry.path, entry.output) for entry in route.step_history] == [
        ("main/0:route/router", ["a"])
    ]


async def test_a_breach_arriving_with_a_sibling_failure_is_not_lost(
    rt: Runtime, autojump_clock: Any
) -> None:
    """b fails and a's call breaches the limit at the same instant: the run exceeded its limit.

    Whichever reply the parallel reads first, the caller must learn of the breach:
    the governor has committed $2.00 against a $1.00 limit.
    """

    async def broken(data: Any) -> str:
        await trio.sleep(1)
        raise RuntimeError("b failed")

    for _ in range(5):
        parallel = Step.parallel(
            "par",
            {
                "a": paid("a", "2", delay=1),
                "b": Step.from_callable(broken, name="b", retry=RetryPolicy(max_attempts=1)),
            },
        )

        with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
            await rt.run(parallel, "x", limits=UsageLimits(total_cost_usd=1))

        result = breach_result(caught)
        assert result.status is RunStatus.USAGE_LIMIT
        assert result.usage == Usage(Decimal("2"))


# --- a breach inside a loop with a nested parallel -----------------------------------------------


def _leaf(
    name: str, path: str, cost: str, ops: tuple[PatchOp, ...], latency: float, **extra: Any
) -> StepResult:
    return StepResult(
        name,
        path,
        output=f"out-{name}",
        success=True,
        attempts=1,
        latency_s=latency,
        usage=Usage(cost),
        patch=ops,
        **extra,
    )


def _pipeline(name: str, path: str, *steps: StepResult) -> StepResult:
    return StepResult(
        name,
        path,
        output=steps[-1].output,
        success=True,
        attempts=1,
        latency_s=sum(step.latency_s for step in steps),
        usage=sum((step.usage for step in steps), Usage()),
        patch=tuple(op for step in steps for op in step.patch),
        step_history=steps,
    )


async def test_a_breach_inside_a_loop_with_a_nested_parallel(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    async def p_run(data: Any, context: Ctx) -> Completion:
        await trio.sleep(1)
        return Completion(
            WithPatch("out-p", [AppendTo("log", f"p{context.rounds}")]), Usage("0.30")
        )

    async def q1_run(data: Any, context: Ctx) -> Completion:
        await trio.sleep(2)
        return Completion(
            WithPatch("out-q1", [AppendTo("log", f"q{context.rounds}")]), Usage("0.15")
        )

    async def bump(data: Any) -> WithPatch:
        return WithPatch("out-bump", [AddTo("rounds", 1)])

    fan = Step.parallel(
        "fan",
        {
            "p": Step.from_callable(p_run, name="p"),
            "q": paid("q0", "0.05") >> Step.from_callable(q1_run, name="q1"),
        },
    )
    loop = Step.loop_until(
        "rounds",
        fan >> Step.from_callable(bump, name="bump"),
        lambda output, context: False,
        max_loops=5,
    )

    # Each round costs 0.50: q0 at +0 s, p at +1 s, q1 at +2 s. Round three breaches at
    # t=5 when p commits (1.35 > 1.20), while q1 of round three is still running.
    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.20 exceeded$") as caught:
        await rt.run(loop, "go", context=Ctx(), limits=UsageLimits(total_cost_usd="1.20"))

    result = breach_result(caught)
    breach = "Cost limit of $1.20 exceeded"
    reason = f"usage limit: {breach}"
    assert trio.current_time() == 5.0
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.usage == Usage(Decimal("1.35"))
    assert result.total_cost_usd == Decimal("1.35")

    def round_of(n: int) -> StepResult:
        at = f"main/0:rounds/loop[{n}]"
        p = _leaf("p", f"{at}/0:fan/p", "0.30", (AppendTo("log", f"p{n - 1}"),), 1.0)
        q = _pipeline(
            "q",
            f"{at}/0:fan/q",
            _leaf("q0", f"{at}/0:fan/q/0:q0", "0.05", (), 0.0),
            _leaf("q1", f"{at}/0:fan/q/1:q1", "0.15", (AppendTo("log", f"q{n - 1}"),), 2.0),
        )
        fan_result = StepResult(
            "fan",
            f"{at}/0:fan",
            output={"p": "out-p", "q": "out-q1"},
            success=True,
            attempts=1,
            latency_s=2.0,
            usage=Usage(Decimal("0.50")),
            patch=p.patch + q.patch,
            step_history=(p, q),
        )
        bumped = _leaf("bump", f"{at}/1:bump", "0", (AddTo("rounds", 1),), 0.0)
        return _pipeline(f"loop[{n}]", at, fan_result, bumped)

    at = "main/0:rounds/loop[3]"
    [loop_result] = result.step_history
    round1, round2, round3 = loop_result.step_history
    assert (round1, round2) == (round_of(1), round_of(2))
    assert (loop_result.name, loop_result.path) == ("rounds", "main/0:rounds")
    assert loop_result.success is False
    assert loop_result.attempts == 3
    assert loop_result.latency_s == 5.0
    assert loop_result.usage == Usage(Decimal("1.35"))
    assert loop_result.feedback == breach
    assert loop_result.metadata == {"exit_reason": "usage_limit", "iterations": 3}
    # Round three: the fan stopped by the breach; bump never ran.
    [fan3] = round3.step_history
    assert (round3.path, round3.success, round3.feedback) == (at, False, breach)
    assert round3.usage == Usage(Decimal("0.35"))
    assert round3.latency_s == 1.0
    assert (fan3.path, fan3.success, fan3.feedback) == (f"{at}/0:fan", False, breach)
    # p's 0.30 and the cancelled q's first call (0.05): the history holds only p.
    assert fan3.usage == Usage(Decimal("0.35"))
    assert fan3.metadata["cancelled_branches"] == ["q"]
    assert fan3.metadata["stop_reason"] == reason
    # p's body is its one step: its own result, whose call succeeded and breached.
    p_done = _leaf("p", f"{at}/0:fan/p", "0.30", (AppendTo("log", "p2"),), 1.0, feedback=breach)
    assert fan3.step_history == (p_done,)
    assert await cancels(trioflow_store, result.run_id) == {
        (f"{at}/0:fan/q", reason),
        (f"{at}/0:fan/q/1:q1", reason),
    }
    # The breaching call's context change is kept, through the fan, the round and the loop.
    assert fan3.patch == (AppendTo("log", "p2"),)
    assert round3.patch == (AppendTo("log", "p2"),)
    assert loop_result.patch == (*round1.patch, *round2.patch, AppendTo("log", "p2"))
    assert result.context == Ctx(run_id=result.run_id, rounds=2, log=["p0", "q0", "p1", "q1", "p2"])


# --- strict mode: reservations keep every schedule within the limit ------------------------------


def estimated(name: str, calls: list[str], *, delay: float) -> Any:
    """A branch that waits ``delay``, then makes a 1 s call estimated and costing 0.40."""
    return wait(f"{name}_wait", delay) >> paid(
        name, "0.40", delay=1, log=calls, usage_estimate=Usage("0.40")
    )


@pytest.mark.parametrize("delays", list(itertools.permutations([0.0, 0.5, 2.5])))
async def test_strict_mode_never_exceeds_the_limit_whatever_the_schedule(
    rt: Runtime, autojump_clock: Any, delays: tuple[float, float, float]
) -> None:
    calls: list[str] = []
    names = ("a", "b", "c")
    parallel = Step.parallel(
        "par",
        {
            name: estimated(name, calls, delay=delay)
            for name, delay in zip(names, delays, strict=True)
        },
    )
    # The branch that asks last finds 0.80 committed: 0.80 + 0.40 would exceed 1.00.
    last = names[delays.index(2.5)]

    with pytest.raises(
        UsageLimitExceeded,
        match=rf"^Cost limit of \$1\.00 would be exceeded: step 'main/0:par/{last}/1:{last}' "
        r"needs up to \$0\.40, 0 tokens with \$0\.80 committed and \$0\.00 reserved$",
    ) as caught:
        await rt.run(parallel, "x", limits=UsageLimits(total_cost_usd="1.00"))

    result = breach_result(caught)
    denial = (
        f"Cost limit of $1.00 would be exceeded: step 'main/0:par/{last}/1:{last}' needs up to "
        "$0.40, 0 tokens with $0.80 committed and $0.00 reserved"
    )
    assert f"{last} called" not in calls
    assert sorted(calls) == sorted(
        f"{name} {event}" for name in names if name != last for event in ("called", "returned")
    )
    assert result.usage == Usage(Decimal("0.80"))
    [par] = result.step_history
    assert par.metadata == {
        "breached_branches": [last],
        "stop_reason": f"usage limit: {denial}",
    }
    denied = next(entry for entry in par.step_history if entry.name == last)
    assert denied.success is False
    assert denied.usage == Usage()
    assert [entry.attempts for entry in denied.step_history] == [1, 0]


async def test_the_same_schedule_without_estimates_overshoots(
    rt: Runtime, autojump_clock: Any
) -> None:
    """The contrast: optimistic mode finds the breach only after paying for it."""
    calls: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            name: wait(f"{name}_wait", delay) >> paid(name, "0.40", delay=1, log=calls)
            for name, delay in (("a", 0.0), ("b", 0.5), ("c", 2.5))
        },
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(parallel, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert breach_result(caught).usage == Usage(Decimal("1.20"))
    assert calls == [
        "a called",
        "b called",
        "a returned",
        "b returned",
        "c called",
        "c returned",
    ]


async def test_strict_mode_with_concurrent_reservations_never_overshoots(
    rt: Runtime, autojump_clock: Any
) -> None:
    """All three ask at once: two fit and run, the third waits for them to settle.

    Once they have committed $0.80, the third $0.40 call could exceed the
    $1.00 limit even alone, so it is denied then: nothing is overspent, and
    the third call never starts.
    """
    calls: list[str] = []
    parallel = Step.parallel(
        "par", {name: estimated(name, calls, delay=0) for name in ("a", "b", "c")}
    )

    with pytest.raises(
        UsageLimitExceeded,
        match=r"^Cost limit of \$1\.00 would be exceeded: step 'main/0:par/[abc]/1:[abc]' "
        r"needs up to \$0\.40, 0 tokens with \$0\.80 committed and \$0\.00 reserved$",
    ) as caught:
        await rt.run(parallel, "x", limits=UsageLimits(total_cost_usd="1.00"))

    result = breach_result(caught)
    granted = sorted({call.split()[0] for call in calls})
    assert len(granted) == 2
    assert sorted(calls) == sorted(
        f"{name} {event}" for name in granted for event in ("called", "returned")
    )
    assert result.usage == Usage(Decimal("0.80"))
    assert trio.current_time() == 1.0


async def test_strict_mode_reservations_that_fit_exactly_all_run(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            name: paid(name, "0.50", delay=1, log=calls, usage_estimate=Usage("0.50"))
            for name in ("a", "b")
        },
    )

    result = await rt.run(parallel, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"a": "out-a", "b": "out-b"}
    assert result.usage == Usage(Decimal("1.00"))
    assert trio.current_time() == 1.0  # they ran at once
