"""Property proofs: concurrent branches merge their context patches in declaration order.

Every example draws a schedule: each branch sleeps a drawn delay (under
trio's ``MockClock``) before it returns its patch, so the branches finish
in a different order from one example to the next. The merged context must
not depend on that order: it is exactly what applying the branches' patches
one by one, in declaration order, gives. And no contribution is ever lost,
with up to 1,000 branches or map items at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Pipeline,
    PipelineResult,
    RunStatus,
    SetField,
    SetKey,
    Step,
    StepResult,
    WithPatch,
    open_runtime,
    step,
)
from trioflow.runtime.lowlevel import PatchOp, apply_patch

MAX_BRANCHES = 8

#: Branch delays in (mock) seconds: ties and distinct values, so finishing orders vary.
DELAYS = st.sampled_from([0, 0.5, 1, 1.5, 2, 3, 5])


class Board(BaseContext):
    """A context with one field of every kind a branch may change."""

    log: list[str] = []
    total: int = 0
    money: Decimal = Decimal(0)
    table: dict[str, int] = {}
    shared: str = ""
    winner: str = ""
    own0: int = 0
    own1: int = 0
    own2: int = 0
    own3: int = 0
    own4: int = 0
    own5: int = 0
    own6: int = 0
    own7: int = 0


def run_on_mock_clock(pipeline: Pipeline, data: Any, context: Board) -> PipelineResult:
    """Run ``pipeline`` in a fresh runtime under a mock clock that jumps when all sleep."""

    async def main() -> PipelineResult:
        async with open_runtime(store=InMemoryStore()) as rt:
            return await rt.run(pipeline, data, context=context)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def branch_step(
    index: int, delay: float, patch: Sequence[PatchOp], finished: list[str]
) -> AgentStep:
    """Branch ``b<index>``: sleeps ``delay``, then returns ``out<index>`` with ``patch``."""

    @step(name=f"w{index}")
    async def work(data: object) -> WithPatch:
        await trio.sleep(delay)
        finished.append(f"b{index}")
        return WithPatch(f"out{index}", patch)

    return work


def parallel_of(
    steps: Sequence[AgentStep], merge: str = "error_on_conflict"
) -> tuple[Pipeline, list[str]]:
    names = [f"b{index}" for index in range(len(steps))]
    parallel = Step.parallel("par", dict(zip(names, steps, strict=True)), merge=merge)
    return Pipeline.of(parallel, context_type=Board), names


def without_run_id(context: BaseContext) -> dict[str, Any]:
    return context.model_dump(exclude={"run_id"})


# --- 1. merge determinism -------------------------------------------------------------------------


@st.composite
def branch_patch(draw: st.DrawFn, index: int, shared_value: str) -> list[PatchOp]:
    """Operations of branch ``index`` that never conflict with another branch's.

    Appends and additions commute; ``own<index>`` belongs to this branch
    alone; every branch that sets ``shared`` sets the same value; dict keys
    are distinct per branch and operation.
    """
    kinds = draw(
        st.lists(st.sampled_from(["append", "add", "money", "own", "shared", "key"]), max_size=6)
    )
    ops: list[PatchOp] = []
    for position, kind in enumerate(kinds):
        tag = f"b{index}.{position}"
        if kind == "append":
            ops.append(AppendTo("log", tag))
        elif kind == "add":
            ops.append(AddTo("total", draw(st.integers(-1000, 1000))))
        elif kind == "money":
            ops.append(AddTo("money", draw(st.decimals(0, 100, places=2))))
        elif kind == "own":
            ops.append(SetField(f"own{index}", draw(st.integers(-1000, 1000))))
        elif kind == "shared":
            ops.append(SetField("shared", shared_value))
        else:
            ops.append(SetKey("table", tag, draw(st.integers(-1000, 1000))))
    return ops


@st.composite
def merge_plans(draw: st.DrawFn) -> tuple[Board, list[list[PatchOp]], list[float]]:
    branches = draw(st.integers(1, MAX_BRANCHES))
    shared_value = draw(st.sampled_from(["x", "y", "zz"]))
    patches = [draw(branch_patch(index, shared_value)) for index in range(branches)]
    delays = draw(st.lists(DELAYS, min_size=branches, max_size=branches))
    start = Board(
        log=draw(st.lists(st.sampled_from(["p", "q"]), max_size=3)),
        total=draw(st.integers(-100, 100)),
        money=draw(st.decimals(0, 10, places=2)),
        table=draw(st.dictionaries(st.sampled_from(["k1", "k2"]), st.integers(0, 9), max_size=2)),
        shared=draw(st.sampled_from(["", "x"])),
    )
    return start, patches, delays


def fold_in_declaration_order(start: Board, patches: Sequence[Sequence[PatchOp]]) -> Board:
    """The expected context: each branch's patch applied in turn, first declared first."""
    context = start
    for index, patch in enumerate(patches):
        context = apply_patch(context, tuple(patch), step=f"b{index}")
    return context


