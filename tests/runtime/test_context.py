"""Context: immutable snapshots, patches applied before the next step, validated results."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    ContextValidationError,
    HumanInteraction,
    Pipeline,
    Remove,
    RetryPolicy,
    RunStatus,
    Runtime,
    SetField,
    SetKey,
    ValidationResult,
    WithPatch,
    step,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import apply_patch


class Notes(BaseContext):
    label: str = ""
    count: int = 0
    notes: list[str] = pydantic.Field(default_factory=list)
    tags: dict[str, int] = pydantic.Field(default_factory=dict)
    budget: Decimal = Decimal("0")
    trail: tuple[str, ...] = ()


class LabelUpdate(pydantic.BaseModel):
    label: str = "unset"
    count: int = 0


# --- updates reach the next step -----------------------------------------------------------------


async def test_updates_context_dict_is_visible_to_the_next_step(rt: Runtime) -> None:
    @step(updates_context=True)
    async def label(text: str) -> dict[str, Any]:
        return {"label": f"drafted {text}", "count": 3}

    @step
    async def report(fields: dict[str, Any], *, context: Notes) -> str:
        return f"{context.label}/{context.count}/{sorted(fields)}"

    result = await rt.run(label >> report, "essay", context=Notes())

    assert result.output == "drafted essay/3/['count', 'label']"
    assert result.context.label == "drafted essay"
    assert result.context.count == 3
    assert result.step("label").patch == (SetField("label", "drafted essay"), SetField("count", 3))


async def test_updates_context_model_sets_only_the_fields_it_set(rt: Runtime) -> None:
    @step(updates_context=True)
    async def bump(text: str) -> LabelUpdate:
        return LabelUpdate(count=4)

    result = await rt.run(bump, "x", context=Notes(label="kept"))

    assert result.context.label == "kept"
    assert result.context.count == 4


async def test_updates_context_with_a_non_mapping_output_is_a_configuration_failure(
    rt: Runtime,
) -> None:
    agent = StubAgent([3, 4])
    result = await rt.run(AgentStep("counting", agent, updates_context=True), "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert result.step("counting").attempts == 1
    assert agent.calls == 1
    assert result.error == (
        "step 'main/0:counting' failed (configuration): step 'counting' has "
        "updates_context=True but returned int, not a dict or pydantic model"
    )


async def test_patch_operations_are_applied_before_the_next_step(rt: Runtime) -> None:
    @step
    async def edit(text: str) -> WithPatch:
        return WithPatch(
            text,
            [
                SetField("label", "edited"),
                AppendTo("notes", "second"),
                AddTo("count", 5),
                AddTo("budget", Decimal("0.25")),
                SetKey("tags", "fresh", 1),
                Remove("tags", "stale"),
                Remove("notes", "first"),
                AppendTo("trail", "edit"),
            ],
        )

    seen: list[Notes] = []

    @step
    async def look(text: str, *, context: Notes) -> str:
        seen.append(context)
        return text

    start = Notes(notes=["first"], count=1, tags={"stale": 9, "kept": 2}, budget=Decimal("1"))
    result = await rt.run(edit >> look, "x", context=start)

    expected = {
        "label": "edited",
        "count": 6,
        "notes": ["second"],
        "tags": {"kept": 2, "fresh": 1},
        "budget": Decimal("1.25"),
        "trail": ("edit",),
    }
    snapshot = seen[0].model_dump(exclude={"run_id", "hitl_history"})
    assert snapshot == expected
    assert result.context.model_dump(exclude={"run_id", "hitl_history"}) == expected
    assert result.context.hitl_history == ()


async def test_each_step_sees_every_earlier_update(rt: Runtime) -> None:
    @step
    async def tick(seen: list[int], *, context: Notes) -> WithPatch:
        return WithPatch([*seen, context.count], [AddTo("count", 1), AppendTo("trail", "tick")])

    result = await rt.run(Pipeline.of(tick, tick, tick, tick), [], context=Notes())

    assert result.output == [0, 1, 2, 3]
    assert result.context.count == 4
    assert result.context.trail == ("tick", "tick", "tick", "tick")


async def test_nested_pipeline_patches_reach_the_parent(rt: Runtime) -> None:
    @step
    async def note_a(text: str) -> WithPatch:
        return WithPatch(text, [AppendTo("notes", "a"), AddTo("count", 1)])

    @step
    async def note_b(text: str, *, context: Notes) -> WithPatch:
        return WithPatch(text, [AppendTo("notes", f"b after {context.notes}")])

    seen_by_last: list[list[str]] = []

    @step
    async def last(text: str, *, context: Notes) -> str:
        seen_by_last.append(list(context.notes))
        return "done"

    inner = (note_a >> note_b).named("inner")
    result = await rt.run(Pipeline.of(inner.as_step(), last), "x", context=Notes())

    assert seen_by_last == [["a", "b after ['a']"]]
    assert result.context.notes == ["a", "b after ['a']"]
    assert result.context.count == 1
    assert result.step("inner").patch == (
        AppendTo("notes", "a"),
        AddTo("count", 1),
        AppendTo("notes", "b after ['a']"),
    )


async def test_patch_of_a_failed_step_is_not_applied(rt: Runtime) -> None:
    def never(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("no")

    @step(validators=[never], retry=RetryPolicy(max_attempts=1))
    async def failing(text: str) -> WithPatch:
        return WithPatch(text, [AddTo("count", 100)])

    result = await rt.run(failing, "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert result.context.count == 0


# --- invalid patches fail the step, naming the step path and the field ---------------------------


async def test_patch_with_an_invalid_value_fails_that_step(rt: Runtime) -> None:
    @step
    async def good(text: str) -> WithPatch:
        return WithPatch(text, [AddTo("count", 2)])

    @step
    async def bad(text: str) -> WithPatch:
        return WithPatch(text, [SetField("count", "many")])

    after = StubAgent(["unreached"])
    pipeline = good >> bad >> AgentStep("after", after)

    result = await rt.run(pipeline, "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert [entry.path for entry in result.step_history] == ["main/0:good", "main/1:bad"]
    assert result.step("good").success is True
    assert result.step("bad").success is False
    assert after.calls == 0
    assert str(result.error).startswith("step 'main/1:bad' left context field 'count' invalid:")
    assert "'many'" in str(result.error)
    assert result.step("bad").feedback == result.error
    # the valid earlier update stays, the invalid one is not applied
    assert result.context.count == 2


async def test_invalid_patch_in_a_nested_pipeline_names_the_nested_path(rt: Runtime) -> None:
    @step
    async def fine(text: str) -> str:
        return text

    @step
    async def broken(text: str) -> WithPatch:
        return WithPatch(text, [SetField("tags", ["not", "a", "dict"])])

    inner = (fine >> broken).named("inner")
    pipeline = Pipeline.of(AgentStep("first", StubAgent(["x"])), inner.as_step())
    result = await rt.run(pipeline, "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert str(result.error).startswith(
        "step 'main/1:inner/1:broken' left context field 'tags' invalid"
    )


async def test_patch_of_an_unknown_field_names_it(rt: Runtime) -> None:
    @step
    async def typo(text: str) -> WithPatch:
        return WithPatch(text, [SetField("cuont", 1)])

    result = await rt.run(typo, "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert str(result.error).startswith("step 'main/0:typo' patches unknown context field 'cuont'")


async def test_operation_that_does_not_fit_the_field_names_it(rt: Runtime) -> None:
    @step
    async def wrong_op(text: str) -> WithPatch:
        return WithPatch(text, [AppendTo("count", 1)])

    result = await rt.run(wrong_op, "x", context=Notes())

    assert result.status is RunStatus.FAILED
    assert str(result.error).startswith(
        "step 'main/0:wrong_op' cannot apply AppendTo to context field 'count'"
    )


# --- immutability --------------------------------------------------------------------------------


async def test_initial_context_is_never_changed(rt: Runtime) -> None:
    @step
    async def change_everything(text: str) -> WithPatch:
        return WithPatch(
            text,
            [
                AppendTo("notes", "new"),
                SetKey("tags", "new", 1),
                AddTo("count", 1),
                SetField("label", "changed"),
            ],
        )

    initial = Notes(notes=["old"], tags={"old": 0})
    before = initial.model_dump()

    result = await rt.run(change_everything, "x", context=initial)

    assert initial.model_dump() == before
    assert initial.run_id == ""
    assert initial.notes == ["old"]
    assert initial.tags == {"old": 0}
    assert result.context.notes == ["old", "new"]
    assert result.context.tags == {"old": 0, "new": 1}
    assert result.context.run_id == result.run_id


async def test_a_step_snapshot_does_not_change_after_its_patch(rt: Runtime) -> None:
    snapshots: list[Notes] = []

    @step
    async def first(text: str, *, context: Notes) -> WithPatch:
        snapshots.append(context)
        return WithPatch(text, [AppendTo("notes", "from first"), AddTo("count", 1)])

    @step
    async def second(text: str, *, context: Notes) -> str:
        snapshots.append(context)
        return text

    await rt.run(first >> second, "x", context=Notes())

    assert snapshots[0].notes == []
    assert snapshots[0].count == 0
    assert snapshots[1].notes == ["from first"]
    assert snapshots[1].count == 1


def test_contexts_are_frozen() -> None:
    context = Notes()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        context.count = 3  # type: ignore[misc]


def test_apply_patch_returns_a_new_validated_context() -> None:
    original = Notes(count=1, notes=["a"])

    patched = apply_patch(original, (AddTo("count", 2), AppendTo("notes", "b")), step="here")

    assert patched.count == 3
    assert patched.notes == ["a", "b"]
    assert original.count == 1
    assert original.notes == ["a"]
    assert apply_patch(original, (), step="here") is original


def test_apply_patch_errors_name_the_step_and_field() -> None:
    with pytest.raises(ContextValidationError, match=r"step 'p' cannot apply Remove .* 'tags'"):
        apply_patch(Notes(), (Remove("tags", "missing"),), step="p")
    with pytest.raises(ContextValidationError, match=r"step 'p' cannot apply AddTo .* 'label'"):
        apply_patch(Notes(), (AddTo("label", 1),), step="p")
    with pytest.raises(
        ContextValidationError, match=r"step 'p' left context field 'count' invalid"
    ):
        apply_patch(Notes(), (SetField("count", "x"),), step="p")


def test_many_operations_on_one_field_change_neither_the_context_nor_a_given_value() -> None:
    original = Notes(notes=["a"], tags={"x": 1}, trail=("t",))
    given_tags = {"g": 0}
    given_notes = ["given"]
    patch = (
        *(SetKey("tags", f"k{i}", i) for i in range(3)),
        Remove("tags", "x"),
        *(AppendTo("notes", f"n{i}") for i in range(3)),
        AppendTo("trail", "u"),
        SetField("tags", given_tags),
        SetKey("tags", "after", 9),
        Remove("tags", "g"),
        SetField("notes", given_notes),
        AppendTo("notes", "more"),
    )

    patched = apply_patch(original, patch, step="here")

    assert patched.tags == {"after": 9}
    assert patched.notes == ["given", "more"]
    assert patched.trail == ("t", "u")
    assert original.tags == {"x": 1}
    assert original.notes == ["a"]
    assert original.trail == ("t",)
    assert given_tags == {"g": 0}
    assert given_notes == ["given"]


def test_a_thousand_keys_and_appends_on_one_field_all_land_in_order() -> None:
    patch = (
        *(SetKey("tags", f"k{i}", i) for i in range(1000)),
        *(AppendTo("notes", f"n{i}") for i in range(1000)),
    )

    patched = apply_patch(Notes(), patch, step="here")

    assert list(patched.tags.items()) == [(f"k{i}", i) for i in range(1000)]
    assert patched.notes == [f"n{i}" for i in range(1000)]


def test_the_hitl_history_is_kept_in_answer_order() -> None:
    earlier = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    later = earlier + datetime.timedelta(seconds=1)
    first = HumanInteraction(path="main/0:p/a/0:ask", message="A?", answer=1, answered_at=later)
    second = HumanInteraction(path="main/0:p/b/0:ask", message="B?", answer=2, answered_at=earlier)
    unknown = HumanInteraction(path="main/0:old", message="Old?", answer=0)

    context = BaseContext(hitl_history=(first, second))
    patched = apply_patch(
        BaseContext(hitl_history=(first,)), (AppendTo("hitl_history", second),), step="s"
    )

    assert context.hitl_history == (second, first)
    assert patched.hitl_history == (second, first)
    # An entry recorded before answer times were kept comes first.
    assert BaseContext(hitl_history=(first, unknown)).hitl_history == (unknown, first)
