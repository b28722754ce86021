"""Claiming a run: of resumes racing for one run, exactly one goes on.

A resume claims the run by replacing the run record it read with a
compare-and-set (``RunStore.swap_run``). Two resumes race here in one
process (two runtimes over one store, in memory or SQLite) and as two
"processes" (two ``SQLiteStore`` instances on one file), under chosen
schedules and under random ones on trio's MockClock. Each time exactly one
resume proceeds; the other raises :class:`RunClaimed` (or, if it only read
the run once the winner had finished, :class:`RunNotResumable`) having
written nothing; the step after the pause runs once; the stored run is the
winner's, exactly.

A run whose owner is alive (its lease runs) is not claimed at all; one a
crash left ``running`` is, once the dead owner's lease has run out. (The
lease itself, its heartbeat and the fence are tested in ``test_lease.py``.)
"""

from __future__ import annotations

import datetime
import math
import random
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trioflow.actors import TraceEvent
from trioflow.persistence import (
    NO_TYPES,
    InMemoryStore,
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunStore,
    RunSummary,
    SQLiteStore,
    StepRecord,
    TrustedTypes,
)
from trioflow.runtime import (
    Completion,
    HumanInteraction,
    Pipeline,
    PipelineResult,
    RunClaimed,
    RunNotResumable,
    Step,
    Usage,
    open_runtime,
)

COST = Decimal("0.25")
APPROVE = "main/1:approve"


# -- a store that lets a test pace, hold or break every call ---------------------------------

Hook = Callable[[str], Awaitable[None]]


async def no_hook(name: str) -> None:
    pass


class HookedStore:
    """Passes every call on to ``inner`` after awaiting ``hook(method name)``.

    ``statuses_read`` lists the status of each run record ``get_run``
    returned, so a test knows what a resume saw.
    """

    def __init__(self, inner: RunStore, hook: Hook = no_hook) -> None:
        self._inner = inner
        self._hook = hook
        self.statuses_read: list[str] = []

    async def create_run(self, run: RunRecord) -> None:
        await self._hook("create_run")
        await self._inner.create_run(run)

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        await self._hook("swap_run")
        return await self._inner.swap_run(expected, replacement)

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        await self._hook("renew_lease")
        return await self._inner.renew_lease(run, until)

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        await self._hook("record_step")
        await self._inner.record_step(step, epoch=epoch)

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        await self._hook("record_usage")
        await self._inner.record_usage(entry, epoch=epoch)

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        await self._hook("record_pause")
        await self._inner.record_pause(pause, epoch=epoch)

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await self._hook("save_trace")
        await self._inner.save_trace(run_id, events, epoch=epoch)

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        await self._hook("get_run")
        record = await self._inner.get_run(run_id, types=types)
        self.statuses_read.append(record.status)
        return record

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        await self._hook("list_runs")
        return await self._inner.list_runs(limit=limit, offset=offset)

    async def count_runs(self) -> int:
        await self._hook("count_runs")
        return await self._inner.count_runs()

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        await self._hook("delete_run")
        return await self._inner.delete_run(run_id, revision=revision)

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        await self._hook("steps_of")
        return await self._inner.steps_of(run_id, types=types)

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        await self._hook("pauses_of")
        return await self._inner.pauses_of(run_id, types=types)

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        await self._hook("ledger_of")
        return await self._inner.ledger_of(run_id)

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        await self._hook("trace_of")
        return await self._inner.trace_of(run_id)


class BothClaimAtOnce:
    """A hook that holds the first two ``swap_run`` calls (the claims) until both are made.

    So both resumes have read the paused run before either claims it.
    """

    def __init__(self) -> None:
        self._waiting = 2
        self._all_here = trio.Event()

    async def __call__(self, name: str) -> None:
        if name != "swap_run" or self._all_here.is_set():
            return
        self._waiting -= 1
        if self._waiting == 0:
            self._all_here.set()
        await self._all_here.wait()


# -- the pipelines -----------------------------------------------------------------------------


