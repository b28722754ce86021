"""Interrupted runs: what ran stays done, what was running runs again under the same key.

A run is cancelled while one of its steps is in flight (the step signals
it, then waits forever; the test cancels the run at that moment, which is
what a crash does to a process, minus the process). Resuming it must:
not run the steps whose completion records were committed; run the
interrupted step again with the same idempotency key (run id, path,
attempt, call); and end with totals exactly equal to an uninterrupted
run's, because a call that runs again replaces its ledger entry instead of
adding one. Every scenario runs against both stores.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.persistence import LedgerEntry, RunStore
from trioflow.runtime import (
    AddTo,
    AgentStep,
    BaseContext,
    Completion,
    Pipeline,
    RetryPolicy,
    Runtime,
    Step,
    Usage,
    ValidationResult,
    WithPatch,
    current_call,
)

# -- stores and runtime --------------------------------------------------------------------


# The store (in memory and SQLite) and runtime fixtures are in conftest.py.


# -- helpers -------------------------------------------------------------------------------

COST = Decimal("0.25")
CALL_USAGE = Usage(COST, 10, 5)


class Stall:
    """Makes a step wait forever at ``where``, the first time only; sets ``in_flight`` then."""

    def __init__(self, where: str | None) -> None:
        self.where = where
        self.in_flight = trio.Event()

    async def at(self, where: str) -> None:
        if where == self.where and not self.in_flight.is_set():
            self.in_flight.set()
            await trio.sleep_forever()


#: A log of agent calls: (step name, idempotency key).
Calls = list[tuple[str, str]]


def logged(calls: Calls, name: str) -> None:
    calls.append((name, current_call().idempotency_key))


def paid(name: str, calls: Calls, stall: Stall) -> AgentStep:
    """Appends ``>name`` to its input for $0.25; may stall in its call or in its validator."""

    async def run(text: str) -> Completion:
        logged(calls, name)
        await stall.at(f"{name} call")
        return Completion(f"{text}>{name}", CALL_USAGE)

    async def check(output: str, context: Any) -> ValidationResult:
        await stall.at(f"{name} validator")  # the call is paid for by now
        return ValidationResult.ok()

    return Step.from_callable(run, name=name, output_type=str, validators=[check])


def three_steps(calls: Calls, stall: Stall) -> Pipeline:
    return Pipeline.of(
        paid("one", calls, stall),
        paid("two", calls, stall),
        paid("three", calls, stall),
        name="three_steps",
    )


async def run_and_cancel(rt: Runtime, pipeline: Pipeline, stall: Stall, data: Any = "in") -> str:
    """Run ``pipeline`` and cancel the run once ``stall`` holds a step; the run's id."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel() -> None:
                await stall.in_flight.wait()
                scope.cancel()

            nursery.start_soon(cancel)
            result = await rt.run(pipeline, data)
            pytest.fail(f"the run ended ({result.status}) before it could be cancelled")
    assert scope.cancelled_caught
    [run] = [run for run in await rt.store.list_runs() if run.status == "cancelled"]
    return run.run_id


def names(calls: Calls) -> list[str]:
    return [name for name, _ in calls]


def keys_of(calls: Calls, name: str) -> list[str]:
    return [key for called, key in calls if called == name]


def entry(run_id: str, key: str, usage: Usage = CALL_USAGE) -> LedgerEntry:
    path = key.partition("#")[0]
    return LedgerEntry(
        run_id, key, path, str(usage.cost_usd), usage.input_tokens, usage.output_tokens
    )


# -- cancelled while the agent was being called --------------------------------------------


async def test_an_interrupted_run_is_recorded_as_cancelled(rt: Runtime, store: RunStore) -> None:
    stall = Stall("two call")
    run_id = await run_and_cancel(rt, three_steps([], stall), stall)
    record = await store.get_run(run_id)
    assert record.status == "cancelled"
    assert str(record.error).startswith("Cancelled: ")
    assert [step.path for step in await store.steps_of(run_id)] == ["main/0:one"]


async def test_steps_committed_before_the_interruption_do_not_run_again(rt: Runtime) -> None:
    calls: Calls = []
    stall = Stall("two call")
    run_id = await run_and_cancel(rt, three_steps(calls, stall), stall)
    assert names(calls) == ["one", "two"]

    result = await rt.resume(run_id)
    assert result.status == "completed"
    assert result.output == "in>one>two>three"
    assert names(calls) == ["one", "two", "two", "three"]


async def test_the_interrupted_step_runs_again_with_the_same_idempotency_key(
    rt: Runtime,
) -> None:
    calls: Calls = []
    stall = Stall("two call")
    run_id = await run_and_cancel(rt, three_steps(calls, stall), stall)
    await rt.resume(run_id)
    assert keys_of(calls, "two") == [f"{run_id}/main/1:two#1#1", f"{run_id}/main/1:two#1#1"]
    assert keys_of(calls, "one") == [f"{run_id}/main/0:one#1#1"]
    assert keys_of(calls, "three") == [f"{run_id}/main/2:three#1#1"]


