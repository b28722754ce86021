"""Merging the branches' context patches: in declaration order, as the step's strategy says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    ConfigurationError,
    Merge,
    Remove,
    RunStatus,
    Runtime,
    SetField,
    SetKey,
    Step,
    WithPatch,
)
from trioflow.runtime.lowlevel import Patch, PatchOp


class Ctx(BaseContext):
    x: int = 0
    label: str = ""
    notes: list[str] = []
    total: int = 0
    scores: dict[str, int] = {}


BASE = Ctx(x=-1, label="base", notes=["n0"], total=100, scores={"old": 0})


def act(name: str, *ops: PatchOp, delay: float = 0.0) -> AgentStep:
    """A step that waits ``delay`` and returns its name with ``ops`` as its patch."""

    async def run(data: Any) -> WithPatch:
        if delay:
            await trio.sleep(delay)
        return WithPatch(name, ops)

    return Step.from_callable(run, name=name)


def branches(*patches: tuple[PatchOp, ...]) -> dict[str, AgentStep]:
    """Branches a, b, c, ... with the given patches; the first declared finishes last."""
    count = len(patches)
    return {
        chr(ord("a") + index): act(f"s{index}", *ops, delay=count - index)
        for index, ops in enumerate(patches)
    }


async def run_merge(rt: Runtime, merge: Any, *patches: tuple[PatchOp, ...]) -> Any:
    parallel = Step.parallel("par", branches(*patches), merge=merge)
    return await rt.run(parallel, "x", context=BASE)


def base(run_id: str, **changes: Any) -> Ctx:
    return BASE.model_copy(update={"run_id": run_id, **changes})


ALL_STRATEGIES = [Merge.ERROR_ON_CONFLICT, Merge.OVERWRITE, Merge.KEEP_FIRST]

COMMUTING = (
    (AppendTo("notes", "a1"), AddTo("total", 1), AppendTo("notes", "a2")),
    (AddTo("total", 20), AppendTo("notes", "b")),
    (AppendTo("notes", "c"), AddTo("total", 300)),
)

CONFLICTING = (
    (SetField("x", 1), AppendTo("notes", "a")),
    (SetField("x", 2), SetField("label", "from b")),
    (SetField("x", 3), SetKey("scores", "c", 3)),
)


# --- commutative operations ----------------------------------------------------------------------


@pytest.mark.parametrize("merge", ALL_STRATEGIES)
async def test_appends_and_additions_always_compose_in_declaration_order(
    rt: Runtime, autojump_clock: Any, merge: Merge
) -> None:
    result = await run_merge(rt, merge, *COMMUTING)

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, notes=["n0", "a1", "a2", "b", "c"], total=421)
    assert result.step_history[0].patch == (
        AppendTo("notes", "a1"),
        AddTo("total", 1),
        AppendTo("notes", "a2"),
        AddTo("total", 20),
        AppendTo("notes", "b"),
        AppendTo("notes", "c"),
        AddTo("total", 300),
    )


async def test_no_merge_drops_even_commuting_changes(rt: Runtime, autojump_clock: Any) -> None:
    result = await run_merge(rt, Merge.NO_MERGE, *COMMUTING)

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"a": "s0", "b": "s1", "c": "s2"}
    assert result.context == base(result.run_id)
    assert result.step_history[0].patch == ()


# --- conflicting sets, one strategy at a time ----------------------------------------------------


async def test_error_on_conflict_names_both_branches_the_field_and_both_values(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(rt, Merge.ERROR_ON_CONFLICT, *CONFLICTING)

    message = (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'x': "
        "'a' sets 1, 'b' sets 2"
    )
    assert result.status is RunStatus.FAILED
    assert result.error == message
    assert result.output is None
    assert result.context == base(result.run_id)  # nothing of any branch was applied
    [par] = result.step_history
    assert par.success is False
    assert par.feedback == message
    assert par.patch == ()
    assert [(entry.name, entry.path, entry.success) for entry in par.step_history] == [
        ("s0", "main/0:par/a", True),
        ("s1", "main/0:par/b", True),
        ("s2", "main/0:par/c", True),
    ]


async def test_error_on_conflict_is_the_default(rt: Runtime, autojump_clock: Any) -> None:
    parallel = Step.parallel("par", branches(*CONFLICTING))
    assert parallel.merge is Merge.ERROR_ON_CONFLICT

    result = await rt.run(parallel, "x", context=BASE)

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'x': "
        "'a' sets 1, 'b' sets 2"
    )


async def test_overwrite_lets_the_last_declared_branch_win(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(rt, Merge.OVERWRITE, *CONFLICTING)

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(
        result.run_id, x=3, label="from b", notes=["n0", "a"], scores={"old": 0, "c": 3}
    )


async def test_keep_first_lets_the_first_declared_branch_win(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(rt, Merge.KEEP_FIRST, *CONFLICTING)

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(
        result.run_id, x=1, label="from b", notes=["n0", "a"], scores={"old": 0, "c": 3}
    )
    assert result.step_history[0].patch == (
        SetField("x", 1),
        AppendTo("notes", "a"),
        SetField("label", "from b"),
        SetKey("scores", "c", 3),
    )


async def test_no_merge_leaves_the_context_as_it_was(rt: Runtime, autojump_clock: Any) -> None:
    result = await run_merge(rt, Merge.NO_MERGE, *CONFLICTING)

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"a": "s0", "b": "s1", "c": "s2"}
    assert result.context == base(result.run_id)


async def test_a_merge_function_gets_the_base_context_and_every_patch(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls: list[tuple[BaseContext, dict[str, Patch]]] = []

    def add_up_x(context: Ctx, patches: Mapping[str, Patch]) -> list[PatchOp]:
        calls.append((context, dict(patches)))
        total = sum(
            op.value
            for patch in patches.values()
            for op in patch
            if isinstance(op, SetField) and op.field == "x"
        )
        return [SetField("x", context.x + total), AppendTo("notes", "+".join(patches))]

    pipeline = act("before", SetField("label", "before the parallel")) >> Step.parallel(
        "par", branches(*CONFLICTING), merge=add_up_x
    )

    result = await rt.run(pipeline, "x", context=BASE)

    assert result.status is RunStatus.COMPLETED
    # The function's patch replaces the branches' (b's label and c's score are not applied).
    assert result.context == base(
        result.run_id, x=5, label="before the parallel", notes=["n0", "a+b+c"]
    )
    [(context, patches)] = calls
    assert context == base(result.run_id, label="before the parallel")
    assert list(patches) == ["a", "b", "c"]  # declaration order, not completion order
    assert patches == {"a": CONFLICTING[0], "b": CONFLICTING[1], "c": CONFLICTING[2]}


async def test_a_merge_function_sees_only_the_successful_branches(
    rt: Runtime, autojump_clock: Any
) -> None:
    seen: list[list[str]] = []

    def names(context: Ctx, patches: Mapping[str, Patch]) -> list[PatchOp]:
        seen.append(list(patches))
        return [op for patch in patches.values() for op in patch]

    async def broken(data: Any) -> str:
        raise RuntimeError("no")

    parallel = Step.parallel(
        "par",
        {
            "a": act("a", AppendTo("notes", "a")),
            "b": Step.from_callable(broken, name="broken"),
            "c": act("c", AppendTo("notes", "c")),
        },
        merge=names,
        on_branch_failure="ignore",
    )

    result = await rt.run(parallel, "x", context=BASE)

    assert seen == [["a", "c"]]
    assert result.context == base(result.run_id, notes=["n0", "a", "c"])


async def test_a_merge_function_that_raises_fails_the_step(
    rt: Runtime, autojump_clock: Any
) -> None:
    def bad_merge(context: Ctx, patches: Mapping[str, Patch]) -> list[PatchOp]:
        raise ValueError("cannot decide")

    result = await run_merge(rt, bad_merge, *CONFLICTING)

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par': merge function 'bad_merge' raised ValueError: cannot decide"
    )
    assert result.context == base(result.run_id)


async def test_the_merged_context_is_validated_naming_the_field_and_the_step(
    rt: Runtime, autojump_clock: Any
) -> None:
    def wrong_type(context: Ctx, patches: Mapping[str, Patch]) -> list[PatchOp]:
        return [SetField("x", "not a number")]

    result = await run_merge(rt, wrong_type, *CONFLICTING)

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par' left context field 'x' invalid: Input should be a valid integer, "
        "unable to parse string as an integer (got 'not a number')"
    )
    assert result.context == base(result.run_id)


# --- what is and is not a conflict --------------------------------------------------------------


@pytest.mark.parametrize("merge", ALL_STRATEGIES)
async def test_fields_only_one_branch_touches_never_conflict(
    rt: Runtime, autojump_clock: Any, merge: Merge
) -> None:
    result = await run_merge(
        rt,
        merge,
        (SetField("x", 7),),
        (SetField("label", "b"), SetField("label", "b again")),
        (SetKey("scores", "c", 1), Remove("scores", "old")),
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, x=7, label="b again", scores={"c": 1})


@pytest.mark.parametrize("merge", ALL_STRATEGIES)
async def test_the_same_value_from_two_branches_is_not_a_conflict(
    rt: Runtime, autojump_clock: Any, merge: Merge
) -> None:
    result = await run_merge(
        rt,
        merge,
        (SetField("x", 4), SetField("notes", ["same"])),
        (SetField("notes", ["same"]),),
        (SetField("x", 4),),
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, x=4, notes=["same"])


async def test_a_branch_setting_a_field_twice_conflicts_only_with_its_last_value(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt, Merge.ERROR_ON_CONFLICT, (SetField("x", 1), SetField("x", 5)), (SetField("x", 5),)
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, x=5)


@pytest.mark.parametrize("merge", ALL_STRATEGIES)
async def test_set_key_on_different_keys_of_one_dict_composes(
    rt: Runtime, autojump_clock: Any, merge: Merge
) -> None:
    result = await run_merge(
        rt,
        merge,
        (SetKey("scores", "a", 1),),
        (SetKey("scores", "b", 2), SetKey("scores", "bb", 22)),
        (SetKey("scores", "c", 3),),
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(
        result.run_id, scores={"old": 0, "a": 1, "b": 2, "bb": 22, "c": 3}
    )


SAME_KEY = ((SetKey("scores", "k", 1),), (SetKey("scores", "k", 2),), (SetKey("scores", "j", 9),))


async def test_set_key_on_one_key_with_different_values_conflicts(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(rt, Merge.ERROR_ON_CONFLICT, *SAME_KEY)

    assert result.status is RunStatus.FAILED
    assert result.error == (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'scores' key 'k': "
        "'a' sets 1, 'b' sets 2"
    )
    assert result.context == base(result.run_id)


@pytest.mark.parametrize(
    ("merge", "scores"),
    [
        (Merge.OVERWRITE, {"old": 0, "k": 2, "j": 9}),
        (Merge.KEEP_FIRST, {"old": 0, "k": 1, "j": 9}),
        (Merge.NO_MERGE, {"old": 0}),
    ],
)
async def test_set_key_conflicts_are_resolved_by_the_strategy(
    rt: Runtime, autojump_clock: Any, merge: Merge, scores: dict[str, int]
) -> None:
    result = await run_merge(rt, merge, *SAME_KEY)

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, scores=scores)


async def test_set_key_with_the_same_value_is_not_a_conflict(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt, Merge.ERROR_ON_CONFLICT, (SetKey("scores", "k", 1),), (SetKey("scores", "k", 1),)
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, scores={"old": 0, "k": 1})


async def test_removing_a_key_another_branch_sets_conflicts(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt, Merge.ERROR_ON_CONFLICT, (SetKey("scores", "old", 5),), (Remove("scores", "old"),)
    )

    assert result.error == (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'scores' key 'old': "
        "'a' sets 5, 'b' sets <removed>"
    )


async def test_setting_a_whole_field_another_branch_appends_to_conflicts(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt, Merge.ERROR_ON_CONFLICT, (AppendTo("notes", "a"),), (SetField("notes", ["b"]),)
    )

    assert result.error == (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'notes': "
        "'a' sets <changed in place>, 'b' sets ['b']"
    )


async def test_keep_first_against_a_whole_field_write_drops_the_later_in_place_change(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt,
        Merge.KEEP_FIRST,
        (SetField("scores", {"fresh": 1}),),
        (SetKey("scores", "b", 2), SetField("x", 2)),
    )

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, x=2, scores={"fresh": 1})


async def test_a_conflict_between_later_branches_names_them(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(
        rt,
        Merge.ERROR_ON_CONFLICT,
        (SetField("label", "only a"),),
        (SetField("x", 10),),
        (SetField("x", 11),),
    )

    assert result.error == (
        "step 'main/0:par': branches 'b' and 'c' conflict on context field 'x': "
        "'b' sets 10, 'c' sets 11"
    )


async def test_values_equal_across_types_still_conflict(rt: Runtime, autojump_clock: Any) -> None:
    class Loose(BaseContext):
        value: Any = None

    parallel = Step.parallel(
        "par", {"a": act("a", SetField("value", 1)), "b": act("b", SetField("value", True))}
    )

    result = await rt.run(parallel, "x", context=Loose())

    assert result.error == (
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'value': "
        "'a' sets 1, 'b' sets True"
    )


# --- naming strategies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "merge"),
    [
        ("error_on_conflict", Merge.ERROR_ON_CONFLICT),
        ("overwrite", Merge.OVERWRITE),
        ("keep_first", Merge.KEEP_FIRST),
        ("no_merge", Merge.NO_MERGE),
    ],
)
def test_a_strategy_may_be_given_by_name(name: str, merge: Merge) -> None:
    assert Step.parallel("par", {"a": act("a")}, merge=name).merge is merge
    assert Step.map_over("m", act("a"), merge=name).merge is merge
    assert Step.router("r", act("pick"), {"a": act("a")}, merge=name).merge is merge


def test_an_unknown_strategy_is_refused_when_building() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^step 'par': unknown merge strategy 'union'; choose one of "
        r"'error_on_conflict', 'overwrite', 'keep_first', 'no_merge'$",
    ):
        Step.parallel("par", {"a": act("a")}, merge="union")


# --- a branch's net value ------------------------------------------------------------------------

WHOLE_THEN_IN_PLACE = (
    (SetField("scores", {"x": 1}), SetKey("scores", "k", 1)),  # a's net value: {x: 1, k: 1}
    (SetField("scores", {"x": 1}),),  # b's net value: {x: 1}
)


async def test_a_whole_write_then_an_in_place_change_is_not_the_same_value_as_the_whole_write(
    rt: Runtime, autojump_clock: Any
) -> None:
    """a ends with scores {x: 1, k: 1}, b with {x: 1}: that is a conflict, not agreement."""
    result = await run_merge(rt, Merge.ERROR_ON_CONFLICT, *WHOLE_THEN_IN_PLACE)

    assert result.status is RunStatus.FAILED
    assert str(result.error).startswith(
        "step 'main/0:par': branches 'a' and 'b' conflict on context field 'scores'"
    )
    assert result.context == base(result.run_id)


async def test_keep_first_keeps_the_first_branch_whole_value_with_its_in_place_change(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await run_merge(rt, Merge.KEEP_FIRST, *WHOLE_THEN_IN_PLACE)

    assert result.status is RunStatus.COMPLETED
    assert result.context == base(result.run_id, scores={"x": 1, "k": 1})


async def test_two_branches_removing_the_same_key_agree(rt: Runtime, autojump_clock: Any) -> None:
    """The same removal from two branches is the same value: no conflict, and one removal."""
    result = await run_merge(
        rt, Merge.ERROR_ON_CONFLICT, (Remove("scores", "old"),), (Remove("scores", "old"),)
    )

    assert result.status is RunStatus.COMPLETED
    assert result.error is None
    assert result.context == base(result.run_id, scores={})