@attrs.define
class Gate:
    """Holds a step on its first call until opened; ``entered`` says one is held."""

    entered: trio.Event = attrs.field(factory=trio.Event)
    opened: trio.Event = attrs.field(factory=trio.Event)

    async def hold_first(self) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.opened.wait()


def review_pipeline(calls: list[str], publishing: Gate | None = None) -> Pipeline:
    """``draft`` (paid), a person approves, ``publish`` (paid; held by ``publishing``)."""

    async def draft(text: str) -> Completion:
        calls.append("draft")
        return Completion(f"{text}>draft", Usage(COST, 10, 5))

    async def publish(approved: bool) -> Completion:
        calls.append(f"publish:{approved}")
        if publishing is not None:
            await publishing.hold_first()
        return Completion(f"approved={approved}", Usage(COST, 10, 5))

    return Pipeline.of(
        Step.from_callable(draft, name="draft", output_type=str),
        Step.human_in_the_loop("approve", "Publish?", bool),
        Step.from_callable(publish, name="publish"),
        name="review",
    )


async def paused_run(store: RunStore, pipeline: Pipeline) -> RunRecord:
    """Run ``pipeline`` to its pause; the stored run record."""
    async with open_runtime(store=store) as runtime:
        paused = await runtime.run(pipeline, "in")
    assert paused.paused_at == (APPROVE,)
    return await store.get_run(paused.run_id)


async def completed_by(
    store: RunStore, paused: RunRecord, stored: RunRecord, answer: bool
) -> RunRecord:
    """The record a resume answering ``answer`` leaves: ``paused``, claimed and completed.

    ``finished_at`` is taken from ``stored`` and the answer's time from the
    journaled pause (the wall clock); the final context is ``paused``'s
    context with the one answer in its history.
    """
    assert paused.context is not None  # the run's context, stored when it started
    [pause] = await store.pauses_of(paused.run_id)
    interaction = HumanInteraction(
        path=APPROVE, message="Publish?", answer=answer, answered_at=pause.answered_at
    )
    return attrs.evolve(
        paused,
        status="completed",
        finished_at=stored.finished_at,
        output=f"approved={answer}",
        final_context=paused.context.model_copy(update={"hitl_history": (interaction,)}),
        total_cost_usd="0.50",
        input_tokens=20,
        output_tokens=10,
        error=None,
        paused_at=(),
        revision=paused.revision + 2,  # the claim, then the outcome
        epoch=paused.epoch + 1,  # the claim
    )


def claimed_message(run_id: str, status: str) -> str:
    return (
        f"run {run_id!r} was claimed by another resume after this one read it "
        f"(status {status!r}): this resume did not start it and changed nothing"
    )


def running_message(run_id: str) -> str:
    return (
        f"run {run_id!r} is running, so it takes no answer: another resume (or the run "
        "itself) is driving it, or its process died. If that process died, resume the run "
        "without an answer to take it over: it goes on to its pauses again"
    )


def completed_message(run_id: str) -> str:
    return (
        f"run {run_id!r} has status 'completed': only queued, paused, running (interrupted) or "
        "cancelled runs can be resumed"
    )


# -- stores: one shared store, or two SQLite stores on one file --------------------------------


Outcome = PipelineResult | RunNotResumable


async def resume_racing(
    store: RunStore, run_id: str, answer: bool, pipeline: Pipeline, outcomes: dict[bool, Outcome]
) -> None:
    """Resume ``run_id`` with ``answer``; note the result, or the refusal."""
    async with open_runtime(store=store) as runtime:
        try:
            outcomes[answer] = await runtime.resume(run_id, answer, pipeline=pipeline)
        except RunNotResumable as refused:  # RunClaimed included
            outcomes[answer] = refused


# -- two resumes of one paused run -------------------------------------------------------------


