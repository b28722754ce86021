"""Where the SQLite store commits, and its WAL checkpoints.

With durability ``"normal"`` a write commits inline, in the writer's task,
when SQLite's write lock is free; when another connection holds the lock
it waits in a worker thread, and the event loop runs on. With ``"full"``
every commit (an fsync) is in a worker thread. The writer checkpoints the
WAL itself, in a worker thread, so the WAL stays bounded.

What runs in a worker thread is seen by recording every
``trio.to_thread.run_sync`` call the store makes once it is open.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest
import trio
import trio.lowlevel
from trioflow.persistence import LedgerEntry, PauseRecord, RunRecord, SQLiteStore, StepRecord
from trioflow.persistence._writer import CHECKPOINT_PAGES

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)

#: The header of an SQLite WAL file, and of each frame in it.
WAL_HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24


def a_run(**changes: Any) -> RunRecord:
    return attrs.evolve(RunRecord("r1", "invoices", "running", T0, {"topic": "trio"}), **changes)


def a_step(path: str, **changes: Any) -> StepRecord:
    step = StepRecord("r1", path, path.rpartition(":")[2], True, path, 1, "0.01", 2, 3)
    return attrs.evolve(step, **changes)


def raw_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What an independent connection reads in ``path``."""
    connection = apsw.Connection(str(path))
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


@attrs.define
class HandOffs:
    """The functions handed to worker threads, by name, in order."""

    names: list[str] = attrs.field(factory=list)
    first: trio.Event = attrs.field(factory=trio.Event)


def record_hand_offs(monkeypatch: pytest.MonkeyPatch) -> HandOffs:
    """From now on, note every function run through ``trio.to_thread.run_sync``."""
    hand_offs = HandOffs()
    run_sync = trio.to_thread.run_sync

    async def recorded(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hand_offs.names.append(function.__name__)
        hand_offs.first.set()
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", recorded)
    return hand_offs


async def every_kind_of_write(store: SQLiteStore) -> int:
    """One write of each kind; how many writes that was."""
    await store.create_run(a_run())
    await store.record_step(a_step("main/0:a"))
    await store.record_usage(LedgerEntry("r1", "main/0:a#1#1", "main/0:a", "0.01", 1, 2))
    await store.record_pause(PauseRecord("r1", "main/1:ok", "ok?", {}, T0))
    await store.save_trace("r1", [])
    await store.swap_run(a_run(), a_run(status="completed"))
    return 6


async def test_normal_commits_inline_while_the_write_lock_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        hand_offs = record_hand_offs(monkeypatch)

        await every_kind_of_write(store)

        assert hand_offs.names == []
        assert raw_rows(path, "SELECT status FROM runs") == [("completed",)]
        assert raw_rows(path, "SELECT path FROM steps") == [("main/0:a",)]


async def test_full_commits_every_write_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path, durability="full") as store:
        hand_offs = record_hand_offs(monkeypatch)

        writes = await every_kind_of_write(store)

        assert hand_offs.names == ["_transaction"] * writes
        assert raw_rows(path, "SELECT status FROM runs") == [("completed",)]


async def test_a_write_that_must_wait_for_the_lock_waits_in_a_thread_not_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    # Were the inline attempt to wait for the lock, it would freeze the event loop
    # for this minute (nothing else could release the lock meanwhile), and the
    # guard below would fail the test.
    async with SQLiteStore.open(path, busy_timeout_s=60) as store:
        await store.create_run(a_run())
        hand_offs = record_hand_offs(monkeypatch)
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        written = trio.Event()
        ticked = trio.Event()

        async def write() -> None:
            await store.record_step(a_step("main/0:a"))
            written.set()

        async def tick(times: int) -> None:
            for _ in range(times):
                await trio.lowlevel.checkpoint()
            ticked.set()

        with trio.fail_after(30):  # the guard: only a frozen event loop comes near it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await hand_offs.first.wait()
                nursery.start_soon(tick, 100)  # another task runs on while the write waits
                await ticked.wait()
                assert not written.is_set()
                assert raw_rows(path, "SELECT count(*) FROM steps") == [(0,)]
                other.execute("COMMIT")
                other.close()
                await written.wait()  # the thread waited out the lock: its timeout was restored

        assert hand_offs.names == ["_transaction"]
        assert await store.steps_of("r1") == [a_step("main/0:a")]
        # The inline attempt that found the lock taken left no transaction open:
        # with the lock free again, the next write commits inline.
        await store.record_step(a_step("main/1:b"))
        assert hand_offs.names == ["_transaction"]
        assert await store.steps_of("r1") == [a_step("main/0:a"), a_step("main/1:b")]


async def test_cancelling_a_write_waiting_for_the_lock_never_leaves_it_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        hand_offs = record_hand_offs(monkeypatch)
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")
        entry = LedgerEntry("r1", "main/0:a#1#1", "main/0:a", "0.01", 1, 2)

        with trio.fail_after(30):  # a guard against a hang, not a measurement
            async with trio.open_nursery() as nursery:
                cancelled = trio.CancelScope()

                async def write() -> None:
                    with cancelled:
                        await store.record_usage(entry)

                nursery.start_soon(write)
                await hand_offs.first.wait()
                cancelled.cancel()
            assert cancelled.cancelled_caught
            other.execute("COMMIT")
            other.close()
            # Queued behind the cancelled ask: answered once that transaction has ended.
            await store.record_step(a_step("main/1:b"))

        assert await store.ledger_of("r1") == [entry]
        assert await store.steps_of("r1") == [a_step("main/1:b")]


async def test_a_step_record_waiting_for_the_lock_is_committed_though_its_caller_is_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        hand_offs = record_hand_offs(monkeypatch)
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")
        step = a_step("main/0:a", output={"items": list(range(100))})
        returned = trio.Event()

        with trio.fail_after(30):  # a guard against a hang, not a measurement
            async with trio.open_nursery() as nursery:
                cancelled = trio.CancelScope()

                async def write() -> None:
                    with cancelled:
                        await store.record_step(step)
                        returned.set()  # reached only if the call returned normally

                nursery.start_soon(write)
                await hand_offs.first.wait()
                cancelled.cancel()
                await trio.sleep(0.05)
                assert not returned.is_set()  # still waiting for the lock, cancellation or not
                other.execute("COMMIT")
                other.close()
            assert returned.is_set()

        assert await store.steps_of("r1") == [step]


async def test_the_wal_is_checkpointed_in_a_thread_and_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    wal = tmp_path / "runs.db-wal"
    writes = 1200  # each about 3 pages in the WAL: more than three checkpoints' worth
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        hand_offs = record_hand_offs(monkeypatch)
        largest = 0
        for n in range(writes):
            await store.record_step(a_step(f"main/{n}:s", output="x" * 3000))
            largest = max(largest, wal.stat().st_size)

        assert set(hand_offs.names) == {"_checkpoint"}  # every commit was inline
        assert len(hand_offs.names) >= 3
    (page_size,) = raw_rows(path, "PRAGMA page_size")[0]
    # The threshold, and the last transaction's pages written before the checkpoint ran.
    bound = WAL_HEADER_BYTES + (CHECKPOINT_PAGES + 10) * (FRAME_HEADER_BYTES + page_size)
    assert 0 < largest <= bound
    assert raw_rows(path, "SELECT count(*) FROM steps") == [(writes,)]
