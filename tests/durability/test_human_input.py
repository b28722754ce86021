"""Human input: a run pauses, the pause is journaled, and resuming goes on from there.

Each scenario runs against both stores. The pipelines count what their
steps run in a list, so each test can prove that no completed step ran
again after a resume, also when the pause sits inside a loop iteration, a
parallel branch or a map item.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest
import trio
from trioflow.persistence import RunStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    HumanInputInvalid,
    HumanInputRequired,
    HumanInteraction,
    Pipeline,
    PipelineResult,
    Runtime,
    Step,
    WithPatch,
    step,
)
from trioflow.runtime.lowlevel import stored_types

# -- stores and runtime --------------------------------------------------------------------


async def answer_times(store: RunStore, run_id: str) -> dict[str, datetime.datetime | None]:
    """When each pause of ``run_id`` was answered, by path (as its history entry records)."""
    return {pause.path: pause.answered_at for pause in await store.pauses_of(run_id)}


# The store (in memory and SQLite) and runtime fixtures are in conftest.py.


# -- a sequence: draft, a person approves, publish -----------------------------------------


class Approval(pydantic.BaseModel):
    approved: bool
    note: str = ""


APPROVE = "main/1:approve"
APPROVE_MESSAGE = "Publish the draft?"


def approval_pipeline(calls: list[str]) -> Pipeline:
    @step
    async def draft(topic: str) -> str:
        calls.append("draft")
        return f"draft about {topic}"

    @step
    async def publish(answer: Approval) -> str:
        calls.append("publish")
        return f"published={answer.approved} ({answer.note})"

    approve = Step.human_in_the_loop("approve", APPROVE_MESSAGE, Approval)
    return Pipeline.of(draft, approve, publish, name="approval")


async def test_a_human_step_pauses_the_run(rt: Runtime, store: RunStore) -> None:
    calls: list[str] = []
    result = await rt.run(approval_pipeline(calls), "trio")
    assert result.status == "paused"
    assert result.paused_at == (APPROVE,)
    assert result.output is None
    assert calls == ["draft"]
    record = await store.get_run(result.run_id)
    assert (record.status, record.paused_at) == ("paused", (APPROVE,))


async def test_the_pause_is_journaled_with_message_and_schema(rt: Runtime, store: RunStore) -> None:
    result = await rt.run(approval_pipeline([]), "trio")
    [pause] = await store.pauses_of(result.run_id)
    assert pause.run_id == result.run_id
    assert pause.path == APPROVE
    assert pause.message == APPROVE_MESSAGE
    assert pause.input_schema == Approval.model_json_schema()
    assert (pause.answer, pause.answered_at) == (None, None)
    assert [step.path for step in await store.steps_of(result.run_id)] == ["main/0:draft"]


async def test_an_answer_that_does_not_fit_leaves_the_run_paused_and_unchanged(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    paused = await rt.run(approval_pipeline(calls), "trio")
    steps_before = await store.steps_of(paused.run_id)
    pauses_before = await store.pauses_of(paused.run_id)

    with pytest.raises(HumanInputInvalid, match=r"'main/1:approve'.*: approved: "):
        await rt.resume(paused.run_id, {"approved": "maybe"})

    record = await store.get_run(paused.run_id)
    assert (record.status, record.paused_at) == ("paused", (APPROVE,))
    assert await store.steps_of(paused.run_id) == steps_before
    assert await store.pauses_of(paused.run_id) == pauses_before
    assert calls == ["draft"]


async def test_a_run_with_a_rejected_answer_can_still_be_resumed(rt: Runtime) -> None:
    calls: list[str] = []
    paused = await rt.run(approval_pipeline(calls), "trio")
    with pytest.raises(HumanInputInvalid):
        await rt.resume(paused.run_id, {"note": "no approved field"})

    result = await rt.resume(paused.run_id, {"approved": True, "note": "fine"})
    assert result.status == "completed"
    assert result.output == "published=True (fine)"
    assert calls == ["draft", "publish"]


async def test_a_valid_answer_completes_the_run_without_rerunning_earlier_steps(
    rt: Runtime,
) -> None:
    calls: list[str] = []
    paused = await rt.run(approval_pipeline(calls), "trio")
    result = await rt.resume(paused.run_id, {"approved": True, "note": "ship it"})
    assert result.status == "completed"
    assert result.paused_at == ()
    assert result.output == "published=True (ship it)"
    assert calls == ["draft", "publish"]
    assert [step.path for step in result.step_history] == [
        "main/0:draft",
        APPROVE,
        "main/2:publish",
    ]


async def test_the_answer_is_validated_into_the_schema_type(rt: Runtime) -> None:
    paused = await rt.run(approval_pipeline([]), "trio")
    result = await rt.resume(paused.run_id, {"approved": "yes", "note": "ok"})
    answer = result.step("approve").output
    assert type(answer) is Approval
    assert answer == Approval(approved=True, note="ok")


async def test_the_answer_is_recorded_in_the_context_history(rt: Runtime, store: RunStore) -> None:
    paused = await rt.run(approval_pipeline([]), "trio")
    result = await rt.resume(paused.run_id, {"approved": False})
    answered_at = (await answer_times(store, paused.run_id))[APPROVE]
    assert result.context.hitl_history == (
        HumanInteraction(
            path=APPROVE,
            message=APPROVE_MESSAGE,
            answer=Approval(approved=False, note=""),
            answered_at=answered_at,
        ),
    )


async def test_the_answered_pause_is_journaled(rt: Runtime, store: RunStore) -> None:
    pipeline = approval_pipeline([])
    paused = await rt.run(pipeline, "trio")
    await rt.resume(paused.run_id, {"approved": True})
    [pause] = await store.pauses_of(paused.run_id, types=stored_types(pipeline))
    assert pause.path == APPROVE
    assert pause.answer == Approval(approved=True, note="")
    assert type(pause.answer) is Approval
    assert isinstance(pause.answered_at, datetime.datetime)
    assert pause.answered_at.utcoffset() == datetime.timedelta(0)
    assert pause.answered_at >= pause.created_at


# -- two pauses in a sequence: the first answer is replayed from the journal ---------------

ASK_FIRST = "main/0:first"
ASK_SECOND = "main/1:second"


def two_approvals_pipeline() -> Pipeline:
    first = Step.human_in_the_loop("first", "First approval?", Approval)
    second = Step.human_in_the_loop("second", "Second approval?", Approval)
    return Pipeline.of(first, second, name="two_approvals")


async def test_an_earlier_answer_keeps_its_type_when_replayed_from_the_journal(
    rt: Runtime, store: RunStore
) -> None:
    paused = await rt.run(two_approvals_pipeline(), None)
    await rt.resume(paused.run_id, {"approved": True, "note": "one"})  # pauses at the second
    result = await rt.resume(paused.run_id, {"approved": False, "note": "two"})
    assert result.status == "completed"
    answered_at = await answer_times(store, paused.run_id)
    assert result.context.hitl_history == (
        HumanInteraction(
            path=ASK_FIRST,
            message="First approval?",
            answer=Approval(approved=True, note="one"),
            answered_at=answered_at[ASK_FIRST],
        ),
        HumanInteraction(
            path=ASK_SECOND,
            message="Second approval?",
            answer=Approval(approved=False, note="two"),
            answered_at=answered_at[ASK_SECOND],
        ),
    )


async def test_the_journaled_final_context_equals_the_result_context(
    rt: Runtime, store: RunStore
) -> None:
    pipeline = Pipeline.of(Step.human_in_the_loop("ok", "OK?", bool), name="one_question")
    paused = await rt.run(pipeline, None)
    result = await rt.resume(paused.run_id, True)
    answered_at = (await answer_times(store, paused.run_id))["main/0:ok"]
    assert result.context.hitl_history == (
        HumanInteraction(path="main/0:ok", message="OK?", answer=True, answered_at=answered_at),
    )
    record = await store.get_run(result.run_id)
    assert record.final_context == result.context


# -- a pause inside a loop -----------------------------------------------------------------


class LoopContext(BaseContext):
    counter: int = 0


def loop_pipeline(seen: list[int]) -> Pipeline:
    """Each iteration adds 1 to the counter, then asks a person; it stops at 3."""

    @step
    async def bump(data: Any, *, context: LoopContext) -> WithPatch:
        seen.append(context.counter)
        return WithPatch(context.counter + 1, [AddTo("counter", 1)])

    body = Pipeline.of(bump, Step.human_in_the_loop("check", "Go on?", bool), name="body")
    loop = Step.loop_until("loop", body, lambda output, context: context.counter == 3, max_loops=3)
    return Pipeline.of(loop, name="looping", context_type=LoopContext)


def iteration(i: int) -> str:
    return f"main/0:loop/loop[{i}]"


async def run_loop_to_the_end(
    rt: Runtime, seen: list[int]
) -> tuple[list[tuple[str, ...]], PipelineResult]:
    """Run the loop pipeline, answering ``True`` until it ends; every ``paused_at`` seen."""
    result = await rt.run(loop_pipeline(seen), None)
    pauses = [result.paused_at]
    for _ in range(3):
        result = await rt.resume(result.run_id, True)
        pauses.append(result.paused_at)
    return pauses, result


async def test_a_loop_pauses_once_per_iteration_at_that_iteration(rt: Runtime) -> None:
    pauses, result = await run_loop_to_the_end(rt, [])
    assert pauses == [
        (f"{iteration(1)}/1:check",),
        (f"{iteration(2)}/1:check",),
        (f"{iteration(3)}/1:check",),
        (),
    ]
    assert result.status == "completed"


async def test_a_loop_resumed_after_a_pause_never_restarts(rt: Runtime) -> None:
    seen: list[int] = []
    _, result = await run_loop_to_the_end(rt, seen)
    assert seen == [0, 1, 2]  # the step before the pause ran once per iteration
    assert result.context.counter == 3
    loop = result.step("loop")
    assert loop.metadata == {"exit_reason": "condition", "iterations": 3}
    assert loop.attempts == 3
    assert [r.path for r in loop.step_history] == [iteration(1), iteration(2), iteration(3)]


async def test_a_loop_resumed_after_a_pause_journals_flat_iteration_paths(
    rt: Runtime, store: RunStore
) -> None:
    _, result = await run_loop_to_the_end(rt, [])
    assert [record.path for record in await store.steps_of(result.run_id)] == [
        f"{iteration(1)}/0:bump",
        f"{iteration(1)}/1:check",
        iteration(1),
        f"{iteration(2)}/0:bump",
        f"{iteration(2)}/1:check",
        iteration(2),
        f"{iteration(3)}/0:bump",
        f"{iteration(3)}/1:check",
        iteration(3),
        "main/0:loop",
        "main",
    ]
    assert [pause.path for pause in await store.pauses_of(result.run_id)] == [
        f"{iteration(i)}/1:check" for i in (1, 2, 3)
    ]


# -- pauses inside parallel branches -------------------------------------------------------


class NotesContext(BaseContext):
    notes: list[str] = []


ASK_A = "main/0:fan/a/1:ask_a"
ASK_B = "main/0:fan/b/1:ask_b"


def parallel_pipeline(calls: list[str]) -> Pipeline:
    """Branches ``a`` and ``b`` work, then ask a person; ``c`` works a little longer."""

    def work(name: str, delay: float = 0.0) -> AgentStep:
        async def run(text: str) -> WithPatch:
            calls.append(name)
            await trio.sleep(delay)
            return WithPatch(f"{name}:{text}", [AppendTo("notes", name)])

        return Step.from_callable(run, name=f"work_{name}", output_type=str)

    fan = Step.parallel(
        "fan",
        {
            "a": Pipeline.of(work("a"), Step.human_in_the_loop("ask_a", "A?", int), name="a"),
            "b": Pipeline.of(work("b"), Step.human_in_the_loop("ask_b", "B?", int), name="b"),
            # Still running when a and b pause: a pause must not stop it.
            "c": work("c", delay=0.05),
        },
    )
    return Pipeline.of(fan, name="fanning", context_type=NotesContext)


async def test_a_parallel_step_pauses_at_every_waiting_branch_in_declaration_order(
    rt: Runtime, store: RunStore
) -> None:
    result = await rt.run(parallel_pipeline([]), "x")
    assert result.status == "paused"
    assert result.paused_at == (ASK_A, ASK_B)
    assert [pause.path for pause in await store.pauses_of(result.run_id)] == [ASK_A, ASK_B]


async def test_a_sibling_branch_finishes_once_while_others_pause_and_is_kept(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    paused = await rt.run(parallel_pipeline(calls), "x")
    committed = {record.path for record in await store.steps_of(paused.run_id)}
    assert {"main/0:fan/c"} <= committed

    await rt.resume(paused.run_id, 1, path=ASK_A)
    result = await rt.resume(paused.run_id, 2, path=ASK_B)
    assert result.status == "completed"
    assert sorted(calls) == ["a", "b", "c"]  # every branch's work ran exactly once
    assert result.output["c"] == "c:x"


async def test_resuming_without_a_path_while_two_branches_wait_names_both(
    rt: Runtime, store: RunStore
) -> None:
    paused = await rt.run(parallel_pipeline([]), "x")
    with pytest.raises(HumanInputRequired) as error:
        await rt.resume(paused.run_id, 1)
    assert f"'{ASK_A}', '{ASK_B}'" in str(error.value)
    assert "path=" in str(error.value)
    assert (await store.get_run(paused.run_id)).status == "paused"
    assert [pause.answered_at for pause in await store.pauses_of(paused.run_id)] == [None, None]


async def test_answering_each_branch_by_path_completes_with_the_merged_context(
    rt: Runtime, store: RunStore
) -> None:
    paused = await rt.run(parallel_pipeline([]), "x")
    halfway = await rt.resume(paused.run_id, 1, path=ASK_A)
    assert (halfway.status, halfway.paused_at) == ("paused", (ASK_B,))

    result = await rt.resume(paused.run_id, 2, path=ASK_B)
    assert result.status == "completed"
    assert result.output == {"a": 1, "b": 2, "c": "c:x"}
    assert result.context.notes == ["a", "b", "c"]
    answered_at = await answer_times(store, paused.run_id)
    assert result.context.hitl_history == (
        HumanInteraction(path=ASK_A, message="A?", answer=1, answered_at=answered_at[ASK_A]),
        HumanInteraction(path=ASK_B, message="B?", answer=2, answered_at=answered_at[ASK_B]),
    )


async def test_branches_answered_in_reverse_order_are_in_answer_order_in_the_history(
    rt: Runtime, store: RunStore
) -> None:
    pipeline = parallel_pipeline([])
    paused = await rt.run(pipeline, "x")
    halfway = await rt.resume(paused.run_id, 2, path=ASK_B)
    assert (halfway.status, halfway.paused_at) == ("paused", (ASK_A,))

    result = await rt.resume(paused.run_id, 1, path=ASK_A)

    assert result.status == "completed"
    assert result.output == {"a": 1, "b": 2, "c": "c:x"}
    answered_at = await answer_times(store, paused.run_id)
    assert answered_at[ASK_B] < answered_at[ASK_A]  # type: ignore[operator]
    assert result.context.hitl_history == (
        HumanInteraction(path=ASK_B, message="B?", answer=2, answered_at=answered_at[ASK_B]),
        HumanInteraction(path=ASK_A, message="A?", answer=1, answered_at=answered_at[ASK_A]),
    )
    record = await store.get_run(paused.run_id, types=stored_types(pipeline))
    assert record.final_context == result.context


# -- pauses inside map items ---------------------------------------------------------------


def item_pause(i: int) -> str:
    return f"main/0:each/item[{i}]/1:rate"


def map_pipeline(calls: list[str]) -> Pipeline:
    """Each item is labelled, rated by a person, and the rating scaled."""

    @step
    async def label(item: str) -> str:
        calls.append(item)
        return f"<{item}>"

    @step
    async def scale(rating: int) -> int:
        return rating * 10

    body = Pipeline.of(label, Step.human_in_the_loop("rate", "Rate it", int), scale, name="body")
    return Pipeline.of(Step.map_over("each", body), name="mapping")


async def test_a_map_pauses_at_every_item(rt: Runtime, store: RunStore) -> None:
    result = await rt.run(map_pipeline([]), ["x", "y", "z"])
    assert result.status == "paused"
    assert result.paused_at == (item_pause(0), item_pause(1), item_pause(2))
    assert sorted(pause.path for pause in await store.pauses_of(result.run_id)) == [
        item_pause(0),
        item_pause(1),
        item_pause(2),
    ]


async def test_answering_each_item_by_path_gives_outputs_in_item_order(rt: Runtime) -> None:
    calls: list[str] = []
    paused = await rt.run(map_pipeline(calls), ["x", "y", "z"])
    for i in (2, 1):  # answered out of order, on purpose
        partial = await rt.resume(paused.run_id, i + 1, path=item_pause(i))
        assert partial.status == "paused"
    result = await rt.resume(paused.run_id, 1, path=item_pause(0))
    assert result.status == "completed"
    assert result.output == [10, 20, 30]
    assert sorted(calls) == ["x", "y", "z"]  # each item's first step ran once
