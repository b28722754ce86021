"""Parallel steps: one snapshot for every branch, output in declaration order, failure policies."""

from __future__ import annotations

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
    ValidationResult,
    WithPatch,
)
from trioflow.runtime.lowlevel import ParallelStep, PatchOp


class Ctx(BaseContext):
    x: int = 0
    label: str = ""
    notes: list[str] = []
    total: int = 0


def act(
    name: str,
    *ops: PatchOp,
    output: Any = None,
    delay: float = 0.0,
    cost: str | None = None,
    log: list[str] | None = None,
) -> AgentStep:
    """A step that waits ``delay``, logs its name, and returns ``output`` with ``ops``."""

    async def run(data: Any) -> Any:
        if delay:
            await trio.sleep(delay)
        if log is not None:
            log.append(name)
        value = WithPatch(f"out-{name}" if output is None else output, ops)
        return value if cost is None else Completion(value, Usage(cost))

    return Step.from_callable(run, name=name)


def failing(name: str, message: str, *, delay: float = 0.0) -> AgentStep:
    """A step that waits ``delay`` and then raises (once: no retry)."""

    async def run(data: Any) -> Any:
        if delay:
            await trio.sleep(delay)
        raise RuntimeError(message)

    return Step.from_callable(run, name=name, retry=RetryPolicy(max_attempts=1))


def never_finishes(name: str, finished: list[str], *, delay: float = 100.0) -> AgentStep:
    """A step that would record its name after ``delay`` seconds (if not cancelled first)."""

    async def run(data: Any) -> str:
        await trio.sleep(delay)
        finished.append(name)
        return f"out-{name}"

    return Step.from_callable(run, name=name)


def leaf(
    name: str, path: str, output: Any, patch: tuple[PatchOp, ...], latency: float
) -> StepResult:
    return StepResult(
        name, path, output=output, success=True, attempts=1, latency_s=latency, patch=patch
    )


# --- snapshot and order --------------------------------------------------------------------------


async def test_every_branch_starts_from_the_same_snapshot(rt: Runtime, autojump_clock: Any) -> None:
    seen: dict[str, Ctx] = {}

    def looking(name: str, delay: float, *ops: PatchOp) -> AgentStep:
        async def run(data: Any, context: Ctx) -> WithPatch:
            await trio.sleep(delay)
            seen[name] = context
            return WithPatch(f"{name}:{data}", ops)

        return Step.from_callable(run, name=name)

    pipeline = act("prepare", SetField("x", 5), AppendTo("notes", "start"), output="in") >> (
        Step.parallel(
            "par",
            {
                "a": looking("a", 1, AppendTo("notes", "a"), AddTo("total", 1)),
                "b": looking("b", 2, AppendTo("notes", "b"), AddTo("total", 2)),
                "c": looking("c", 3, SetField("label", "c")),
            },
        )
    )

    result = await rt.run(pipeline, "go", context=Ctx())

    snapshot = Ctx(run_id=result.run_id, x=5, notes=["start"])
    # b and c ran after a finished, yet neither sees a's changes: all saw the one snapshot.
    assert seen == {"a": snapshot, "b": snapshot, "c": snapshot}
    assert result.status is RunStatus.COMPLETED
    assert result.output == {"a": "a:in", "b": "b:in", "c": "c:in"}
    assert result.context == Ctx(
        run_id=result.run_id, x=5, label="c", notes=["start", "a", "b"], total=3
    )


async def test_output_is_in_declaration_order_not_completion_order(
    rt: Runtime, autojump_clock: Any
) -> None:
    finished: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            "first": act("one", AppendTo("notes", "first"), delay=3, log=finished),
            "second": act("two", AppendTo("notes", "second"), delay=2, log=finished),
            "third": act("three", AppendTo("notes", "third"), delay=1, log=finished),
        },
    )

    result = await rt.run(parallel, "x", context=Ctx())

    assert finished == ["three", "two", "one"]  # the branches really finished in reverse
    assert list(result.output) == ["first", "second", "third"]
    assert result.output == {"first": "out-one", "second": "out-two", "third": "out-three"}
    assert result.context == Ctx(run_id=result.run_id, notes=["first", "second", "third"])
    [par] = result.step_history
    assert par == StepResult(
        "par",
        "main/0:par",
        output={"first": "out-one", "second": "out-two", "third": "out-three"},
        success=True,
        attempts=1,
        latency_s=3.0,
        patch=(
            AppendTo("notes", "first"),
            AppendTo("notes", "second"),
            AppendTo("notes", "third"),
        ),
        # Each branch is one step: its entry is that step's own result, at the branch path.
        step_history=(
            leaf("one", "main/0:par/first", "out-one", (AppendTo("notes", "first"),), 3.0),
            leaf("two", "main/0:par/second", "out-two", (AppendTo("notes", "second"),), 2.0),
            leaf("three", "main/0:par/third", "out-three", (AppendTo("notes", "third"),), 1.0),
        ),
    )


