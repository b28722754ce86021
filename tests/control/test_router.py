"""router: a router step picks branch names, which then run as a parallel step."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.runtime import (
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    ConfigurationError,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    StepResult,
    Usage,
    WithPatch,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import PatchOp, RouterStep


class Ctx(BaseContext):
    notes: list[str] = []


def act(
    name: str,
    *ops: PatchOp,
    delay: float = 0.0,
    cost: str | None = None,
    log: list[str] | None = None,
) -> AgentStep:
    async def run(data: Any) -> Any:
        if delay:
            await trio.sleep(delay)
        if log is not None:
            log.append(name)
        value = WithPatch(f"{name}({data})", ops)
        return value if cost is None else Completion(value, Usage(cost))

    return Step.from_callable(run, name=name)


def choosing(*choices: Any, cost: str | None = None) -> StubAgent:
    """A router agent that answers ``choices`` in turn (each with ``cost``)."""
    return StubAgent(
        [choice if cost is None else Completion(choice, Usage(cost)) for choice in choices]
    )


def three_branches(ran: list[str]) -> dict[str, AgentStep]:
    return {
        "a": act("in_a", AppendTo("notes", "a"), delay=3, log=ran),
        "b": act("in_b", AppendTo("notes", "b"), delay=2, log=ran),
        "c": act("in_c", AppendTo("notes", "c"), delay=1, log=ran),
    }


async def test_one_chosen_name_runs_that_branch(rt: Runtime, autojump_clock: Any) -> None:
    ran: list[str] = []
    agent = choosing("b")
    routed = Step.router("route", agent, three_branches(ran))

    result = await rt.run(routed, "q", context=Ctx())

    assert agent.inputs == ["q"]
    assert ran == ["in_b"]
    assert result.status is RunStatus.COMPLETED
    assert result.output == {"b": "in_b(q)"}
    assert result.context == Ctx(run_id=result.run_id, notes=["b"])
    assert result.step_history == (
        StepResult(
            "route",
            "main/0:route",
            output={"b": "in_b(q)"},
            success=True,
            attempts=1,
            latency_s=2.0,
            metadata={"chosen": ["b"]},
            patch=(AppendTo("notes", "b"),),
            step_history=(
                StepResult("router", "main/0:route/router", output="b", success=True, attempts=1),
                # The chosen branch is one step: its own result, at the branch path.
                StepResult(
                    "in_b",
                    "main/0:route/b",
                    output="in_b(q)",
                    success=True,
                    attempts=1,
                    latency_s=2.0,
                    patch=(AppendTo("notes", "b"),),
                ),
            ),
        ),
    )


async def test_a_list_of_names_runs_as_a_parallel_in_declaration_order(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    routed = Step.router("route", choosing(["c", "a"]), three_branches(ran))

    result = await rt.run(routed, "q", context=Ctx())

    assert ran == ["in_c", "in_a"]  # c finished first (and both ran at once: 3 s in all)
    assert trio.current_time() == 3.0
    assert list(result.output) == ["a", "c"]
    assert result.output == {"a": "in_a(q)", "c": "in_c(q)"}
    assert result.context == Ctx(run_id=result.run_id, notes=["a", "c"])
    [route] = result.step_history
    assert route.metadata == {"chosen": ["a", "c"]}
    assert [entry.path for entry in route.step_history] == [
        "main/0:route/router",
        "main/0:route/a",
        "main/0:route/c",
    ]


async def test_a_tuple_of_names_is_a_list_of_names(rt: Runtime, autojump_clock: Any) -> None:
    ran: list[str] = []

    result = await rt.run(
        Step.router("route", choosing(("b", "a")), three_branches(ran)), "q", context=Ctx()
    )

    assert result.output == {"a": "in_a(q)", "b": "in_b(q)"}


async def test_an_unknown_name_fails_naming_it_and_the_choices(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    routed = Step.router("route", choosing(["a", "zed"], cost="0.02"), three_branches(ran))

    result = await rt.run(routed, "q", context=Ctx())

    message = (
        "step 'main/0:route': the router chose unknown branch(es) 'zed'; "
        "the choices are 'a', 'b', 'c'"
    )
    assert ran == []  # nothing runs, not even the known name
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert result.context == Ctx(run_id=result.run_id)
    assert result.usage == Usage(Decimal("0.02"))
    assert result.step_history == (
        StepResult(
            "route",
            "main/0:route",
            usage=Usage(Decimal("0.02")),
            feedback=message,
            step_history=(
                StepResult(
                    "router",
                    "main/0:route/router",
                    output=["a", "zed"],
                    success=True,
                    attempts=1,
                    usage=Usage(Decimal("0.02")),
                ),
            ),
        ),
    )


async def test_a_single_unknown_name_fails_naming_it(rt: Runtime, autojump_clock: Any) -> None:
    result = await rt.run(Step.router("route", choosing("nope"), three_branches([])), "q")

    assert result.error == (
        "step 'main/0:route': the router chose unknown branch(es) 'nope'; "
        "the choices are 'a', 'b', 'c'"
    )


@pytest.mark.parametrize("choice", [5, None, ["a", 1], {"a": True}])
async def test_a_choice_that_is_not_names_fails(
    rt: Runtime, autojump_clock: Any, choice: Any
) -> None:
    result = await rt.run(Step.router("route", choosing(choice), three_branches([])), "q")

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:route': the router must choose a branch name or a list of names, "
        f"got {choice!r}"
    )


@pytest.mark.parametrize("empty", [[], ()])
async def test_an_empty_choice_succeeds_with_an_empty_mapping(
    rt: Runtime, autojump_clock: Any, empty: Any
) -> None:
    ran: list[str] = []
    routed = Step.router("route", choosing(empty), three_branches(ran))

    result = await rt.run(routed, "q", context=Ctx(notes=["kept"]))

    assert ran == []
    assert result.status is RunStatus.COMPLETED
    assert result.output == {}
    assert result.context == Ctx(run_id=result.run_id, notes=["kept"])
    [route] = result.step_history
    assert route.success is True
    assert route.metadata == {"chosen": []}
    assert [entry.path for entry in route.step_history] == ["main/0:route/router"]


async def test_the_router_usage_is_counted_with_the_branches(
    rt: Runtime, autojump_clock: Any
) -> None:
    routed = Step.router(
        "route",
        choosing(["a", "b"], cost="0.02"),
        {"a": act("in_a", cost="0.10"), "b": act("in_b", cost="0.2"), "c": act("in_c", cost="5")},
    )

    result = await rt.run(routed, "q")

    assert result.status is RunStatus.COMPLETED
    [route] = result.step_history
    assert route.usage == Usage(Decimal("0.32"))
    assert result.usage == Usage(Decimal("0.32"))
    assert [(entry.name, entry.path, entry.usage) for entry in route.step_history] == [
        ("router", "main/0:route/router", Usage(Decimal("0.02"))),
        ("in_a", "main/0:route/a", Usage(Decimal("0.10"))),
        ("in_b", "main/0:route/b", Usage(Decimal("0.2"))),
    ]


async def test_a_failing_router_fails_the_step_with_its_error(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    agent = StubAgent([RuntimeError("no idea")])
    routed = Step.router(
        "route", AgentStep("pick", agent, retry=RetryPolicy(max_attempts=1)), three_branches(ran)
    )

    result = await rt.run(routed, "q")

    message = "step 'main/0:route/pick' failed (agent_error): RuntimeError: no idea"
    assert ran == []
    assert result.status is RunStatus.FAILED
    assert result.error == message
    [route] = result.step_history
    assert [(entry.path, entry.success) for entry in route.step_history] == [
        ("main/0:route/pick", False)
    ]


async def test_a_failing_chosen_branch_follows_the_failure_policy(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def broken(data: Any) -> str:
        raise ValueError("broken branch")

    branches = {
        "good": act("fine", AppendTo("notes", "good")),
        "bad": Step.from_callable(broken, name="broken", retry=RetryPolicy(max_attempts=1)),
    }
    error = "step 'main/0:route/bad' failed (agent_error): ValueError: broken branch"

    propagating = await rt.run(
        Step.router("route", choosing(["good", "bad"]), branches), "q", context=Ctx()
    )
    ignoring = await rt.run(
        Step.router("route", choosing(["good", "bad"]), branches, on_branch_failure="ignore"),
        "q",
        context=Ctx(),
    )

    assert propagating.status is RunStatus.FAILED
    assert propagating.error == f"branch 'bad' failed: {error}"
    assert ignoring.status is RunStatus.COMPLETED
    assert ignoring.output == {"good": "fine(q)"}
    assert ignoring.context == Ctx(run_id=ignoring.run_id, notes=["good"])
    assert ignoring.step_history[0].metadata == {
        "chosen": ["good", "bad"],
        "failed_branches": {"bad": error},
    }


# --- building ------------------------------------------------------------------------------------


def test_a_router_step_wraps_an_agent_in_a_step_named_router() -> None:
    agent = choosing("a")
    a = act("in_a")
    routed = Step.router("route", agent, {"a": a})

    assert isinstance(routed, RouterStep)
    assert routed.chooser.name == "router"
    assert routed.chooser.agent is agent
    assert [(name, branch.steps) for name, branch in routed.branches] == [("a", (a,))]


def test_a_branch_may_not_share_the_router_step_name() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'route': a branch may not be named 'router' like the router step$",
    ):
        Step.router("route", choosing("a"), {"router": act("in_a")})
