"""One owner at a time: the lease, its heartbeat, and the epoch that fences every write.

Everything here runs on trio's MockClock, so leases run out in virtual
time: a heartbeat keeps a long step's lease alive; a lease nobody renews
runs out and the run can be taken over; an owner that stalled past its
lease (its heartbeat held up) is taken over and then writes nothing: its
step record, ledger entry, trace and outcome are refused, and it raises
:class:`RunTakenOver`. Racing resumes of a run a crash or a cancellation
left behind, under random schedules: exactly one runs the steps left.
A cancellation at every await of an owner's store calls (claim,
heartbeat, fenced writes, outcome): the run is still finished by exactly
one later owner, with exact totals, and no write of an older epoch is
ever accepted after a newer claim.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

import apsw
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
    StoreError,
    TrustedTypes,
)
from trioflow.runtime import (
    AgentStep,
    Completion,
    ConfigurationError,
    Pipeline,
    PipelineResult,
    RunClaimed,
    RunNotResumable,
    RunTakenOver,
    Step,
    Usage,
    open_runtime,
)

from tests.durability.test_claims import (
    Gate,
    HookedStore,
    Killed,
    Pace,
    claimed_message,
    completed_message,
    lease_message,
    run_on_mock_clock,
    virtual_time,
)

LEASE_S = 30.0
STEP_COST = Decimal("0.25")
STEPS = ("s0", "s1", "s2", "s3")


async def only_run(store: RunStore) -> RunRecord:
    """The one run ``store`` holds, read whole (a listing gives only its summary)."""
    [listed] = await store.list_runs()
    return await store.get_run(listed.run_id)


@attrs.define
class Calls:
    """Which owner ran which step, in order: ``(owner label, step name)``."""

    made: list[tuple[str, str]] = attrs.field(factory=list)

    def names(self) -> list[str]:
        return [name for _, name in self.made]


def four_steps(calls: Calls, hold: Callable[[str, str], Awaitable[None]]) -> Pipeline:
    """``s0`` .. ``s3``, each paid :data:`STEP_COST`; ``hold(label, name)`` runs inside each.

    The owner's label comes in as the run's ``resources``, and is in each
    step's output, so a record shows which owner wrote it.
    """

    def paid(name: str) -> AgentStep:
        async def body(text: str, *, resources: str) -> Completion:
            calls.made.append((resources, name))
            await hold(resources, name)
            return Completion(f"{text}>{name}@{resources}", Usage(STEP_COST, 10, 5))

        return Step.from_callable(body, name=name, output_type=str)

    return Pipeline.of(*(paid(name) for name in STEPS), name="four")


async def no_hold(label: str, name: str) -> None:
    pass


@pytest.mark.parametrize("lease_s", [0.0, -1.0, float("nan"), float("inf")])
async def test_a_lease_that_is_not_a_positive_number_of_seconds_is_refused(lease_s: float) -> None:
    with pytest.raises(ConfigurationError) as refused:
        async with open_runtime(store=InMemoryStore(), lease_s=lease_s):
            pass

    assert str(refused.value) == f"lease_s must be a positive number of seconds, got {lease_s}"


# -- a heartbeat keeps a long step's lease alive -----------------------------------------------


async def test_a_heartbeat_keeps_the_lease_of_a_long_step_alive(
    store: RunStore, autojump_clock: trio.testing.MockClock
) -> None:
    calls = Calls()

    async def long_s1(label: str, name: str) -> None:
        if name == "s1":
            await trio.sleep(10 * LEASE_S)  # ten leases long

    pipeline = four_steps(calls, long_s1)
    refusals: list[tuple[RunRecord, str]] = []
    results: list[PipelineResult] = []

    async def owner() -> None:
        async with open_runtime(store=store, lease_s=LEASE_S) as runtime:
            results.append(await runtime.run(pipeline, "in", resources="owner"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.sleep(1)
        started = await only_run(store)
        async with open_runtime(store=store, lease_s=LEASE_S) as other:
            for _ in range(3):  # long after the first lease would have run out
                await trio.sleep(3 * LEASE_S)
                read = await store.get_run(started.run_id)
                with pytest.raises(RunClaimed) as refused:
                    await other.resume(started.run_id, pipeline=pipeline, resources="other")
                refusals.append((read, str(refused.value)))

    assert [message for _, message in refusals] == [lease_message(read) for read, _ in refusals]
    assert started.lease_expires_at is not None  # narrows the type: the first lease
    # Renewed every 10 s, each time to 30 s from then: at 91, 181 and 271 s the last
    # renewal was at 90, 180 and 270 s.
    assert [read.lease_expires_at for read, _ in refusals] == [
        started.lease_expires_at + datetime.timedelta(seconds=seconds) for seconds in (90, 180, 270)
    ]
    assert [(read.epoch, read.revision) for read, _ in refusals] == [(1, 0)] * 3
    assert calls.made == [("owner", name) for name in STEPS]
    [result] = results
    assert (result.status, result.output) == ("completed", "in>s0@owner>s1@owner>s2@owner>s3@owner")
    stored = await store.get_run(started.run_id)
    assert (stored.status, stored.epoch, stored.revision, stored.owner) == ("completed", 1, 1, None)


class RenewalFails(InMemoryStore):
    """A store whose lease renewals fail, as a full disk would."""

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        raise StoreError("disk full")


async def test_a_lease_that_cannot_be_renewed_stops_the_drive_with_the_store_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = Calls()

    async def long_s1(label: str, name: str) -> None:
        if name == "s1":
            await trio.sleep(LEASE_S)

    store = RenewalFails()
    async with open_runtime(store=store, lease_s=LEASE_S) as runtime:
        with pytest.raises(StoreError, match=r"^disk full$"):
            await runtime.run(four_steps(calls, long_s1), "in", resources="owner")

    run = await only_run(store)
    assert calls.names() == ["s0", "s1"]  # stopped in s1, at the first renewal
    assert (run.status, run.error, run.owner) == ("interrupted", "StoreError: disk full", None)
    assert (run.total_cost_usd, run.epoch, run.revision) == ("0.25", 1, 1)


# -- a lease nobody renews runs out; an owner that stalled past it writes nothing ----------------


def stalled_heartbeat(stall: trio.Event) -> Callable[[str], Awaitable[None]]:
    """A store hook holding up every lease renewal until ``stall`` is set: a frozen owner."""

    async def hook(name: str) -> None:
        if name == "renew_lease":
            await stall.wait()

    return hook


async def test_an_owner_stalled_past_its_lease_is_taken_over_and_then_writes_nothing(
    stores: tuple[RunStore, RunStore],
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls()
    gate = Gate()  # holds the stalled owner in s2

    async def held_in_s2(label: str, name: str) -> None:
        if (label, name) == ("stalled", "s2"):
            await gate.hold_first()

    pipeline = four_steps(calls, held_in_s2)
    thawed = trio.Event()
    stalled_store = HookedStore(stores[0], stalled_heartbeat(thawed))
    ended: list[BaseException] = []

    async def stalled_owner() -> None:
        async with open_runtime(store=stalled_store, lease_s=LEASE_S) as runtime:
            try:
                await runtime.run(pipeline, "in", resources="stalled")
            except RunTakenOver as taken:
                ended.append(taken)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stalled_owner)
        await gate.entered.wait()
        run = await only_run(stores[1])
        await trio.sleep(LEASE_S)  # its heartbeat is stuck: the lease runs out
        async with open_runtime(store=stores[1], lease_s=LEASE_S) as other:
            result = await other.resume(run.run_id, pipeline=pipeline, resources="new")
        taken_over = await stores[1].get_run(run.run_id)
        gate.opened.set()  # the stalled owner finishes s2 and tries to record it
        await trio.sleep(1)
        thawed.set()  # and its heartbeat gets through at last

    [taken] = ended
    assert type(taken) is RunTakenOver
    assert str(taken) == (
        f"run {run.run_id!r} was claimed by another resume while this process was driving it "
        "(its lease had run out): this drive stopped, and nothing it did since was stored, "
        "the run is that resume's"
    )
    assert (taken.run_id, taken.result) == (run.run_id, None)
    # s2 was in flight when the run was taken over, so it ran in both; s3 only in the new owner.
    assert calls.made == [
        ("stalled", "s0"),
        ("stalled", "s1"),
        ("stalled", "s2"),
        ("new", "s2"),
        ("new", "s3"),
    ]
    assert (result.status, result.output) == ("completed", "in>s0@stalled>s1@stalled>s2@new>s3@new")
    # Nothing the stalled owner did after the takeover is stored: the run, its steps,
    # its ledger and its trace are the new owner's.
    assert await stores[0].get_run(run.run_id) == taken_over
    assert (taken_over.status, taken_over.epoch, taken_over.revision) == ("completed", 2, 2)
    assert (taken_over.total_cost_usd, taken_over.input_tokens) == ("1.00", 40)
    steps = {step.path: step.output for step in await stores[0].steps_of(run.run_id)}
    assert [steps[f"main/{n}:{name}"] for n, name in enumerate(STEPS)] == [
        "in>s0@stalled",
        "in>s0@stalled>s1@stalled",
        "in>s0@stalled>s1@stalled>s2@new",
        "in>s0@stalled>s1@stalled>s2@new>s3@new",
    ]
    ledger = await stores[0].ledger_of(run.run_id)
    assert [(entry.key, entry.cost_usd) for entry in ledger] == [
        (f"main/{n}:{name}#1#1", "0.25") for n, name in enumerate(STEPS)
    ]
    trace = await stores[0].trace_of(run.run_id)
    assert [event.label for event in trace if event.label in ("started", "resumed")] == ["resumed"]
    # Both owners say so in the log: the new one took the run over, the stalled one stopped.
    assert [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "trioflow.lease"
    ] == [
        ("WARNING", f"run {run.run_id} taken over at epoch 2: its owner's lease had run out"),
        (
            "WARNING",
            f"run {run.run_id} was taken over by another owner: this drive (epoch 1) stopped",
        ),
    ]


# -- a run stopped cleanly is released: the next resume need not wait -----------------------------


@pytest.mark.parametrize(
    ("stop", "status"), [(trio.Cancelled, "cancelled"), (KeyboardInterrupt, "interrupted")]
)
async def test_a_run_stopped_cleanly_is_released_and_resumed_at_once(
    store: RunStore, mock_clock: trio.testing.MockClock, stop: type[BaseException], status: str
) -> None:
    calls = Calls()

    async def stopped_in_s2(label: str, name: str) -> None:
        if (label, name) == ("first", "s2"):
            if stop is trio.Cancelled:
                scope.cancel()
                await trio.sleep_forever()
            raise KeyboardInterrupt  # Ctrl-C, as trio delivers it

    pipeline = four_steps(calls, stopped_in_s2)
    async with open_runtime(store=store, lease_s=LEASE_S) as runtime:
        with (
            trio.CancelScope() as scope,
            pytest.raises(KeyboardInterrupt) if (stop is KeyboardInterrupt) else nullcontext(),
        ):
            await runtime.run(pipeline, "in", resources="first")
        stopped = await only_run(store)
        # No virtual time passes: the lease it had would still run for 30 s.
        result = await runtime.resume(stopped.run_id, pipeline=pipeline, resources="next")

    assert (stopped.status, stopped.owner, stopped.lease_expires_at) == (status, None, None)
    assert (stopped.epoch, stopped.revision) == (1, 1)
    assert (result.status, result.output) == ("completed", "in>s0@first>s1@first>s2@next>s3@next")
    assert calls.names() == ["s0", "s1", "s2", "s2", "s3"]


# -- racing resumes of a run left behind: exactly one runs what is left ---------------------------


async def left_behind(store: RunStore, how: str, calls: Calls) -> RunRecord:
    """A run of :func:`four_steps` stopped in ``s2``: killed (``crashed``) or cancelled.

    A crashed run stays ``running`` under its dead owner's lease, which is
    then let run out; a cancelled one is released at once.
    """
    in_s2 = Gate()
    dead = False

    async def hold(label: str, name: str) -> None:
        nonlocal dead
        if name == "s2":
            dead = how == "crashed"
            await in_s2.hold_first()

    async def dies(name: str) -> None:
        if dead:
            raise Killed  # every store call of a killed process: nothing more is written

    async with open_runtime(store=HookedStore(store, dies), lease_s=LEASE_S) as runtime:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def stop() -> None:
                    await in_s2.entered.wait()
                    if how == "crashed":
                        in_s2.opened.set()  # s2 ends; recording it finds the process dead
                    else:
                        scope.cancel()

                nursery.start_soon(stop)
                with pytest.raises(Killed) if how == "crashed" else nullcontext():
                    await runtime.run(four_steps(calls, hold), "in", resources="first")
    run = await only_run(store)
    assert (run.status, run.epoch) == ({"crashed": "running", "cancelled": "cancelled"}[how], 1)
    await trio.sleep(LEASE_S)  # a dead owner's lease runs out
    return run


class ReadingStore(HookedStore):
    """A :class:`HookedStore` that also keeps every run record ``get_run`` returned."""

    def __init__(self, inner: RunStore, hook: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(inner, hook)
        self.records_read: list[RunRecord] = []

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        record = await super().get_run(run_id, types=types)
        self.records_read.append(record)
        return record


def refusal_for(left: RunRecord, first_read: RunRecord) -> tuple[type[Exception], str]:
    """What a losing resume raises, given the first run record it read."""
    if first_read.status == "completed":
        return RunNotResumable, completed_message(left.run_id)
    if first_read.epoch > left.epoch:  # the winner's claim: a live lease
        return RunClaimed, lease_message(first_read)
    return RunClaimed, claimed_message(left.run_id, left.status)  # read it, lost the claim


async def race_left_behind(stores: Sequence[RunStore], how: str, paces: Sequence[Pace]) -> None:
    """Leave a run behind, race one resume per pace (store ``i % len(stores)``), check."""
    calls = Calls()
    with virtual_time():
        left = await left_behind(stores[0], how, calls)
    pipeline = four_steps(calls, no_hold)
    racers = [ReadingStore(stores[i % len(stores)], pace.hook()) for i, pace in enumerate(paces)]
    outcomes: dict[int, PipelineResult | RunNotResumable] = {}

    async def racer(number: int) -> None:
        await trio.sleep(paces[number].start)
        async with open_runtime(store=racers[number], lease_s=LEASE_S) as runtime:
            try:
                outcomes[number] = await runtime.resume(
                    left.run_id, pipeline=pipeline, resources=f"r{number}"
                )
            except RunNotResumable as refused:  # RunClaimed included
                outcomes[number] = refused

    with virtual_time():
        async with trio.open_nursery() as nursery:
            for number in range(len(paces)):
                nursery.start_soon(racer, number)

    [winner] = [n for n, outcome in outcomes.items() if isinstance(outcome, PipelineResult)]
    for number, outcome in outcomes.items():
        if number != winner:
            expected = refusal_for(left, racers[number].records_read[0])
            assert (type(outcome), str(outcome)) == expected
    ran = calls.names()
    assert ran == ["s0", "s1", "s2", "s2", "s3"]  # s2 was in flight when the run stopped
    assert calls.made[3:] == [(f"r{winner}", "s2"), (f"r{winner}", "s3")]
    stored = await stores[0].get_run(left.run_id)
    assert (stored.status, stored.epoch, stored.revision) == (
        "completed",
        left.epoch + 1,
        left.revision + 2,
    )
    assert (stored.total_cost_usd, stored.input_tokens, stored.output_tokens) == ("1.00", 40, 20)
    ledger = await stores[0].ledger_of(left.run_id)
    assert [entry.key for entry in ledger] == [
        f"main/{n}:{name}#1#1" for n, name in enumerate(STEPS)
    ]


three_paces = st.lists(
    st.builds(Pace, st.integers(0, 12), st.integers(0, 2**32 - 1)), min_size=3, max_size=3
)
left_kinds = st.sampled_from(["crashed", "cancelled"])


@settings(max_examples=120, deadline=None, database=None)
@given(left_kinds, three_paces)
def test_every_schedule_of_three_resumes_of_a_run_left_behind_has_one_winner(
    how: str, paces: list[Pace]
) -> None:
    async def main() -> None:
        await race_left_behind([InMemoryStore()], how, paces)

    run_on_mock_clock(main)


@settings(max_examples=40, deadline=None, database=None)
@given(left_kinds, three_paces)
def test_every_schedule_of_three_resumes_on_one_sqlite_file_has_one_winner(
    how: str, paces: list[Pace]
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "j.db"
            async with AsyncExitStack() as stack:
                opened = [await stack.enter_async_context(SQLiteStore.open(path)) for _ in range(2)]
                await race_left_behind(opened, how, paces)

    run_on_mock_clock(main)


# -- a cancellation at every await of an owner's store calls --------------------------------------


@attrs.frozen
class Accepted:
    """A write a store accepted: its kind, and the epoch it was made under (or claimed)."""

    kind: str
    epoch: int


class AuditedStore(HookedStore):
    """Passes every call on to ``inner``, noting each write it accepted, in order.

    The order noted is the order of the commits because the owners of
    :func:`cancel_an_owner_at` take turns: a later one starts once the
    earlier one's call has returned.
    """

    def __init__(self, inner: RunStore) -> None:
        super().__init__(inner)
        self.accepted: list[Accepted] = []

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        swapped = await super().swap_run(expected, replacement)
        if swapped is not None:
            self.accepted.append(Accepted(f"swap:{swapped.status}", swapped.epoch))
        return swapped

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        renewed = await super().renew_lease(run, until)
        if renewed is not None:
            self.accepted.append(Accepted("renew", renewed.epoch))
        return renewed

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        await super().record_step(step, epoch=epoch)
        self.accepted.append(Accepted(f"step:{step.path}", _fenced(epoch)))

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        await super().record_usage(entry, epoch=epoch)
        self.accepted.append(Accepted(f"usage:{entry.key}", _fenced(epoch)))

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        await super().record_pause(pause, epoch=epoch)
        self.accepted.append(Accepted(f"pause:{pause.path}", _fenced(epoch)))

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await super().save_trace(run_id, events, epoch=epoch)
        self.accepted.append(Accepted("trace", _fenced(epoch)))


def _fenced(epoch: int | None) -> int:
    assert epoch is not None, "the runtime made a write without its epoch"
    return epoch


class CancelAt:
    """A hook that checkpoints, and at its ``at``-th call cancels ``scope``."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.scope = trio.CancelScope()

    async def __call__(self, name: str) -> None:
        if self.seen == self.at:
            self.scope.cancel()
        self.seen += 1
        await trio.lowlevel.checkpoint()


