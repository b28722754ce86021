"""Every total above a leaf is the governor's ledger under its path, as the run's total is.

A call that an earlier drive paid for, but whose step was never recorded
(the drive crashed between its attempts), stays in the ledger: the run's
total counts it, and so does every composite step above it, so the
figures agree. The leaf itself reports the calls of the drive that
completed it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
from trioflow.persistence import LedgerEntry, RunStore
from trioflow.runtime import AgentStep, Completion, Pipeline, Runtime, Step, Usage

COST = Usage(Decimal("0.25"), 10, 5)
#: What an earlier drive's second attempt at a step spent before that drive crashed.
LEFTOVER = Usage(Decimal("0.05"), 4, 1)


class Stall:
    """Makes the ``two`` call wait forever the first time; sets ``in_flight`` then."""

    def __init__(self) -> None:
        self.in_flight = trio.Event()

    async def at_two(self) -> None:
        if not self.in_flight.is_set():
            self.in_flight.set()
            await trio.sleep_forever()


def paid(name: str, stall: Stall | None = None) -> AgentStep:
    async def run(text: str) -> Completion[str]:
        if stall is not None:
            await stall.at_two()
        return Completion(f"{text}>{name}", COST)

    return Step.from_callable(run, name=name, output_type=str)


def once(output: Any, context: Any) -> bool:
    return True


async def interrupted_at_two(rt: Runtime, pipeline: Pipeline, stall: Stall) -> str:
    """Run ``pipeline`` until the ``two`` call is in flight, then cancel it; the run's id."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel() -> None:
                await stall.in_flight.wait()
                scope.cancel()

            nursery.start_soon(cancel)
            await rt.run(pipeline, "in")
    [run] = await rt.store.list_runs()
    assert run.status == "cancelled"
    return run.run_id


async def leave_an_earlier_attempt(store: RunStore, run_id: str, path: str) -> None:
    """The ledger entry of attempt 2 at ``path``, by a drive that crashed before recording it."""
    run = await store.get_run(run_id)
    entry = LedgerEntry(run_id, f"{path}#2#1", path, *_fields(LEFTOVER))
    await store.record_usage(entry, epoch=run.epoch)


def _fields(usage: Usage) -> tuple[Decimal, int, int]:
    return usage.cost_usd, usage.input_tokens, usage.output_tokens


async def costs_by_path(store: RunStore, run_id: str) -> dict[str, Decimal]:
    return {step.path: step.cost_usd for step in await store.steps_of(run_id)}


async def test_a_pipeline_total_is_the_ledger_under_its_path(rt: Runtime, store: RunStore) -> None:
    stall = Stall()
    run_id = await interrupted_at_two(rt, Pipeline.of(paid("one"), paid("two", stall)), stall)
    await leave_an_earlier_attempt(store, run_id, "main/1:two")

    result = await rt.resume(run_id)

    assert (result.status, result.output) == ("completed", "in>one>two")
    assert result.usage == Usage(Decimal("0.55"), 24, 11)
    record = await store.get_run(run_id)
    assert (record.total_cost_usd, record.input_tokens, record.output_tokens) == (
        Decimal("0.55"),
        24,
        11,
    )
    assert await costs_by_path(store, run_id) == {
        "main/0:one": Decimal("0.25"),
        "main/1:two": Decimal("0.25"),
        "main": Decimal("0.55"),
    }


async def test_a_loop_total_is_the_ledger_under_its_path(rt: Runtime, store: RunStore) -> None:
    stall = Stall()
    loop = Step.loop_until("again", paid("two", stall), once, max_loops=1)
    run_id = await interrupted_at_two(rt, Pipeline.of(paid("one"), loop), stall)
    await leave_an_earlier_attempt(store, run_id, "main/1:again/loop[1]")

    result = await rt.resume(run_id)

    assert (result.status, result.output) == ("completed", "in>one>two")
    assert result.usage == Usage(Decimal("0.55"), 24, 11)
    assert await costs_by_path(store, run_id) == {
        "main/0:one": Decimal("0.25"),
        "main/1:again/loop[1]": Decimal("0.25"),
        "main/1:again": Decimal("0.30"),
        "main": Decimal("0.55"),
    }
    assert result.step("again").usage == Usage(Decimal("0.30"), 14, 6)