async def test_of_two_resumes_that_read_one_paused_run_exactly_one_proceeds(
    stores: tuple[RunStore, RunStore],
) -> None:
    calls: list[str] = []
    pipeline = review_pipeline(calls)
    paused = await paused_run(stores[0], pipeline)
    at_once = BothClaimAtOnce()
    racers = [HookedStore(store, at_once) for store in stores]
    outcomes: dict[bool, Outcome] = {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resume_racing, racers[0], paused.run_id, True, pipeline, outcomes)
        nursery.start_soon(resume_racing, racers[1], paused.run_id, False, pipeline, outcomes)

    [winner] = [
        answer for answer, outcome in outcomes.items() if not isinstance(outcome, Exception)
    ]
    loser = outcomes[not winner]
    assert type(loser) is RunClaimed
    assert str(loser) == claimed_message(paused.run_id, "paused")
    assert loser.run_id == paused.run_id
    assert [racer.statuses_read for racer in racers] == [["paused"], ["paused"]]
    assert calls == ["draft", f"publish:{winner}"]  # the step after the pause ran once
    result = outcomes[winner]
    assert isinstance(result, PipelineResult)  # narrows the type; the winner's result
    assert (result.status, result.output) == ("completed", f"approved={winner}")
    stored = await stores[0].get_run(paused.run_id)
    assert stored == await completed_by(stores[0], paused, stored, winner)
    [pause] = await stores[0].pauses_of(paused.run_id)
    assert (pause.path, pause.answer) == (APPROVE, winner)
    assert [entry.key for entry in await stores[0].ledger_of(paused.run_id)] == [
        "main/0:draft#1#1",
        "main/2:publish#1#1",
    ]


async def test_an_answer_for_a_run_another_resume_is_driving_is_refused_and_changes_nothing(
    stores: tuple[RunStore, RunStore],
) -> None:
    calls: list[str] = []
    publishing = Gate()
    pipeline = review_pipeline(calls, publishing)
    paused = await paused_run(stores[0], pipeline)
    outcomes: dict[bool, Outcome] = {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resume_racing, stores[0], paused.run_id, True, pipeline, outcomes)
        await publishing.entered.wait()  # the first resume is publishing
        claimed = await stores[1].get_run(paused.run_id)
        pauses = await stores[1].pauses_of(paused.run_id)
        await resume_racing(stores[1], paused.run_id, False, pipeline, outcomes)
        assert await stores[1].get_run(paused.run_id) == claimed
        assert await stores[1].pauses_of(paused.run_id) == pauses
        publishing.opened.set()

    refused = outcomes[False]
    assert type(refused) is RunClaimed
    assert str(refused) == running_message(paused.run_id)
    assert (claimed.status, claimed.revision) == ("running", paused.revision + 1)
    assert calls == ["draft", "publish:True"]
    stored = await stores[0].get_run(paused.run_id)
    assert stored == await completed_by(stores[0], paused, stored, True)


async def test_a_resume_that_finds_the_pause_answered_since_it_read_the_run_was_claimed(
    stores: tuple[RunStore, RunStore],
) -> None:
    calls: list[str] = []
    pipeline = review_pipeline(calls)
    paused = await paused_run(stores[0], pipeline)
    between_reads = Gate()  # the late resume has read the run, not yet its pauses
    outcomes: dict[bool, Outcome] = {}

    async def after_reading_the_run(name: str) -> None:
        if name == "pauses_of":
            await between_reads.hold_first()

    late = HookedStore(stores[1], after_reading_the_run)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(resume_racing, late, paused.run_id, False, pipeline, outcomes)
        await between_reads.entered.wait()
        await resume_racing(stores[0], paused.run_id, True, pipeline, outcomes)
        between_reads.opened.set()

    refused = outcomes[False]
    assert type(refused) is RunClaimed
    assert str(refused) == claimed_message(paused.run_id, "paused")
    assert late.statuses_read == ["paused", "completed"]  # its read, then the check
    assert calls == ["draft", "publish:True"]
    stored = await stores[0].get_run(paused.run_id)
    assert stored == await completed_by(stores[0], paused, stored, True)


# -- random schedules on the MockClock ---------------------------------------------------------


@attrs.frozen
class Pace:
    """One resume's schedule: whole seconds before it starts, and before each store call
    a delay of 0 to 3 seconds drawn from a generator seeded with ``seed``."""

    start: int
    seed: int

    def hook(self) -> Hook:
        delays = random.Random(self.seed)

        async def paced(name: str) -> None:
            await trio.sleep(delays.randint(0, 3))

        return paced


