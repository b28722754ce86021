"""Resuming runs: which runs can be resumed, by which runtime, and what comes back.

A resumed run re-walks its pipeline from the journal: completed steps are
restored, never run again, and usage totals are rebuilt from the ledger.
Mistakes (a finished run, an unknown id, an answer nobody waits for, a
runtime that does not know the pipeline) raise precise errors and change
nothing. Every scenario runs against both stores.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio
from trioflow.persistence import (
    InMemoryStore,
    LedgerEntry,
    RunStore,
    SQLiteStore,
    StoreError,
    UnknownRun,
)
from trioflow.runtime import (
    AgentStep,
    Completion,
    ConfigurationError,
    HumanInputRequired,
    Pipeline,
    RunNotResumable,
    RunStatus,
    Runtime,
    Step,
    Usage,
    open_runtime,
)
from trioflow.runtime.agents import StubAgent

# -- stores and runtime --------------------------------------------------------------------


# The store (in memory and SQLite) and runtime fixtures are in conftest.py.


# -- pipelines -----------------------------------------------------------------------------

COST = Decimal("0.25")


def paid(name: str, calls: list[str]) -> AgentStep:
    """A step that appends its name to its input, costing $0.25, 10 + 5 tokens."""

    async def run(text: str) -> Completion:
        calls.append(name)
        return Completion(f"{text}>{name}", Usage(COST, 10, 5))

    return Step.from_callable(run, name=name, output_type=str)


def review_pipeline(calls: list[str]) -> Pipeline:
    """``draft`` (paid), a person approves (bool), ``publish`` (paid)."""

    async def publish(approved: bool) -> Completion:
        calls.append("publish")
        return Completion(f"approved={approved}", Usage(COST, 10, 5))

    return Pipeline.of(
        paid("draft", calls),
        Step.human_in_the_loop("approve", "Publish?", bool),
        Step.from_callable(publish, name="publish"),
        name="review",
    )


def stalling_pipeline(calls: list[str], in_flight: trio.Event) -> Pipeline:
    """``first`` (paid), then ``stall``, which waits forever on its first call only."""

    async def stall(text: str) -> str:
        calls.append("stall")
        if not in_flight.is_set():
            in_flight.set()
            await trio.sleep_forever()
        return f"{text}>stall"

    return Pipeline.of(
        paid("first", calls), Step.from_callable(stall, name="stall"), name="stalling"
    )


async def cancel_once_in_flight(rt: Runtime, pipeline: Pipeline, in_flight: trio.Event) -> str:
    """Run ``pipeline`` and cancel the run once ``in_flight`` is set; the run's id."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel() -> None:
                await in_flight.wait()
                scope.cancel()

            nursery.start_soon(cancel)
            result = await rt.run(pipeline, "in")
            pytest.fail(f"the run ended ({result.status}) before it could be cancelled")
    assert scope.cancelled_caught
    [run] = await rt.store.list_runs()
    return run.run_id


# -- runs that cannot be resumed -----------------------------------------------------------