async def test_a_branch_pipeline_runs_its_steps_in_order_on_its_own_context(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[Ctx] = []

    async def reads(data: str, context: Ctx) -> str:
        seen.append(context)
        return f"{data}+{context.x}"

    branch = act("set", SetField("x", 9), output="set") >> Step.from_callable(reads, name="reads")
    parallel = Step.parallel("par", {"a": branch, "b": act("other", AddTo("total", 4))})

    result = await rt.run(parallel, "x", context=Ctx(x=1))

    assert seen == [Ctx(run_id=result.run_id, x=9)]  # the branch's second step saw its first
    assert result.output == {"a": "set+9", "b": "out-other"}
    assert result.context == Ctx(run_id=result.run_id, x=9, total=4)
    [par] = result.step_history
    assert [entry.path for entry in par.step_history] == ["main/0:par/a", "main/0:par/b"]
    assert [entry.path for entry in par.step_history[0].step_history] == [
        "main/0:par/a/0:set",
        "main/0:par/a/1:reads",
    ]


async def test_parallel_is_one_step_between_others(rt: Runtime, autojump_clock: Any) -> None:
    async def after(data: dict[str, str], context: Ctx) -> str:
        return f"{sorted(data.items())} total={context.total}"

    pipeline = (
        act("before", AddTo("total", 1), output="in")
        >> Step.parallel(
            "par",
            {
                "a": act("a", AddTo("total", 10), delay=2),
                "b": act("b", AddTo("total", 100), delay=1),
            },
        )
        >> Step.from_callable(after, name="after")
    )

    result = await rt.run(pipeline, "x", context=Ctx())

    assert result.output == "[('a', 'out-a'), ('b', 'out-b')] total=111"
    assert [entry.path for entry in result.step_history] == [
        "main/0:before",
        "main/1:par",
        "main/2:after",
    ]
    assert result.context == Ctx(run_id=result.run_id, total=111)


# --- failure policies ----------------------------------------------------------------------------


async def test_propagate_cancels_the_siblings_and_names_the_failed_branch(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    finished: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            "a": never_finishes("slow_a", finished),
            "b": failing("boom", "kaput", delay=1),
            "c": act("quick", AppendTo("notes", "c")) >> never_finishes("slow_c", finished),
        },
    )
    assert parallel.on_branch_failure is OnBranchFailure.PROPAGATE

    result = await rt.run(parallel, "x", context=Ctx())

    branch_error = "step 'main/0:par/b' failed (agent_error): RuntimeError: kaput"
    assert result.status is RunStatus.FAILED
    assert result.error == f"branch 'b' failed: {branch_error}"
    assert result.context == Ctx(run_id=result.run_id)  # a failed parallel changes nothing
    assert finished == []
    assert trio.current_time() == 1.0  # the siblings stopped at once, not after 100 s
    [par] = result.step_history
    assert par.success is False
    assert par.output is None
    assert par.feedback == f"branch 'b' failed: {branch_error}"
    assert par.metadata == {
        "failed_branches": {"b": branch_error},
        "cancelled_branches": ["a", "c"],
        "stop_reason": "branch 'b' failed",
    }
    assert [(entry.path, entry.success, entry.feedback) for entry in par.step_history] == [
        ("main/0:par/b", False, branch_error)
    ]
    cancels = {
        (event.path, event.detail)
        for event in await trioflow_store.trace_of(result.run_id)
        if event.kind is TraceKind.CANCEL
    }
    assert cancels == {
        ("main/0:par/a", "branch 'b' failed"),
        ("main/0:par/c", "branch 'b' failed"),
        ("main/0:par/c/1:slow_c", "branch 'b' failed"),
    }