def replay_by_hand(start: Board, patches: Sequence[Sequence[PatchOp]]) -> dict[str, Any]:
    """The same expectation computed with plain Python, without trioflow's patch code."""
    state = without_run_id(start)
    state["log"] = list(state["log"])
    state["table"] = dict(state["table"])
    for patch in patches:
        for op in patch:
            if isinstance(op, AppendTo):
                state[op.field].append(op.value)
            elif isinstance(op, AddTo):
                state[op.field] += op.amount
            elif isinstance(op, SetKey):
                state[op.field][op.key] = op.value
            else:
                assert isinstance(op, SetField)
                state[op.field] = op.value
    return state


@given(plan=merge_plans())
@settings(max_examples=200, deadline=None, database=None)
def test_parallel_merge_equals_declaration_order_fold_under_any_schedule(
    plan: tuple[Board, list[list[PatchOp]], list[float]],
) -> None:
    start, patches, delays = plan
    finished: list[str] = []
    steps = [
        branch_step(index, delay, patch, finished)
        for index, (delay, patch) in enumerate(zip(delays, patches, strict=True))
    ]
    pipeline, names = parallel_of(steps)

    result = run_on_mock_clock(pipeline, "go", start)

    note(f"finishing order: {finished}")
    assert result.status is RunStatus.COMPLETED, result.error
    assert sorted(finished) == sorted(names)
    expected = fold_in_declaration_order(start, patches)
    assert without_run_id(result.context) == without_run_id(expected)
    assert without_run_id(result.context) == replay_by_hand(start, patches)
    assert result.context.run_id == result.run_id
    assert result.output == {name: f"out{index}" for index, name in enumerate(names)}
    assert list(result.output) == names
    # Each branch is one step: its result is that step's, at the branch's path.
    assert [(branch.name, branch.path) for branch in result.step_history[0].step_history] == [
        (f"w{index}", f"main/0:par/{name}") for index, name in enumerate(names)
    ]


# --- 1b. conflicting writes: overwrite, keep_first, error_on_conflict -----------------------------


@st.composite
def conflict_plans(draw: st.DrawFn) -> tuple[int, list[int], list[float], str]:
    branches = draw(st.integers(2, MAX_BRANCHES))
    setters = sorted(draw(st.sets(st.integers(0, branches - 1), min_size=2)))
    delays = draw(st.lists(DELAYS, min_size=branches, max_size=branches))
    merge = draw(st.sampled_from(["overwrite", "keep_first", "error_on_conflict"]))
    return branches, setters, delays, merge


@given(plan=conflict_plans())
@settings(max_examples=200, deadline=None, database=None)
def test_conflicting_writes_resolve_by_declaration_order_not_finishing_order(
    plan: tuple[int, list[int], list[float], str],
) -> None:
    branches, setters, delays, merge = plan
    finished: list[str] = []
    patches: list[list[PatchOp]] = []
    for index in range(branches):
        ops: list[PatchOp] = []
        if index in setters:  # conflicting: a distinct value per branch, on a field and a key
            ops += [SetField("winner", f"b{index}"), SetKey("table", "hot", index)]
        ops.append(AppendTo("log", f"b{index}"))  # commutes with everything
        patches.append(ops)
    steps = [
        branch_step(index, delay, patch, finished)
        for index, (delay, patch) in enumerate(zip(delays, patches, strict=True))
    ]
    pipeline, names = parallel_of(steps, merge=merge)
    start = Board(log=["start"])

    result = run_on_mock_clock(pipeline, "go", start)

    note(f"finishing order: {finished}")
    every_branch = ["start", *names]
    if merge == "error_on_conflict":
        first, second = setters[0], setters[1]
        assert result.status is RunStatus.FAILED
        assert result.error == (
            f"step 'main/0:par': branches 'b{first}' and 'b{second}' conflict on context "
            f"field 'winner': 'b{first}' sets 'b{first}', 'b{second}' sets 'b{second}'"
        )
        assert without_run_id(result.context) == without_run_id(start)
        return
    chosen = setters[-1] if merge == "overwrite" else setters[0]
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.context.winner == f"b{chosen}"
    assert result.context.table == {"hot": chosen}
    assert result.context.log == every_branch
    expected = start.model_copy(
        update={"winner": f"b{chosen}", "table": {"hot": chosen}, "log": every_branch}
    )
    assert without_run_id(result.context) == without_run_id(expected)
    if merge == "overwrite":  # last declared wins: exactly the declaration-order fold
        folded = fold_in_declaration_order(start, patches)
        assert without_run_id(result.context) == without_run_id(folded)