async def test_resuming_a_completed_run_raises_run_not_resumable(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    pipeline = Pipeline.of(paid("only", calls), name="single")
    done = await rt.run(pipeline, "in")
    record = await store.get_run(done.run_id)

    with pytest.raises(RunNotResumable, match=r"has status 'completed'"):
        await rt.resume(done.run_id)

    assert await store.get_run(done.run_id) == record
    assert calls == ["only"]


async def test_resuming_an_unknown_run_raises_unknown_run(rt: Runtime) -> None:
    with pytest.raises(UnknownRun, match=r"no run with id 'no-such-run' is stored"):
        await rt.resume("no-such-run")


async def test_an_answer_for_a_run_that_waits_for_none_is_a_configuration_error(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    in_flight = trio.Event()
    run_id = await cancel_once_in_flight(rt, stalling_pipeline(calls, in_flight), in_flight)
    assert (await store.get_run(run_id)).status == "cancelled"

    with pytest.raises(ConfigurationError, match=r"is not waiting for human input"):
        await rt.resume(run_id, True)

    assert (await store.get_run(run_id)).status == "cancelled"
    assert calls == ["first", "stall"]


async def test_a_run_refused_an_answer_still_resumes_without_one(rt: Runtime) -> None:
    calls: list[str] = []
    in_flight = trio.Event()
    run_id = await cancel_once_in_flight(rt, stalling_pipeline(calls, in_flight), in_flight)
    with pytest.raises(ConfigurationError):
        await rt.resume(run_id, True)

    result = await rt.resume(run_id)
    assert result.status == "completed"
    assert result.output == "in>first>stall"
    assert calls == ["first", "stall", "stall"]


async def test_a_paused_run_resumed_without_an_answer_raises_human_input_required(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    paused = await rt.run(review_pipeline(calls), "in")
    with pytest.raises(HumanInputRequired, match=r"waits for input at main/1:approve: Publish\?"):
        await rt.resume(paused.run_id)
    assert (await store.get_run(paused.run_id)).status == "paused"
    assert calls == ["draft"]


async def test_an_answer_for_a_path_that_does_not_wait_is_a_configuration_error(
    rt: Runtime, store: RunStore
) -> None:
    paused = await rt.run(review_pipeline([]), "in")
    with pytest.raises(
        ConfigurationError, match=r"has no pause at 'main/0:draft'; waiting at 'main/1:approve'"
    ):
        await rt.resume(paused.run_id, True, path="main/0:draft")
    assert [pause.answered_at for pause in await store.pauses_of(paused.run_id)] == [None]


# -- a runtime that did not start the run --------------------------------------------------


async def test_a_runtime_that_did_not_start_the_run_needs_the_pipeline(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    pipeline = review_pipeline(calls)
    paused = await rt.run(pipeline, "in")

    async with open_runtime(store=store) as other:
        with pytest.raises(ConfigurationError, match=r"pass the pipeline 'review' as pipeline="):
            await other.resume(paused.run_id, True)
        assert (await store.get_run(paused.run_id)).status == "paused"

        result = await other.resume(paused.run_id, True, pipeline=pipeline)
    assert result.status == "completed"
    assert result.output == "approved=True"
    assert calls == ["draft", "publish"]


async def test_a_pipeline_with_another_name_is_refused(rt: Runtime, store: RunStore) -> None:
    paused = await rt.run(review_pipeline([]), "in")
    async with open_runtime(store=store) as other:
        with pytest.raises(ConfigurationError, match=r"ran pipeline 'review', not 'renamed'"):
            await other.resume(paused.run_id, True, pipeline=review_pipeline([]).named("renamed"))
    assert (await store.get_run(paused.run_id)).status == "paused"


async def test_a_new_runtime_over_the_same_sqlite_file_resumes_the_run(tmp_path: Path) -> None:
    calls: list[str] = []
    pipeline = review_pipeline(calls)
    db = tmp_path / "runs.db"
    async with SQLiteStore.open(db) as store, open_runtime(store=store) as first:
        run_id = (await first.run(pipeline, "in")).run_id

    async with SQLiteStore.open(db) as store, open_runtime(store=store) as second:
        with pytest.raises(ConfigurationError, match=r"pass the pipeline 'review'"):
            await second.resume(run_id, True)
        result = await second.resume(run_id, True, pipeline=pipeline)
        record = await store.get_run(run_id)

    assert result.status == "completed"
    assert result.output == "approved=True"
    assert calls == ["draft", "publish"]
    assert (record.status, record.output) == ("completed", "approved=True")


# -- what a resume rebuilds from the journal -----------------------------------------------


async def test_usage_totals_after_a_pause_equal_an_uninterrupted_run(
    rt: Runtime, store: RunStore
) -> None:
    paused = await rt.run(review_pipeline([]), "in")
    assert paused.usage == Usage(COST, 10, 5)

    result = await rt.resume(paused.run_id, True)
    assert result.usage == Usage(Decimal("0.50"), 20, 10)
    record = await store.get_run(paused.run_id)
    assert (record.total_cost_usd, record.input_tokens, record.output_tokens) == ("0.50", 20, 10)
    assert await store.ledger_of(paused.run_id) == [
        LedgerEntry(paused.run_id, "main/0:draft#1#1", "main/0:draft", "0.25", 10, 5),
        LedgerEntry(paused.run_id, "main/2:publish#1#1", "main/2:publish", "0.25", 10, 5),
    ]


async def test_restored_steps_keep_their_recorded_results(rt: Runtime) -> None:
    paused = await rt.run(review_pipeline([]), "in")
    result = await rt.resume(paused.run_id, True)
    draft = result.step("draft")
    assert (draft.path, draft.output, draft.success, draft.attempts) == (
        "main/0:draft",
        "in>draft",
        True,
        1,
    )
    assert draft.usage == Usage(COST, 10, 5)
    assert [step.name for step in result.step_history] == ["draft", "approve", "publish"]


class LedgerFailsOnce(InMemoryStore):
    """A store whose first ledger write fails, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("disk full")
        await super().record_usage(entry, epoch=epoch)


async def test_a_journal_failure_ends_the_run_as_interrupted_and_is_never_retried() -> None:
    store = LedgerFailsOnce()
    model = StubAgent([Completion("a", Usage("0.25")), Completion("b", Usage("0.25"))])
    async with open_runtime(store=store) as rt:
        with pytest.raises(StoreError, match=r"^disk full$"):
            await rt.run(AgentStep("ask", model), "q")
        [record] = await store.list_runs()
        assert model.calls == 1  # not retried as if the model had failed
        assert record.status == RunStatus.INTERRUPTED.value

        resumed = await rt.resume(record.run_id)  # the disk has room again

    assert resumed.status is RunStatus.COMPLETED
    assert resumed.output == "b"
    assert model.calls == 2
