"""Two workers racing for the same queued runs, over many schedules: one owner per run.

Two :class:`Worker`\\ s, each on a store of its own (two processes, as far
as the database can tell), start at once on the same queue; the steps
sleep for seeded random times, so the workers' picks, claims and writes
interleave differently in every example. Whatever the schedule, each run
is claimed exactly once (epoch 1, revision 2: the claim and the outcome),
every step of it runs once, all in the worker that claimed it, and every
run completes.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_server import PostgresServer
from trioflow.persistence import PostgresStore, RunRecord
from trioflow.runtime import Pipeline, open_runtime, step
from trioflow.runtime._queue import Worker

RUNS = 8

#: Which worker a task works for.
WORKER: contextvars.ContextVar[str] = contextvars.ContextVar("worker")


def racing_pipeline(seed: int, ran: list[tuple[str, str, str]]) -> Pipeline:
    """Three steps that note ``(worker, run, step)`` and sleep a seeded random while."""
    delays = random.Random(seed)

    def noted(name: str) -> object:
        async def work(text: str) -> str:
            await trio.sleep(delays.random() / 50)
            ran.append((WORKER.get(), text, name))
            return text

        work.__name__ = name
        return step(work)

    return Pipeline.of(*(noted(name) for name in ("a", "b", "c")), name="racing")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_two_workers_racing_for_runs_give_each_run_one_owner(
    postgres_server: PostgresServer, seed: int
) -> None:
    with postgres_server.database() as url:
        trio.run(race, url, seed)


async def race(url: str, seed: int) -> None:
    ran: list[tuple[str, str, str]] = []
    pipeline = racing_pipeline(seed, ran)
    drove: dict[str, list[str]] = {"first": [], "second": []}
    all_said = trio.Event()

    def said(name: str) -> Callable[[str], None]:
        def say(line: str) -> None:
            drove[name].append(line)
            if sum(map(len, drove.values())) == RUNS:  # one line per run driven
                all_said.set()

        return say

    async with open_runtime(store=url) as client:
        run_ids = [await client.submit(pipeline, f"run {n}") for n in range(RUNS)]

    async def work(name: str) -> None:
        WORKER.set(name)  # seen by every task the worker's runtime starts
        async with PostgresStore.open(url) as store, open_runtime(store=store) as runtime:
            worker = Worker(
                runtime, lambda record: pipeline, said(name), concurrency=3, poll_s=0.05
            )
            await worker.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(work, "first", name="first")
        nursery.start_soon(work, "second", name="second")
        await all_said.wait()
        nursery.cancel_scope.cancel()
    async with PostgresStore.open(url) as reader:
        records = [await reader.get_run(run_id) for run_id in run_ids]

    assert [(record.status, record.epoch, record.revision) for record in records] == [
        ("completed", 1, 2)
    ] * RUNS
    owner_of = _owners(records, drove)
    assert sorted((run, name) for _, run, name in ran) == sorted(
        (f"run {n}", name) for n in range(RUNS) for name in ("a", "b", "c")
    )
    for worker, text, _ in ran:  # every step in the worker that claimed its run
        assert worker == owner_of[run_ids[int(text.split()[1])]]


def _owners(records: list[RunRecord], drove: dict[str, list[str]]) -> dict[str, str]:
    """The worker that drove each run, from the lines the workers said (one per run)."""
    owners = {}
    for name, lines in drove.items():
        for line in lines:
            run_id, _, outcome = line.partition(": ")
            assert outcome == "completed"
            owners[run_id.removeprefix("run ")] = name
    assert sorted(owners) == sorted(record.run_id for record in records)
    return owners
