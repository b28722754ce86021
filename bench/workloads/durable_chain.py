"""Workload 5, durable chain: what a step costs when the SQLite journal commits it.

What is measured, in one process, each repetition in a fresh temporary folder:

* **trioflow**: workload 1's chain (``steps`` no-op steps, run ``runs``
  times one after the other through ``Runtime.run``) on a runtime over a
  fresh :class:`SQLiteStore` (WAL, ``durability="normal"``, i.e.
  ``synchronous = NORMAL``). Every journal write is its own committed
  transaction, made by the store's writer actor (inline in its task while
  the write lock is free, as it is here; WAL checkpoints in a worker
  thread): one per step record, plus a few per run (the run's creation,
  its updates, its trace), all counted in the per-step figure.
* **floor**: workload 1's floor (a task per step, its input and output
  over memory channels; plain trio, no trioflow code) in which each step's
  task also commits one row before it sends its result on: one apsw
  ``INSERT`` in its own transaction (``with connection:``), inline in the
  task, on one connection in WAL mode with ``synchronous = NORMAL`` (SQLite's
  defaults otherwise, so its own auto-checkpoint runs inline too). This is
  the same durable work done in plain trio: running the chain, and
  committing every step before the next one starts. The ratio
  trioflow/floor (target <= 2.0) is trioflow's overhead on a durable step.

Opening and closing the journal (or the floor's connection) is not timed:
the clock runs around the chains only. Four more variants are timed
alternately as notes, so that nothing hides in the floor:

* the same trioflow chain over an in-memory store (workload 1's trioflow):
  the difference is what the journal costs trioflow per step;
* workload 1's floor alone (no ``INSERT``): the difference from the floor
  is what committing a row costs a plain-trio step;
* the previous floor, no chain at all: for each step one ``INSERT`` in its
  own transaction, inline in one trio task (the least committing every
  step to SQLite costs);
* the same with each transaction in a worker thread
  (``trio.to_thread.run_sync``), as trioflow's writer runs it when it must
  wait for a lock or fsync (durability ``"full"``).

Every repetition checks that the journal (or the floor's table) holds one
row per step, and that every chain returned its input. Reported as
microseconds per step.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import apsw
import attrs
import harness
import trio
from harness import Report, Workload
from trioflow.persistence import SQLiteStore
from trioflow.runtime import Pipeline, open_runtime

from workloads.chain import floor_chain, floor_run, noop, trioflow_chain

JOURNAL = "journal.db"

#: At most this many times the floor's median (issue 16).
TARGET_RATIO = 1.5


@attrs.frozen
class Size:
    steps: int = 100
    runs: int = 20

    @property
    def total(self) -> int:
        return self.steps * self.runs

    def describe(self) -> str:
        return f"{self.steps} steps x {self.runs} runs, a fresh journal each repetition"


def in_fresh_folder(body: Callable[[Path], Awaitable[float]]) -> float:
    """``trio.run(body, path)`` with ``path`` a journal file in a new temporary folder."""
    with tempfile.TemporaryDirectory(prefix="trioflow-bench-") as folder:
        return trio.run(body, Path(folder) / JOURNAL)


def count_rows(path: Path, table: str) -> int:
    """The rows of ``table`` in the database at ``path``, on a connection of its own."""
    connection = apsw.Connection(str(path))
    try:
        # ``table`` is one of this module's constants, never input.
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
        if not isinstance(count, int):
            raise TypeError(f"count(*) gave {count!r}")
        return count
    finally:
        connection.close()


def check_rows(path: Path, table: str, expected: int, who: str) -> None:
    found = count_rows(path, table)
    if found != expected:
        raise RuntimeError(f"{who}: {found} rows in {table}, expected {expected}")


# --- trioflow -----------------------------------------------------------------


@attrs.define
class Opening:
    """Milliseconds each trioflow repetition spent opening and closing its journal."""

    ms: list[float] = attrs.field(factory=list)


async def trioflow_durable(size: Size, opening: Opening, path: Path) -> float:
    """The chain on a fresh SQLite journal at ``path``; µs per step, chains only."""
    pipeline = Pipeline.of(*[noop] * size.steps)
    opened = time.perf_counter()
    async with SQLiteStore.open(path) as store, open_runtime(store=store) as runtime:
        started = time.perf_counter()
        for _ in range(size.runs):
            result = await runtime.run(pipeline, 1)
            if not result.success or result.output != 1:  # never time a failing path
                raise RuntimeError(f"the durable chain did not complete: {result.error}")
        elapsed = time.perf_counter() - started
    if harness.traced_mb() is None:  # a timed repetition, not the one under tracemalloc
        opening.ms.append((time.perf_counter() - opened - elapsed) * harness.MS)
    # A record per step, and one for the pipeline itself (path "main"), per run.
    check_rows(path, "steps", (size.steps + 1) * size.runs, "trioflow")
    return elapsed * harness.US / size.total


# --- the floor ----------------------------------------------------------------


def floor_connection(path: Path) -> apsw.Connection:
    """One connection in WAL mode, ``synchronous = NORMAL``, with the floor's table."""
    connection = apsw.Connection(str(path))
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(
        "CREATE TABLE steps (run INTEGER, step INTEGER, value INTEGER, PRIMARY KEY (run, step))"
    )
    return connection