async def test_propagate_names_the_first_branch_to_fail_in_time(
    rt: Runtime, autojump_clock: Any
) -> None:
    parallel = Step.parallel(
        "par",
        {
            "early_declared": failing("late", "second to fail", delay=2),
            "late_declared": failing("early", "first to fail", delay=1),
        },
    )

    result = await rt.run(parallel, "x")

    assert result.error == (
        "branch 'late_declared' failed: "
        "step 'main/0:par/late_declared' failed (agent_error): RuntimeError: first to fail"
    )
    assert result.step_history[0].metadata["cancelled_branches"] == ["early_declared"]


async def test_ignore_succeeds_when_any_branch_did_and_reports_the_failed_ones(
    rt: Runtime, autojump_clock: Any
) -> None:
    parallel = Step.parallel(
        "par",
        {
            "a": act("a", AppendTo("notes", "a"), delay=3),
            "b": act("b0", AppendTo("notes", "lost")) >> failing("b1", "bad b", delay=1),
            "c": act("c", AppendTo("notes", "c"), delay=2),
            "d": failing("d", "bad d", delay=4),
        },
        on_branch_failure="ignore",
    )
    assert parallel.on_branch_failure is OnBranchFailure.IGNORE

    result = await rt.run(parallel, "x", context=Ctx())

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"a": "out-a", "c": "out-c"}
    # The failed branch b's first step appended "lost": a failed branch changes nothing.
    assert result.context == Ctx(run_id=result.run_id, notes=["a", "c"])
    [par] = result.step_history
    assert par.success is True
    assert par.feedback is None
    assert par.metadata == {
        "failed_branches": {
            "b": "step 'main/0:par/b/1:b1' failed (agent_error): RuntimeError: bad b",
            "d": "step 'main/0:par/d' failed (agent_error): RuntimeError: bad d",
        }
    }
    assert [(entry.name, entry.success) for entry in par.step_history] == [
        ("a", True),
        ("b", False),
        ("c", True),
        ("d", False),
    ]
    assert trio.current_time() == 4.0  # every branch ran to its end


async def test_ignore_fails_when_every_branch_failed(rt: Runtime, autojump_clock: Any) -> None:
    parallel = Step.parallel(
        "par",
        {"a": failing("a", "bad a", delay=2), "b": failing("b", "bad b", delay=1)},
        on_branch_failure=OnBranchFailure.IGNORE,
    )

    result = await rt.run(parallel, "x")

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "every branch failed; first: 'a': "
        "step 'main/0:par/a' failed (agent_error): RuntimeError: bad a"
    )
    assert result.step_history[0].metadata == {
        "failed_branches": {
            "a": "step 'main/0:par/a' failed (agent_error): RuntimeError: bad a",
            "b": "step 'main/0:par/b' failed (agent_error): RuntimeError: bad b",
        }
    }


# --- usage of failed and cancelled branches ------------------------------------------------------


def rejected(name: str, cost: str, *, delay: float, attempts: int) -> AgentStep:
    """A paid step whose every attempt fails validation."""

    async def run(data: Any) -> Completion:
        await trio.sleep(delay)
        return Completion(f"out-{name}", Usage(cost, 10, 5))

    def never(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("no")

    return Step.from_callable(
        run, name=name, validators=[never], retry=RetryPolicy(max_attempts=attempts)
    )


async def test_failed_and_cancelled_branches_are_paid_for_under_propagate(
    rt: Runtime, autojump_clock: Any
) -> None:
    finished: list[str] = []
    parallel = Step.parallel(
        "par",
        {
            # Pays 0.25 at once, then is cancelled while its second step waits.
            "a": act("a0", cost="0.25") >> never_finishes("a1", finished),
            # Pays 0.10 twice (t=1, t=2), fails validation both times: fails at t=2.
            "b": rejected("b", "0.10", delay=1, attempts=2),
            # Pays 0.05 and succeeds at t=0.5.
            "c": act("c", cost="0.05", delay=0.5),
        },
    )

    result = await rt.run(parallel, "x")

    assert result.status is RunStatus.FAILED
    assert finished == []
    [par] = result.step_history
    assert par.metadata["cancelled_branches"] == ["a"]
    assert [(entry.name, entry.usage) for entry in par.step_history] == [
        ("b", Usage(Decimal("0.20"), 20, 10)),
        ("c", Usage(Decimal("0.05"))),
    ]
    # The step's usage covers the cancelled branch too, whose result never arrived.
    assert par.usage == Usage(Decimal("0.50"), 20, 10)
    assert result.usage == Usage(Decimal("0.50"), 20, 10)
    assert result.total_cost_usd == Decimal("0.50")


async def test_failed_branches_are_paid_for_under_ignore(rt: Runtime, autojump_clock: Any) -> None:
    parallel = Step.parallel(
        "par",
        {
            "a": rejected("a", "0.30", delay=1, attempts=3),
            "b": act("b", cost="0.2", delay=2),
        },
        on_branch_failure="ignore",
    )

    result = await rt.run(parallel, "x")

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"b": "out-b"}
    [par] = result.step_history
    assert par.usage == Usage(Decimal("1.10"), 30, 15)
    assert result.usage == Usage(Decimal("1.10"), 30, 15)
    # Each branch is one step: its entry is the step's own result, with all its attempts.
    assert [
        (entry.name, entry.path, entry.attempts, entry.usage, entry.step_history)
        for entry in par.step_history
    ] == [
        ("a", "main/0:par/a", 3, Usage(Decimal("0.90"), 30, 15), ()),
        ("b", "main/0:par/b", 1, Usage(Decimal("0.2")), ()),
    ]