# --- 2. no lost update ----------------------------------------------------------------------------


def contribution(index: int) -> list[PatchOp]:
    """What branch or item ``index`` adds: one append, one integer and one money addition."""
    return [
        AppendTo("log", f"c{index}"),
        AddTo("total", index + 1),
        AddTo("money", Decimal("0.01")),
    ]


def assert_every_contribution_kept(result: PipelineResult, count: int) -> None:
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.context.log == [f"c{index}" for index in range(count)]
    assert result.context.total == count * (count + 1) // 2
    assert result.context.money == Decimal(count) / 100
    assert str(result.context.money) == str(Decimal("0.01") * count)


def scattered(delays: Sequence[int]) -> Callable[[int], int]:
    """A delay per index, cycling through ``delays`` in a scrambled order."""
    return lambda index: delays[(index * 31 + 7) % len(delays)]


def parallel_contributions(count: int, delay_of: Callable[[int], int]) -> Pipeline:
    finished: list[str] = []
    steps = [
        branch_step(index, delay_of(index), contribution(index), finished) for index in range(count)
    ]
    pipeline, _ = parallel_of(steps)
    return pipeline


def mapped_contributions(max_concurrency: int, delay_of: Callable[[int], int]) -> Pipeline:
    @step
    async def contribute(item: int) -> WithPatch:
        await trio.sleep(delay_of(item))
        return WithPatch(item * 2, contribution(item))

    mapped = Step.map_over("map", contribute, max_concurrency=max_concurrency)
    return Pipeline.of(mapped, context_type=Board)


SCHEDULES = st.lists(st.integers(0, 9), min_size=1, max_size=16)
NO_TOO_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


@given(count=st.integers(1, 1000), delays=SCHEDULES)
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=NO_TOO_SLOW)
def test_parallel_branches_lose_no_update(count: int, delays: list[int]) -> None:
    result = run_on_mock_clock(parallel_contributions(count, scattered(delays)), "go", Board())
    assert_every_contribution_kept(result, count)


@given(count=st.integers(1, 1000), max_concurrency=st.integers(1, 1000), delays=SCHEDULES)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=NO_TOO_SLOW)
def test_map_items_lose_no_update(count: int, max_concurrency: int, delays: list[int]) -> None:
    pipeline = mapped_contributions(max_concurrency, scattered(delays))
    result = run_on_mock_clock(pipeline, list(range(count)), Board())
    assert_every_contribution_kept(result, count)
    assert result.output == [item * 2 for item in range(count)]


def test_one_thousand_parallel_branches_lose_no_update() -> None:
    result = run_on_mock_clock(parallel_contributions(1000, lambda index: index % 7), "go", Board())
    assert_every_contribution_kept(result, 1000)
    assert len(result.step_history[0].step_history) == 1000


@given(delays=SCHEDULES)
@example(delays=[0])
@example(delays=[3, 0, 1])
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=NO_TOO_SLOW)
def test_one_thousand_parallel_branches_lose_no_update_under_drawn_schedules(
    delays: list[int],
) -> None:
    result = run_on_mock_clock(parallel_contributions(1000, scattered(delays)), "go", Board())
    assert_every_contribution_kept(result, 1000)


@given(max_concurrency=st.integers(1, 1000), delays=SCHEDULES)
@example(max_concurrency=1, delays=[1])
@example(max_concurrency=16, delays=[0, 2, 1])
@example(max_concurrency=1000, delays=[5, 0])
@settings(max_examples=5, deadline=None, database=None, suppress_health_check=NO_TOO_SLOW)
def test_one_thousand_map_items_lose_no_update(max_concurrency: int, delays: list[int]) -> None:
    pipeline = mapped_contributions(max_concurrency, scattered(delays))
    result = run_on_mock_clock(pipeline, list(range(1000)), Board())
    assert_every_contribution_kept(result, 1000)
    assert result.output == [item * 2 for item in range(1000)]
    mapped: StepResult = result.step_history[0]
    assert mapped.metadata == {"items": 1000}
    assert [(item.name, item.path) for item in mapped.step_history] == [
        ("contribute", f"main/0:map/item[{i}]") for i in range(1000)
    ]