paces = st.builds(Pace, st.integers(0, 12), st.integers(0, 2**32 - 1))


async def race_on_schedule(stores: tuple[RunStore, RunStore], first: Pace, second: Pace) -> None:
    """Pause a run, race two resumes paced by ``first`` and ``second``, check the outcome."""
    calls: list[str] = []
    pipeline = review_pipeline(calls)
    paused = await paused_run(stores[0], pipeline)
    racers = {
        True: HookedStore(stores[0], first.hook()),
        False: HookedStore(stores[1], second.hook()),
    }
    outcomes: dict[bool, Outcome] = {}

    async def racer(answer: bool, pace: Pace) -> None:
        await trio.sleep(pace.start)
        await resume_racing(racers[answer], paused.run_id, answer, pipeline, outcomes)

    with virtual_time():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(racer, True, first)
            nursery.start_soon(racer, False, second)

    [winner] = [
        answer for answer, outcome in outcomes.items() if not isinstance(outcome, Exception)
    ]
    loser = outcomes[not winner]
    assert racers[winner].statuses_read == ["paused"]
    seen = racers[not winner].statuses_read[0]  # what the loser read first decides its error
    expected = {
        "paused": (RunClaimed, claimed_message(paused.run_id, "paused")),
        "running": (RunClaimed, running_message(paused.run_id)),
        "completed": (RunNotResumable, completed_message(paused.run_id)),
    }[seen]
    assert (type(loser), str(loser)) == expected
    assert calls == ["draft", f"publish:{winner}"]
    stored = await stores[0].get_run(paused.run_id)
    assert stored == await completed_by(stores[0], paused, stored, winner)
    [pause] = await stores[0].pauses_of(paused.run_id)
    assert pause.answer is winner


@contextmanager
def virtual_time() -> Iterator[None]:
    """Let the MockClock jump ahead whenever every task sleeps, for the block.

    Only around the race: opening an SQLite store waits for a worker
    thread, and a jumping clock would take that wait for a deadlock and
    jump to the guard's deadline. The race itself uses no threads (every
    commit is inline: the two stores' writers share this thread, so neither
    ever finds the write lock taken).
    """
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)  # narrows the type: run_on_mock_clock's
    clock.autojump_threshold = 0
    try:
        with trio.fail_after(1e6):  # virtual seconds: only a deadlock comes near it
            yield
    finally:
        clock.autojump_threshold = math.inf


def run_on_mock_clock(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock())


@settings(max_examples=150, deadline=None, database=None)
@given(paces, paces)
def test_every_schedule_of_two_resumes_in_one_process_has_one_winner(
    first: Pace, second: Pace
) -> None:
    async def main() -> None:
        shared = InMemoryStore()
        await race_on_schedule((shared, shared), first, second)

    run_on_mock_clock(main)