async def test_totals_after_resuming_equal_an_uninterrupted_run(
    rt: Runtime, store: RunStore
) -> None:
    uninterrupted = await rt.run(three_steps([], Stall(None)), "in")
    stall = Stall("two call")
    run_id = await run_and_cancel(rt, three_steps([], stall), stall)

    resumed = await rt.resume(run_id)
    assert resumed.usage == uninterrupted.usage == Usage(Decimal("0.75"), 30, 15)
    assert resumed.output == uninterrupted.output
    record = await store.get_run(run_id)
    assert (record.total_cost_usd, record.input_tokens, record.output_tokens) == ("0.75", 30, 15)


async def test_the_ledger_has_one_entry_per_call_key(rt: Runtime, store: RunStore) -> None:
    stall = Stall("two call")
    run_id = await run_and_cancel(rt, three_steps([], stall), stall)
    assert await store.ledger_of(run_id) == [entry(run_id, "main/0:one#1#1")]

    await rt.resume(run_id)
    assert await store.ledger_of(run_id) == [
        entry(run_id, "main/0:one#1#1"),
        entry(run_id, "main/1:two#1#1"),
        entry(run_id, "main/2:three#1#1"),
    ]


# -- cancelled after the call was paid for, before its step completed ----------------------


async def test_a_call_paid_before_the_interruption_is_replaced_not_added(
    rt: Runtime, store: RunStore
) -> None:
    calls: Calls = []
    stall = Stall("two validator")
    run_id = await run_and_cancel(rt, three_steps(calls, stall), stall)
    assert await store.ledger_of(run_id) == [
        entry(run_id, "main/0:one#1#1"),
        entry(run_id, "main/1:two#1#1"),
    ]
    assert [step.path for step in await store.steps_of(run_id)] == ["main/0:one"]

    result = await rt.resume(run_id)
    assert keys_of(calls, "two") == [f"{run_id}/main/1:two#1#1", f"{run_id}/main/1:two#1#1"]
    assert result.usage == Usage(Decimal("0.75"), 30, 15)
    assert await store.ledger_of(run_id) == [
        entry(run_id, "main/0:one#1#1"),
        entry(run_id, "main/1:two#1#1"),
        entry(run_id, "main/2:three#1#1"),
    ]


def retried_step(calls: Calls, stall: Stall) -> Pipeline:
    """``two`` fails validation on attempt 1 and passes on attempt 2; each attempt is paid."""

    async def run(text: str) -> Completion:
        logged(calls, "two")
        return Completion(f"two@{current_call().attempt}", CALL_USAGE)

    async def check(output: str, context: Any) -> ValidationResult:
        if output == "two@1":
            return ValidationResult.fail("try again")
        await stall.at("second attempt validator")
        return ValidationResult.ok()

    two = Step.from_callable(
        run, name="two", output_type=str, validators=[check], retry=RetryPolicy(max_attempts=2)
    )
    return Pipeline.of(paid("one", calls, stall), two, paid("three", calls, stall), name="retry")


async def test_every_attempt_counts_exactly_once_after_an_interruption(
    rt: Runtime, store: RunStore
) -> None:
    uninterrupted = await rt.run(retried_step([], Stall(None)), "in")
    calls: Calls = []
    stall = Stall("second attempt validator")
    run_id = await run_and_cancel(rt, retried_step(calls, stall), stall)

    result = await rt.resume(run_id)
    assert result.output == uninterrupted.output == "two@2>three"
    assert result.usage == uninterrupted.usage == Usage(Decimal("1.00"), 40, 20)
    assert result.step("two").attempts == 2
    assert keys_of(calls, "two") == [
        f"{run_id}/main/1:two#1#1",
        f"{run_id}/main/1:two#2#1",
        f"{run_id}/main/1:two#1#1",
        f"{run_id}/main/1:two#2#1",
    ]
    assert await store.ledger_of(run_id) == [
        entry(run_id, "main/0:one#1#1"),
        entry(run_id, "main/1:two#1#1"),
        entry(run_id, "main/1:two#2#1"),
        entry(run_id, "main/2:three#1#1"),
    ]


# -- cancelled inside a loop iteration -----------------------------------------------------


class Counter(BaseContext):
    counter: int = 0


def counting_loop(seen: list[int], stall: Stall) -> Pipeline:
    """Each iteration adds 1 to the counter for $0.25; the loop stops at 3."""

    async def bump(data: Any, *, context: Counter) -> Completion:
        seen.append(context.counter)
        await stall.at(f"bump {context.counter}")
        return Completion(WithPatch(context.counter + 1, [AddTo("counter", 1)]), CALL_USAGE)

    loop = Step.loop_until(
        "loop",
        Step.from_callable(bump, name="bump"),
        lambda output, context: context.counter == 3,
        max_loops=5,
    )
    return Pipeline.of(loop, name="counting", context_type=Counter)


async def test_a_loop_interrupted_mid_iteration_resumes_at_that_iteration(
    rt: Runtime, store: RunStore
) -> None:
    seen: list[int] = []
    stall = Stall("bump 1")  # in iteration 2, which sees the counter at 1
    run_id = await run_and_cancel(rt, counting_loop(seen, stall), stall, data=None)

    result = await rt.resume(run_id)
    assert seen == [0, 1, 1, 2]
    assert result.context.counter == 3
    assert result.step("loop").metadata == {"exit_reason": "condition", "iterations": 3}
    assert result.usage == Usage(Decimal("0.75"), 30, 15)
    assert [e.key for e in await store.ledger_of(run_id)] == [
        f"main/0:loop/loop[{i}]#1#1" for i in (1, 2, 3)
    ]
