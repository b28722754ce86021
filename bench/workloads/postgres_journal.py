"""Workload 12, the PostgreSQL journal: a durable step on Postgres, and how to reach the server.

Measured on a throwaway server started for the workload (``tests/postgres_server.py``:
``initdb`` + ``pg_ctl`` on a private unix socket) with PostgreSQL's defaults
except ``synchronous_commit = off``: a commit does not wait for its WAL
flush, so what is timed is round trips and CPU, not this machine's disk
(each commit's fsync would otherwise dominate both sides equally).

* **trioflow**: workload 1's chain (``steps`` no-op steps, run ``runs``
  times one after the other) on a runtime over a :class:`PostgresStore`
  (its default pool). Every journal write is one committed statement.
* **floor**: plain trio with the same driver: for each step, one
  ``INSERT`` in its own transaction (autocommit) on one psycopg connection,
  in a worker thread (``trio.to_thread.run_sync``), one after the other.
  The ratio (target <= 2.0) is what trioflow adds to a step committed on Postgres.

The choice of how the store reaches the server (the notes): ``writers``
trio tasks each commit ``steps`` single-row ``INSERT``\\ s at once, through

* a connection per call (the thread connects, inserts, disconnects);
* one connection, shared under a lock (one call at a time);
* a pool of ``POOL`` connections, each lent to one call at a time;
* pipeline mode: one connection, whose task sends every ``INSERT`` queued
  meanwhile in one psycopg pipeline per thread hop (``Connection.pipeline``),
  answering each writer once its batch is back;

and the trioflow chain again with ``writers`` runs at once, on a store with a
pool of 1 and of ``POOL``. Every repetition checks the row counts.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import harness
import psycopg
import trio
from harness import Report, Workload
from trioflow.persistence import PostgresStore
from trioflow.runtime import Pipeline, open_runtime

from workloads.chain import noop

# The one way of starting a throwaway server lives with the tests (see its docstring).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from postgres_server import PostgresServer, running_server

#: The server's settings: PostgreSQL's defaults but for the commit's WAL flush.
SETTINGS = {"synchronous_commit": "off", "max_connections": "200"}

#: Issue 18's target: a durable step on PostgreSQL at most twice the floor's.
TARGET_RATIO = 2.0

#: Connections in the pooled variants.
POOL = 4


@attrs.frozen
class Size:
    steps: int = 100
    runs: int = 10
    writers: int = 8

    @property
    def total(self) -> int:
        return self.steps * self.runs

    def describe(self) -> str:
        return (
            f"{self.steps} steps x {self.runs} runs; {self.writers} writers x {self.steps} "
            "INSERTs for the connection choice"
        )


Measured = Callable[[str], Awaitable[float]]


def in_fresh_database(server: PostgresServer, body: Measured) -> float:
    """``trio.run(body, url)`` with ``url`` a new empty database, dropped afterwards."""
    with server.database() as url:
        return trio.run(body, url)


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        # ``table`` is one of this module's constants, never input.
        found = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return 0 if found is None else int(found[0])


def check_rows(url: str, table: str, expected: int, who: str) -> None:
    found = count_rows(url, table)
    if found != expected:
        raise RuntimeError(f"{who}: {found} rows in {table}, expected {expected}")


# --- trioflow -----------------------------------------------------------------


async def trioflow_chains(size: Size, concurrent: int, pool_size: int, url: str) -> float:
    """``concurrent`` chains at once, ``runs`` times each, on a fresh store; µs per step."""
    pipeline = Pipeline.of(*[noop] * size.steps)
    async with (
        PostgresStore.open(url, pool_size=pool_size) as store,
        open_runtime(store=store) as runtime,
    ):

        async def chains() -> None:
            for _ in range(size.runs):
                result = await runtime.run(pipeline, 1)
                if not result.success or result.output != 1:  # never time a failing path
                    raise RuntimeError(f"the chain did not complete: {result.error}")

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrent):
                nursery.start_soon(chains)
        elapsed = time.perf_counter() - started
    # A record per step, and one for the pipeline itself (path "main"), per run.
    check_rows(url, "trioflow.steps", (size.steps + 1) * size.runs * concurrent, "trioflow")
    return elapsed * harness.US / (size.total * concurrent)


# --- plain trio and psycopg ---------------------------------------------------

INSERT = "INSERT INTO steps VALUES (%s, %s, %s)"


def floor_connection(url: str) -> psycopg.Connection[Any]:
    connection = psycopg.connect(url, autocommit=True)
    connection.execute(
        "CREATE TABLE IF NOT EXISTS steps (run INTEGER, step INTEGER, value INTEGER,"
        " PRIMARY KEY (run, step))"
    )
    return connection


def insert(connection: psycopg.Connection[Any], run: int, step: int) -> None:
    connection.execute(INSERT, (run, step, 1))


async def floor_chain(size: Size, url: str) -> float:
    """One INSERT per step, each in a worker thread, one after the other; µs per step."""
    connection = floor_connection(url)
    try:
        started = time.perf_counter()
        for run in range(size.runs):
            for step in range(size.steps):
                await trio.to_thread.run_sync(insert, connection, run, step)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    check_rows(url, "steps", size.total, "floor")
    return elapsed * harness.US / size.total


Committer = Callable[[int, int], Awaitable[None]]


async def writers(size: Size, url: str, committer: Committer) -> float:
    """``writers`` tasks committing ``steps`` rows each through ``committer``; µs per row."""
    floor_connection(url).close()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for writer in range(size.writers):

            async def write(writer: int = writer) -> None:
                for step in range(size.steps):
                    await committer(writer, step)

            nursery.start_soon(write)
    elapsed = time.perf_counter() - started
    check_rows(url, "steps", size.writers * size.steps, "writers")
    return elapsed * harness.US / (size.writers * size.steps)


def connect_per_call(url: str, run: int, step: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        insert(connection, run, step)


async def per_call(size: Size, url: str) -> float:
    async def committer(run: int, step: int) -> None:
        await trio.to_thread.run_sync(connect_per_call, url, run, step)

    return await writers(size, url, committer)


@contextmanager
def connections(url: str, count: int) -> Iterator[list[psycopg.Connection[Any]]]:
    opened = [psycopg.connect(url, autocommit=True) for _ in range(count)]
    try:
        yield opened
    finally:
        for connection in opened:
            connection.close()


async def pooled(size: Size, count: int, url: str) -> float:
    """``count`` connections, each lent to one call at a time (1: one shared connection)."""
    with connections(url, count) as idle:
        lending = trio.Semaphore(count)

        async def committer(run: int, step: int) -> None:
            async with lending:
                connection = idle.pop()
                try:
                    await trio.to_thread.run_sync(insert, connection, run, step)
                finally:
                    idle.append(connection)

        return await writers(size, url, committer)


def insert_batch(connection: psycopg.Connection[Any], rows: list[tuple[int, int]]) -> None:
    """Every row in one pipeline: the INSERTs go out together, their results come back together."""
    with connection.pipeline():
        for run, step in rows:
            insert(connection, run, step)


async def pipelined(size: Size, url: str) -> float:
    """One connection; each thread hop sends every INSERT queued since the last, pipelined."""
    with connections(url, 1) as (connection,):
        queued: list[tuple[tuple[int, int], trio.Event]] = []
        wake = trio.Event()

        async def sender() -> None:
            nonlocal wake
            while True:
                await wake.wait()
                wake = trio.Event()
                batch, queued[:] = list(queued), []
                await trio.to_thread.run_sync(insert_batch, connection, [row for row, _ in batch])
                for _, done in batch:
                    done.set()

        async def committer(run: int, step: int) -> None:
            done = trio.Event()
            queued.append(((run, step), done))
            wake.set()
            await done.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            result = await writers(size, url, committer)
            nursery.cancel_scope.cancel()
        return result


# --- the workload -------------------------------------------------------------


def measure(size: Size, repeats: int) -> Report:
    with running_server(SETTINGS) as server:
        fresh = functools.partial(in_fresh_database, server)
        comparison = harness.compare(
            "µs/step",
            functools.partial(fresh, functools.partial(trioflow_chains, size, 1, POOL)),
            functools.partial(fresh, functools.partial(floor_chain, size)),
            repeats,
        )
        choices = [
            functools.partial(fresh, body)
            for body in (
                functools.partial(per_call, size),
                functools.partial(pooled, size, 1),
                functools.partial(pooled, size, POOL),
                functools.partial(pipelined, size),
                functools.partial(trioflow_chains, size, size.writers, 1),
                functools.partial(trioflow_chains, size, size.writers, POOL),
            )
        ]
        per_call_us, one_us, pool_us, pipeline_us, store_one_us, store_pool_us = harness.alternate(
            choices, repeats
        )
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    return Report(
        12,
        "postgres_journal",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"µs/step trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}.",
            f"{size.writers} writers at once, µs per committed INSERT: a connection per call "
            f"{per_call_us.median:.0f}, one shared connection {one_us.median:.0f}, a pool of "
            f"{POOL} {pool_us.median:.0f}, pipeline mode on one connection "
            f"{pipeline_us.median:.0f}.",
            f"{size.writers} trioflow chains at once, µs per step: a store with a pool of 1 "
            f"{store_one_us.median:.0f}, of {POOL} {store_pool_us.median:.0f}.",
            "every repetition checked: one step record per step (and one per run for the "
            "pipeline), one floor row per INSERT.",
        ),
    )


WORKLOAD = Workload(
    12, "postgres_journal", measure, default=Size(), tiny=Size(steps=3, runs=2, writers=2)
)
