"""branch_on: a condition of (input, context) picks one branch; a default; no match fails."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest
from trioflow.runtime import (
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    ConfigurationError,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    SetField,
    Step,
    StepResult,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    WithPatch,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import ConditionalStep, PatchOp


class Ctx(BaseContext):
    mode: str = "b"
    notes: list[str] = []


def act(
    name: str, *ops: PatchOp, log: list[str] | None = None, cost: str | None = None
) -> AgentStep:
    async def run(data: Any) -> Any:
        if log is not None:
            log.append(name)
        value = WithPatch(f"{name}({data})", ops)
        return value if cost is None else Completion(value, Usage(cost))

    return Step.from_callable(run, name=name)


def by_mode(data: Any, context: Ctx) -> str:
    return context.mode


async def test_the_condition_picks_a_branch_and_its_key_is_recorded(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    conditional = Step.branch_on(
        "cond",
        by_mode,
        {
            "a": act("in_a", AppendTo("notes", "a"), log=ran),
            "b": act("in_b", AppendTo("notes", "b"), log=ran),
        },
    )

    result = await rt.run(conditional, "x", context=Ctx(mode="b"))

    assert ran == ["in_b"]
    assert result.status is RunStatus.COMPLETED
    assert result.output == "in_b(x)"
    assert result.context == Ctx(run_id=result.run_id, mode="b", notes=["b"])
    inner = StepResult(
        "in_b",
        "main/0:cond/b",
        output="in_b(x)",
        success=True,
        attempts=1,
        patch=(AppendTo("notes", "b"),),
    )
    assert result.step_history == (
        StepResult(
            "cond",
            "main/0:cond",
            output="in_b(x)",
            success=True,
            attempts=1,
            metadata={"branch_key": "b"},
            patch=(AppendTo("notes", "b"),),
            step_history=(inner,),
        ),
    )


async def test_the_condition_gets_the_input_and_the_current_context(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[tuple[Any, Ctx]] = []

    async def choose(data: Any, context: Ctx) -> str:  # an async condition works too
        calls.append((data, context))
        return "a" if data == "prepared" else "b"

    async def prepare(data: str) -> WithPatch:
        return WithPatch("prepared", [SetField("mode", "set before")])

    pipeline = Step.from_callable(prepare, name="prepare") >> Step.branch_on(
        "cond", choose, {"a": act("in_a"), "b": act("in_b")}
    )

    result = await rt.run(pipeline, "raw", context=Ctx())

    assert calls == [("prepared", Ctx(run_id=result.run_id, mode="set before"))]
    assert result.output == "in_a(prepared)"
    assert result.step_history[1].metadata == {"branch_key": "a"}


async def test_no_match_and_no_default_fails_naming_the_key_and_the_choices(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    conditional = Step.branch_on(
        "cond", by_mode, {"a": act("in_a", log=ran), "b": act("in_b", log=ran)}
    )

    result = await rt.run(conditional, "x", context=Ctx(mode="z"))

    message = (
        "No branch found for key 'z' and no default branch "
        "(step 'main/0:cond'; the choices are 'a', 'b')"
    )
    assert ran == []
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert result.context == Ctx(run_id=result.run_id, mode="z")
    assert result.step_history == (
        StepResult("cond", "main/0:cond", feedback=message, metadata={"branch_key": "z"}),
    )


async def test_the_default_branch_runs_when_no_key_matches(
    rt: Runtime, autojump_clock: Any
) -> None:
    ran: list[str] = []
    conditional = Step.branch_on(
        "cond",
        by_mode,
        {"a": act("in_a", log=ran)},
        default=act("fallback", AppendTo("notes", "default"), log=ran),
    )

    result = await rt.run(conditional, "x", context=Ctx(mode="z"))

    assert ran == ["fallback"]
    assert result.status is RunStatus.COMPLETED
    assert result.output == "fallback(x)"
    assert result.context == Ctx(run_id=result.run_id, mode="z", notes=["default"])
    [cond] = result.step_history
    assert cond.metadata == {"branch_key": "z"}  # the key the condition gave, not "default"
    [branch] = cond.step_history
    assert branch.name == "fallback"
    assert branch.path == "main/0:cond/default"
    assert branch.step_history == ()


async def test_a_matching_key_wins_over_the_default(rt: Runtime, autojump_clock: Any) -> None:
    ran: list[str] = []
    conditional = Step.branch_on(
        "cond", by_mode, {"a": act("in_a", log=ran)}, default=act("fallback", log=ran)
    )

    result = await rt.run(conditional, "x", context=Ctx(mode="a"))

    assert ran == ["in_a"]
    assert result.output == "in_a(x)"


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


async def test_keys_may_be_enums_or_numbers(rt: Runtime, autojump_clock: Any) -> None:
    by_enum = Step.branch_on(
        "cond",
        lambda data, context: Verdict(data),
        {Verdict.ACCEPT: act("yes"), Verdict.REJECT: act("no")},
    )
    by_number = Step.branch_on(
        "cond", lambda data, context: len(data), {1: act("one"), 2: act("two")}
    )

    rejected = await rt.run(by_enum, "reject")
    two = await rt.run(by_number, "ab")
    none = await rt.run(by_number, "abc")

    assert rejected.output == "no(reject)"
    assert rejected.step_history[0].metadata == {"branch_key": Verdict.REJECT}
    assert rejected.step_history[0].step_history[0].path == "main/0:cond/reject"
    assert two.output == "two(ab)"
    assert [(entry.name, entry.path) for entry in two.step_history[0].step_history] == [
        ("two", "main/0:cond/2")
    ]
    assert none.error == (
        "No branch found for key 3 and no default branch (step 'main/0:cond'; the choices are 1, 2)"
    )


async def test_a_failing_branch_fails_the_conditional_with_its_error(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def broken(data: Any) -> WithPatch:
        raise ValueError("bad branch")

    conditional = Step.branch_on(
        "cond",
        by_mode,
        {
            "b": act("first", AppendTo("notes", "lost"))
            >> Step.from_callable(broken, name="broken", retry=RetryPolicy(max_attempts=1))
        },
    )

    result = await rt.run(conditional, "x", context=Ctx())

    message = "step 'main/0:cond/b/1:broken' failed (agent_error): ValueError: bad branch"
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert result.context == Ctx(run_id=result.run_id)
    [cond] = result.step_history
    assert cond.feedback == message
    assert cond.metadata == {"branch_key": "b"}


async def test_a_raising_condition_fails_the_step_naming_it(
    rt: Runtime, autojump_clock: Any
) -> None:
    def pick(data: Any, context: Ctx) -> str:
        raise LookupError("no mode")

    result = await rt.run(Step.branch_on("cond", pick, {"a": act("in_a")}), "x")

    assert result.status is RunStatus.FAILED
    assert result.error == "step 'main/0:cond': condition pick raised LookupError: no mode"


async def test_a_breach_in_the_chosen_branch_stops_the_run(
    rt: Runtime, autojump_clock: Any
) -> None:
    conditional = Step.branch_on(
        "cond", by_mode, {"b": act("spend", AppendTo("notes", "paid"), cost="0.75")}
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$0\.50 exceeded$") as caught:
        await rt.run(conditional, "x", context=Ctx(), limits=UsageLimits(total_cost_usd="0.50"))

    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert result.usage == Usage(Decimal("0.75"))
    assert result.context == Ctx(run_id=result.run_id, notes=["paid"])
    [cond] = result.step_history
    assert cond.usage == Usage(Decimal("0.75"))
    assert cond.metadata == {"branch_key": "b"}
    [spend] = cond.step_history
    assert (spend.name, spend.path, spend.step_history) == ("spend", "main/0:cond/b", ())


def test_a_conditional_step_keeps_its_branches_and_default() -> None:
    a, d = act("in_a"), act("fallback")
    conditional = Step.branch_on("cond", by_mode, {"a": a}, default=d)

    assert isinstance(conditional, ConditionalStep)
    assert conditional.condition is by_mode
    assert [(key, branch.steps) for key, branch in conditional.branches] == [("a", (a,))]
    assert isinstance(conditional.default, Pipeline)
    assert conditional.default.steps == (d,)
    assert Step.branch_on("cond", by_mode, {"a": a}).default is None


def test_a_key_that_cannot_be_a_path_segment_is_refused() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'cond': a branch name must be a non-empty string without '/', got 'x/y'$",
    ):
        Step.branch_on("cond", by_mode, {"x/y": act("in_a")})


def test_conditional_branch_keys_may_not_share_a_path() -> None:
    with pytest.raises(ConfigurationError, match="branch keys \\[1, '1'\\] share a path"):
        Step.branch_on(
            "pick", lambda data, context: data, {1: StubAgentStep(), "1": StubAgentStep()}
        )
    with pytest.raises(ConfigurationError, match="a key named 'default' would share its path"):
        Step.branch_on(
            "pick",
            lambda data, context: data,
            {"default": StubAgentStep()},
            default=StubAgentStep(),
        )


def StubAgentStep() -> AgentStep:
    return AgentStep("s", StubAgent(["x"]))