@settings(max_examples=60, deadline=None, database=None)
@given(paces, paces)
def test_every_schedule_of_two_resumes_on_one_sqlite_file_has_one_winner(
    first: Pace, second: Pace
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "j.db"
            async with AsyncExitStack() as stack:
                one = await stack.enter_async_context(SQLiteStore.open(path))
                two = await stack.enter_async_context(SQLiteStore.open(path))
                await race_on_schedule((one, two), first, second)

    run_on_mock_clock(main)


# -- a live owner: its lease keeps every resume off its run --------------------------------------


def gated_pipeline(calls: list[str], gate: Gate) -> Pipeline:
    """``first`` (paid), ``gate`` (held by ``gate`` on its first call), ``last`` (paid)."""

    async def first(text: str) -> Completion:
        calls.append("first")
        return Completion(f"{text}>first", Usage(COST, 10, 5))

    async def held(text: str) -> str:
        calls.append("gate")
        await gate.hold_first()
        return f"{text}>gate"

    async def last(text: str) -> Completion:
        calls.append("last")
        return Completion(f"{text}>last", Usage(COST, 10, 5))

    return Pipeline.of(
        Step.from_callable(first, name="first", output_type=str),
        Step.from_callable(held, name="gate"),
        Step.from_callable(last, name="last", output_type=str),
        name="gated",
    )


def lease_message(run: RunRecord) -> str:
    """What a resume of ``run``, running under a live lease, is refused with."""
    assert run.lease_expires_at is not None  # narrows the type: a leased run
    until = run.lease_expires_at.astimezone(datetime.UTC).isoformat(timespec="seconds")
    return (
        f"run {run.run_id!r} is running: its owner holds a lease on it until {until} and "
        "renews it while its process is alive. If that process died, resume the run once "
        "the lease has run out"
    )


async def test_a_resume_of_a_run_whose_owner_holds_its_lease_is_refused_and_changes_nothing(
    stores: tuple[RunStore, RunStore],
) -> None:
    calls: list[str] = []
    gate = Gate()
    pipeline = gated_pipeline(calls, gate)
    results: list[PipelineResult] = []

    async def original() -> None:
        async with open_runtime(store=stores[0]) as runtime:
            results.append(await runtime.run(pipeline, "in"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(original)
        await gate.entered.wait()
        [listed] = await stores[1].list_runs()
        running = await stores[1].get_run(listed.run_id)
        async with open_runtime(store=stores[1]) as other:
            with pytest.raises(RunClaimed) as refused:
                await other.resume(running.run_id, pipeline=pipeline)
        assert await stores[1].get_run(running.run_id) == running
        gate.opened.set()

    assert str(refused.value) == lease_message(running)
    assert (running.status, running.epoch, running.revision) == ("running", 1, 0)
    assert calls == ["first", "gate", "last"]  # the remaining steps ran once, in their owner
    [result] = results
    assert (result.status, result.output) == ("completed", "in>first>gate>last")
    stored = await stores[0].get_run(running.run_id)
    assert (stored.status, stored.revision, stored.epoch, stored.owner) == (
        "completed",
        1,
        1,
        None,
    )
    assert (stored.total_cost_usd, stored.input_tokens, stored.output_tokens) == (
        Decimal("0.50"),
        20,
        10,
    )


# -- a run left running by a crash: taken over without an answer, then answered ---------------


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs."""


async def test_a_run_a_crash_left_running_takes_an_answer_only_after_a_takeover(
    stores: tuple[RunStore, RunStore], mock_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    pipeline = review_pipeline(calls)

    async def killed_at_the_final_write(name: str) -> None:
        if name == "swap_run":
            raise Killed

    crashing = HookedStore(stores[0], killed_at_the_final_write)
    async with open_runtime(store=crashing) as runtime:
        with pytest.raises(Killed):
            await runtime.run(pipeline, "in")
    [listed] = await stores[1].list_runs()
    crashed = await stores[1].get_run(listed.run_id)
    pauses = await stores[1].pauses_of(crashed.run_id)
    assert (crashed.status, crashed.revision, crashed.epoch, [p.answered_at for p in pauses]) == (
        "running",
        0,
        1,
        [None],
    )

    async with open_runtime(store=stores[1]) as runtime:
        with pytest.raises(RunClaimed) as refused:
            await runtime.resume(crashed.run_id, True, pipeline=pipeline)
        assert str(refused.value) == running_message(crashed.run_id)
        with pytest.raises(RunClaimed) as leased:  # the dead owner's lease still runs
            await runtime.resume(crashed.run_id, pipeline=pipeline)
        assert str(leased.value) == lease_message(crashed)
        assert await stores[1].get_run(crashed.run_id) == crashed
        assert await stores[1].pauses_of(crashed.run_id) == pauses

        mock_clock.jump(30)  # the lease (30 s by default) runs out: nobody renewed it
        walked = await runtime.resume(crashed.run_id, pipeline=pipeline)
        assert (walked.status, walked.paused_at) == ("paused", (APPROVE,))
        result = await runtime.resume(crashed.run_id, True, pipeline=pipeline)

    assert (result.status, result.output) == ("completed", "approved=True")
    assert calls == ["draft", "publish:True"]
    stored = await stores[1].get_run(crashed.run_id)
    # Two claims, two outcomes; created at epoch 1, each claim one more.
    assert (stored.status, stored.revision, stored.epoch) == ("completed", 4, 3)