# --- context_include_keys ------------------------------------------------------------------------


async def test_context_include_keys_restricts_the_branch_snapshot(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: dict[str, Ctx] = {}

    def looking(name: str, *ops: PatchOp) -> AgentStep:
        async def run(data: Any, context: Ctx) -> WithPatch:
            seen[name] = context
            return WithPatch(name, ops)

        return Step.from_callable(run, name=name)

    parallel = Step.parallel(
        "par",
        {"a": looking("a", AppendTo("notes", "a")), "b": looking("b", AddTo("total", 1))},
        context_include_keys=["x", "label"],
    )
    assert parallel.context_include_keys == ("x", "label")
    context = Ctx(x=3, label="kept", notes=["hidden"], total=40)

    result = await rt.run(parallel, "x", context=context)

    restricted = Ctx(run_id=result.run_id, x=3, label="kept")
    assert seen == {"a": restricted, "b": restricted}
    # The branches' patches are merged onto the full context, not onto the restricted one.
    assert result.context == Ctx(
        run_id=result.run_id, x=3, label="kept", notes=["hidden", "a"], total=41
    )


async def test_context_include_keys_naming_an_unknown_field_fails_the_step(rt: Runtime) -> None:
    called: list[str] = []
    parallel = Step.parallel("par", {"a": act("a", log=called)}, context_include_keys=("x", "nope"))

    result = await rt.run(parallel, "x", context=Ctx())

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par': context_include_keys names unknown field(s) ['nope'] of Ctx"
    )
    assert called == []


async def test_context_include_keys_leaving_out_a_required_field_fails_the_step(
    rt: Runtime,
) -> None:
    class Required(BaseContext):
        topic: str
        x: int = 0

    parallel = Step.parallel("par", {"a": act("a")}, context_include_keys=["x"])

    result = await rt.run(parallel, "x", context=Required(topic="t"))

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par': context_include_keys leaves out required field(s) of "
        "Required: ('topic',)"
    )


# --- building ------------------------------------------------------------------------------------


def test_a_parallel_step_keeps_its_branches_in_declaration_order() -> None:
    a, b, c = act("a"), act("b"), act("c")
    parallel = Step.parallel("par", {"z": a, "y": b, "x": c}, merge="keep_first")

    assert isinstance(parallel, ParallelStep)
    assert [name for name, _ in parallel.branches] == ["z", "y", "x"]
    assert [branch.steps for _, branch in parallel.branches] == [(a,), (b,), (c,)]
    assert parallel.merge is Merge.KEEP_FIRST
    assert parallel.context_include_keys is None


@pytest.mark.parametrize("name", ["", "a/b", 3])
def test_a_bad_branch_name_is_refused_when_building(name: Any) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'par': a branch name must be a non-empty string without '/', got ",
    ):
        Step.parallel("par", {name: act("a")})


def test_a_bad_failure_policy_is_refused_when_building() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'par': on_branch_failure must be 'propagate' or 'ignore', got 'sometimes'$",
    ):
        Step.parallel("par", {"a": act("a")}, on_branch_failure="sometimes")


def test_branches_must_be_a_mapping() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^step 'par': branches must be a mapping of name to step$"
    ):
        Step.parallel("par", [act("a")])  # type: ignore[arg-type]


def test_a_branch_must_be_a_step_or_pipeline() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^branch 'a' of 'par' needs a Pipeline or a Step, got 42$"
    ):
        Step.parallel("par", {"a": 42})  # type: ignore[dict-item]