def insert_step(connection: apsw.Connection, run: int, index: int, value: int) -> None:
    """One step committed: one INSERT in its own transaction."""
    with connection:
        connection.execute("INSERT INTO steps VALUES (?, ?, ?)", (run, index, value))


async def _per_step_on_table(
    size: Size, path: Path, who: str, body: Callable[[apsw.Connection], Awaitable[None]]
) -> float:
    """Time ``body`` on a fresh floor connection, check its rows; µs per step."""
    connection = floor_connection(path)
    try:
        started = time.perf_counter()
        await body(connection)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    check_rows(path, "steps", size.total, who)
    return elapsed * harness.US / size.total


async def floor_durable(size: Size, path: Path) -> float:
    """Workload 1's floor, each step committing one INSERT inline; µs per step."""

    async def chains(connection: apsw.Connection) -> None:
        for run in range(size.runs):
            value = await floor_run(size.steps, 1, functools.partial(insert_step, connection, run))
            if value != 1:
                raise RuntimeError(f"the durable floor chain returned {value!r}, not 1")

    return await _per_step_on_table(size, path, "floor", chains)


async def inserts_only(size: Size, path: Path) -> float:
    """No chain: one committed INSERT per step, inline in the trio task; µs per step."""

    async def inserts(connection: apsw.Connection) -> None:
        for run in range(size.runs):
            for index in range(size.steps):
                insert_step(connection, run, index, 1)

    return await _per_step_on_table(size, path, "inserts only", inserts)


async def inserts_in_thread(size: Size, path: Path) -> float:
    """No chain: each committed INSERT in a worker thread; µs per step."""

    async def inserts(connection: apsw.Connection) -> None:
        for run in range(size.runs):
            for index in range(size.steps):
                await trio.to_thread.run_sync(insert_step, connection, run, index, 1)

    return await _per_step_on_table(size, path, "inserts in a thread", inserts)


# --- the workload -------------------------------------------------------------


def measure(size: Size, repeats: int) -> Report:
    opening = Opening()
    comparison = harness.compare(
        "µs/step",
        functools.partial(in_fresh_folder, functools.partial(trioflow_durable, size, opening)),
        functools.partial(in_fresh_folder, functools.partial(floor_durable, size)),
        repeats,
    )
    in_memory, chain_floor = (
        harness.timed(
            functools.partial(chain, size.steps, size.runs), scale=harness.US, per=size.total
        )
        for chain in (trioflow_chain, floor_chain)
    )
    alone, threaded = (
        functools.partial(in_fresh_folder, functools.partial(inserts, size))
        for inserts in (inserts_only, inserts_in_thread)
    )
    variants = [in_memory, chain_floor, alone, threaded]
    for variant in variants:  # warm-up
        variant()
    memory_us, chain_floor_us, alone_us, threaded_us = harness.alternate(variants, repeats)
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    journal_us = comparison.trioflow.median - memory_us.median
    commit_us = comparison.floor.median - chain_floor_us.median
    return Report(
        5,
        "durable_chain",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"µs/step trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}.",
            f"the same chain over an in-memory store: {memory_us.median:.1f} µs/step, so the "
            f"journal adds {journal_us:.1f} µs/step to a trioflow step; workload 1's floor "
            f"(no INSERT): {chain_floor_us.median:.1f} µs/step, so committing a row adds "
            f"{commit_us:.1f} µs/step to a plain-trio step.",
            f"no chain, one INSERT per step in its own transaction in the trio task: "
            f"{alone_us.median:.1f} µs/step; the same with each transaction in a worker thread "
            f"(trio.to_thread.run_sync): {threaded_us.median:.1f} µs/step.",
            f"opening and closing a fresh journal (not timed above): "
            f"{min(opening.ms):.1f}..{max(opening.ms):.1f} ms.",
            "every repetition checked: the journal holds one step record per step (and one "
            "per run for the pipeline), the floor's table one row per step.",
        ),
    )


WORKLOAD = Workload(5, "durable_chain", measure, default=Size(), tiny=Size(steps=3, runs=2))