class CheckpointedStore:
    """Passes every call on to ``inner``, awaiting ``hook`` before and after it.

    The hook after a call is the point where a write has committed and its
    caller has not yet heard of it.
    """

    def __init__(self, inner: RunStore, hook: Callable[[str], Awaitable[None]]) -> None:
        self._inner = inner
        self._hook = hook

    async def _around(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        await self._hook(name)
        returned = await call()
        await self._hook(f"{name} returned")
        return returned

    async def create_run(self, run: RunRecord) -> None:
        await self._around("create_run", lambda: self._inner.create_run(run))

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        swapped: RunRecord | None = await self._around(
            "swap_run", lambda: self._inner.swap_run(expected, replacement)
        )
        return swapped

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        renewed: RunRecord | None = await self._around(
            "renew_lease", lambda: self._inner.renew_lease(run, until)
        )
        return renewed

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        await self._around("record_step", lambda: self._inner.record_step(step, epoch=epoch))

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        await self._around("record_usage", lambda: self._inner.record_usage(entry, epoch=epoch))

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        await self._around("record_pause", lambda: self._inner.record_pause(pause, epoch=epoch))

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await self._around(
            "save_trace", lambda: self._inner.save_trace(run_id, events, epoch=epoch)
        )

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        record: RunRecord = await self._around(
            "get_run", lambda: self._inner.get_run(run_id, types=types)
        )
        return record

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        runs: list[RunSummary] = await self._around(
            "list_runs", lambda: self._inner.list_runs(limit=limit, offset=offset)
        )
        return runs

    async def count_runs(self) -> int:
        count: int = await self._around("count_runs", self._inner.count_runs)
        return count

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        deleted: bool = await self._around(
            "delete_run", lambda: self._inner.delete_run(run_id, revision=revision)
        )
        return deleted

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        steps: list[StepRecord] = await self._around(
            "steps_of", lambda: self._inner.steps_of(run_id, types=types)
        )
        return steps

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        pauses: list[PauseRecord] = await self._around(
            "pauses_of", lambda: self._inner.pauses_of(run_id, types=types)
        )
        return pauses

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        ledger: list[LedgerEntry] = await self._around(
            "ledger_of", lambda: self._inner.ledger_of(run_id)
        )
        return ledger

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        events: list[TraceEvent] = await self._around(
            "trace_of", lambda: self._inner.trace_of(run_id)
        )
        return events


async def finish_after(store: RunStore, run_id: str, pipeline: Pipeline) -> None:
    """Resume ``run_id`` until it has completed, waiting out a lease where there is one."""
    async with open_runtime(store=store, lease_s=LEASE_S) as runtime:
        for _ in range(3):
            status = (await store.get_run(run_id)).status
            if status == "completed":
                return
            try:
                await runtime.resume(run_id, pipeline=pipeline, resources="later")
            except RunClaimed:  # the cancelled owner's lease: it may be alive, so wait it out
                await trio.sleep(LEASE_S)
    raise AssertionError("the run could not be resumed once its lease had run out")


async def cancel_an_owner_at(at: int, audited: AuditedStore) -> tuple[RunRecord, Calls]:
    """A resume (claim, heartbeat, fenced writes, outcome) cancelled at checkpoint ``at``.

    The run was cancelled once in ``s1`` before; the resume re-runs ``s1``
    (long enough for three heartbeats), ``s2`` and ``s3``. Then a later
    owner finishes the run. Returns the stored run and who ran what.
    """
    calls = Calls()

    async def long_s1(label: str, name: str) -> None:
        if name == "s1":
            await trio.sleep(LEASE_S)

    pipeline = four_steps(calls, long_s1)
    async with open_runtime(store=audited, lease_s=LEASE_S) as runtime:
        with trio.CancelScope() as first:
            async with trio.open_nursery() as nursery:

                async def cancel_in_s1() -> None:
                    await trio.sleep(1)
                    first.cancel()

                nursery.start_soon(cancel_in_s1)
                await runtime.run(pipeline, "in", resources="first")
        run = await only_run(audited)
        cancel = CancelAt(at)
        owner = CheckpointedStore(audited, cancel)
        async with open_runtime(store=owner, lease_s=LEASE_S) as cancelled:
            with cancel.scope:
                await cancelled.resume(run.run_id, pipeline=pipeline, resources="owner")
    await finish_after(audited, run.run_id, pipeline)
    return await audited.get_run(run.run_id), calls


async def check_an_owner_cancelled_at(at: int, store: RunStore) -> None:
    """Cancel an owner at checkpoint ``at`` of its store calls; check the run and its writes."""
    audited = AuditedStore(store)
    with virtual_time():
        stored, calls = await cancel_an_owner_at(at, audited)

    # No write of an older epoch is accepted once a newer one is in the store.
    epochs = [accepted.epoch for accepted in audited.accepted]
    assert epochs == sorted(epochs), audited.accepted
    assert (stored.status, stored.owner, stored.lease_expires_at) == ("completed", None, None)
    assert (stored.total_cost_usd, stored.input_tokens, stored.output_tokens) == (
        "1.00",
        40,
        20,
    )
    ledger = await audited.ledger_of(stored.run_id)
    assert [entry.key for entry in ledger] == [
        f"main/{n}:{name}#1#1" for n, name in enumerate(STEPS)
    ]
    # Each step's record is the last owner's to run it.
    steps = {step.path: step.output for step in await audited.steps_of(stored.run_id)}
    last_runner = {name: label for label, name in calls.made}
    assert [steps[f"main/{n}:{name}"].rpartition("@")[2] for n, name in enumerate(STEPS)] == [
        last_runner[name] for name in STEPS
    ]
    assert calls.names()[:2] == ["s0", "s1"]  # the first drive, cancelled in s1


#: Checkpoints 0 to 40: an owner that is never cancelled passes 34.
checkpoints = st.integers(0, 40)


@settings(max_examples=150, deadline=None, database=None)
@given(checkpoints)
def test_a_cancellation_at_any_await_of_an_owner_never_lets_two_owners_write(at: int) -> None:
    run_on_mock_clock(lambda: check_an_owner_cancelled_at(at, InMemoryStore()))


@settings(max_examples=60, deadline=None, database=None)
@given(checkpoints)
def test_a_cancellation_at_any_await_of_an_owner_on_sqlite_never_lets_two_owners_write(
    at: int,
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            async with SQLiteStore.open(Path(folder) / "j.db") as store:
                await check_an_owner_cancelled_at(at, store)

    run_on_mock_clock(main)


# -- real processes: resumes racing for a run whose process was SIGKILLed -------------------------

DRIVER = Path(__file__).with_name("lease_driver.py")
RESUMERS = 4
#: The steps of ``lease_driver.py``'s pipeline; it is killed in ``s3``.
TEN_STEPS = tuple(f"s{n}" for n in range(10))


def driver(db: Path, log: Path, *arguments: str) -> list[str]:
    return [sys.executable, str(DRIVER), str(db), str(log), *arguments]


def lease_of_the_killed_run(db: Path) -> tuple[str, datetime.datetime]:
    """The run's id and when its lease runs out, read from the journal file."""
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        [(run_id, status, until)] = connection.execute(
            "SELECT run_id, status, lease_expires_at FROM runs"
        ).fetchall()
    finally:
        connection.close()
    assert status == "running"
    return run_id, datetime.datetime.fromisoformat(until)


def test_resumes_in_several_processes_after_a_kill_run_each_step_left_exactly_once(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "journal.db", tmp_path / "steps.log"
    killed = subprocess.run(driver(db, log, "start"), capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_id, until = lease_of_the_killed_run(db)
    # Before the lease runs out every resume is refused; then they all race at once.
    time.sleep(max((until - datetime.datetime.now(datetime.UTC)).total_seconds(), 0) + 0.1)

    racing = [
        subprocess.Popen(
            driver(db, log, "resume", run_id),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RESUMERS)
    ]
    finished = [(process.pid, *process.communicate(timeout=120)) for process in racing]
    codes = [process.returncode for process in racing]

    assert sorted(codes) == [0] + [2] * (RESUMERS - 1), finished
    [(winner, output, _)] = [
        (pid, out, err) for (pid, out, err), code in zip(finished, codes, strict=True) if code == 0
    ]
    everything = "in" + "".join(f">{name}" for name in TEN_STEPS)
    assert json.loads(output) == ["completed", everything, "0.55"]
    for (_, _, refused), code in zip(finished, codes, strict=True):
        if code != 0:
            assert refused_for_a_reason(refused, run_id), refused
    ran = [line.split(" ") for line in log.read_text().splitlines()]
    [first] = {int(pid) for pid, name in ran[:4]}
    # s0..s3 in the killed process (s3 was in flight); s3..s9 once each, all in the winner.
    assert [(int(pid), name) for pid, name in ran] == [
        *((first, name) for name in TEN_STEPS[:4]),
        *((winner, name) for name in TEN_STEPS[3:]),
    ]
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        [run] = connection.execute("SELECT status, epoch, owner, revision FROM runs").fetchall()
        ledger = connection.execute("SELECT key FROM ledger ORDER BY seq").fetchall()
    finally:
        connection.close()
    assert run == ("completed", 2, None, 2)  # created, claimed once; created, claim, outcome
    assert [key for (key,) in ledger] == [
        f"main/{n}:{name}#1#1" for n, name in enumerate(TEN_STEPS)
    ]


def refused_for_a_reason(stderr: str, run_id: str) -> bool:
    """Whether a losing resume said one of the three things a loser may say."""
    lost_the_claim = f"RunClaimed: {claimed_message(run_id, 'running')}\n"
    finished = f"RunNotResumable: {completed_message(run_id)}\n"
    leased = re.fullmatch(
        rf"RunClaimed: run '{run_id}' is running: its owner holds a lease on it until \S+ "
        r"and renews it while its process is alive\. If that process died, resume the run "
        r"once the lease has run out\n",
        stderr,
    )
    return stderr in (lost_the_claim, finished) or leased is not None
