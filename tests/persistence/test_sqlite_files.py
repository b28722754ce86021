"""The SQLite store's file: creating, reopening, corruption, locks, processes, durability."""

from __future__ import annotations

import datetime
import itertools
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest
import trio
from moved_aside import moved_aside
from trioflow.actors import MemoryTraceSink, TraceEvent, TraceKind
from trioflow.persistence import (
    CODEC,
    CorruptDatabase,
    JournalBusy,
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunSummary,
    SQLiteStore,
    StepRecord,
    StoreError,
)

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)


def a_run(run_id: str = "r1", **changes: Any) -> RunRecord:
    run = RunRecord(run_id, "invoices", "running", T0, {"topic": "trio"})
    return attrs.evolve(run, **changes)


def a_step(path: str, run_id: str = "r1", **changes: Any) -> StepRecord:
    step = StepRecord(run_id, path, path.rpartition(":")[2], True, path, 1, "0.01", 2, 3)
    return attrs.evolve(step, **changes)


def raw_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What an independent connection (another process, say) reads in ``path``."""
    connection = apsw.Connection(str(path))
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


async def a_database(path: Path) -> bytes:
    """A real journal at ``path`` holding one run and one step; its bytes."""
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        await store.record_step(a_step("main/0:a"))
    return await trio.Path(path).read_bytes()


# -- creating and reopening -------------------------------------------------------------------


async def test_open_creates_the_folder_and_a_wal_database_that_keeps_runs(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "runs.db"

    async with SQLiteStore.open(path) as store:
        assert (store.path, store.durability, store.recovered_from) == (path, "normal", None)
        await store.create_run(a_run())
        await store.record_step(a_step("main/0:a"))

    assert raw_rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert raw_rows(path, "PRAGMA user_version") == [(5,)]
    async with SQLiteStore.open(path) as again:
        assert await again.list_runs() == [a_run().summary()]
        assert await again.steps_of("r1") == [a_step("main/0:a")]
    assert sorted(os.listdir(path.parent)) == ["runs.db"]


async def test_an_empty_file_is_a_fresh_database_not_a_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()

    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == []
        assert store.recovered_from is None

    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


async def test_every_write_is_committed_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        assert raw_rows(path, "SELECT run_id, status FROM runs") == [("r1", "running")]
        await store.swap_run(a_run(), a_run(status="completed", finished_at=T0))
        assert raw_rows(path, "SELECT status, finished_at FROM runs") == [
            ("completed", "2026-03-01T10:00:00.000000+00:00")
        ]
        await store.record_step(a_step("main/0:a"))
        assert raw_rows(path, "SELECT path, seq FROM steps") == [("main/0:a", 1)]
        await store.record_usage(LedgerEntry("r1", "main/0:a#1#1", "main/0:a", "0.01", 1, 2))
        assert raw_rows(path, "SELECT key, seq FROM ledger") == [("main/0:a#1#1", 1)]
        await store.record_pause(PauseRecord("r1", "main/1:ok", "ok?", {}, T0))
        assert raw_rows(path, "SELECT path, seq FROM pauses") == [("main/1:ok", 1)]
        await store.save_trace("r1", [TraceEvent(TraceKind.NOTE, "run", 1.5, "hello")])
        assert raw_rows(
            path, "SELECT seq, kind, path, time, label, peer, detail FROM trace_events"
        ) == [(1, "note", "run", 1.5, "hello", None, None)]


async def test_every_write_goes_through_the_one_writer_actor(tmp_path: Path) -> None:
    sink = MemoryTraceSink()
    async with SQLiteStore.open(tmp_path / "runs.db", trace=sink) as store:
        await store.create_run(a_run())
        await store.swap_run(a_run(), a_run(status="completed"))
        await store.record_step(a_step("main/0:a"))
        await store.record_usage(LedgerEntry("r1", "k", "main/0:a", "0.01", 1, 2))
        await store.record_pause(PauseRecord("r1", "main/1:ok", "ok?", {}, T0))
        await store.save_trace("r1", [])
        await store.get_run("r1")
        await store.list_runs()

    assert [(e.kind, e.path) for e in sink.of_kind(TraceKind.SPAWN)] == [
        (TraceKind.SPAWN, "journal/writer")
    ]
    assert [(e.path, e.label) for e in sink.of_kind(TraceKind.RECEIVE)] == [
        ("journal/writer", "CreateRun"),
        ("journal/writer", "SwapRun"),
        ("journal/writer", "PutStep"),
        ("journal/writer", "PutUsage"),
        ("journal/writer", "PutPause"),
        ("journal/writer", "AppendTrace"),
    ]
    assert [(e.path, e.label) for e in sink.of_kind(TraceKind.EXIT)] == [("journal/writer", "ok")]


async def test_durability_full_keeps_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path, durability="full") as store:
        assert store.durability == "full"
        await store.create_run(a_run())

    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == [a_run().summary()]


async def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^durability must be 'normal' or 'full', got 'fast'$"):
        async with SQLiteStore.open(tmp_path / "runs.db", durability="fast"):  # type: ignore[arg-type]
            pass
    assert os.listdir(tmp_path) == []


async def test_a_valid_database_trioflow_did_not_create_is_refused_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    other = apsw.Connection(str(path))
    other.execute("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine')")
    other.close()
    before = path.read_bytes()

    with pytest.raises(StoreError) as raised:
        async with SQLiteStore.open(path):
            pass

    assert str(raised.value) == (
        f"{path} is an SQLite database that trioflow did not create (schema version 0, "
        "tables: notes); it was left untouched"
    )
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["other.db"]


# -- corruption: refused, left in place until recover=True --------------------------------


def _header_overwritten(real: bytes) -> bytes:
    return b"\0" * 16 + real[16:]


def _truncated(real: bytes) -> bytes:
    return real[: len(real) // 2]


def _page_overwritten(real: bytes) -> bytes:
    """The journal with its second page (the ``runs`` table's root) overwritten."""
    page = int.from_bytes(real[16:18], "big")
    return real[:page] + bytes(range(256)) * (page // 256) + real[2 * page :]


DAMAGES = {
    "header overwritten": _header_overwritten,
    "truncated": _truncated,
    "page overwritten": _page_overwritten,
}


def check_problems(path: Path) -> list[str]:
    """What SQLite's integrity check says of ``path``, read by a connection of its own."""
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    except (apsw.CorruptError, apsw.NotADBError) as error:
        return [str(error)]
    finally:
        connection.close()
    lines = [line for (text,) in rows for line in text.splitlines()]
    return [line for line in lines if line not in ("ok", "*** in database main ***")]


async def read_everything(store: SQLiteStore) -> None:
    """Every read of run r1, so that damage anywhere in the file is met."""
    await store.list_runs()
    await store.get_run("r1")
    await store.steps_of("r1")
    await store.pauses_of("r1")
    await store.ledger_of("r1")
    await store.trace_of("r1")


def damaged_message(path: Path, reason: str) -> str:
    return (
        f"the journal {path} is damaged ({reason}); it was left in place: "
        f"`trioflow doctor --db {path}` shows the damage, and --recover (recover=True) "
        "repairs it or moves it aside (nothing is deleted)"
    )


@pytest.mark.parametrize("damage", list(DAMAGES))
async def test_a_damaged_journal_is_refused_and_left_in_place_every_time(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "runs.db"
    bad = DAMAGES[damage](await a_database(path))
    path.write_bytes(bad)

    for _ in range(2):  # the next open meets the same damage: it never gets a fresh journal
        with pytest.raises(CorruptDatabase) as raised:
            async with SQLiteStore.open(path) as store:
                await read_everything(store)
        assert raised.value.path == path
        assert str(raised.value) == damaged_message(path, raised.value.reason)
        assert path.read_bytes() == bad
        assert sorted(os.listdir(tmp_path)) == ["runs.db"]


def overwrite_root_page(path: Path, name: str) -> None:
    """Overwrite the root page of table or index ``name``, past its header and cell pointers."""
    [(root, size)] = raw_rows(
        path,
        f"SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master"
        f" WHERE name = '{name}'",
    )
    data = bytearray(path.read_bytes())
    start = (root - 1) * size + 200
    garbage = bytes(range(256)) * size
    data[start : root * size] = garbage[: size - 200]
    path.write_bytes(bytes(data))


async def test_damage_met_during_use_is_described_by_a_full_check(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        for n in range(300):
            await store.create_run(a_run(f"r{n:03}"))
    overwrite_root_page(path, "sqlite_autoindex_runs_1")  # the index of run ids

    async with SQLiteStore.open(path) as store:  # opening reads the schema only: it opens
        assert len(await store.list_runs()) == 300  # a table scan: the damage is elsewhere
        with pytest.raises(CorruptDatabase) as raised:
            await store.get_run("r005")  # looked up through the damaged index

    found = check_problems(path)
    assert len(found) == 100  # SQLite stops counting at 100
    assert found[0] == "Tree 3 page 3 cell 299: Offset 38551 out of range 1224..4092"
    assert raised.value.reason == "; ".join(found[:3]) + " (and 97 more)"


async def test_a_header_overwritten_journal_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(_header_overwritten(await a_database(path)))

    with pytest.raises(CorruptDatabase) as raised:
        async with SQLiteStore.open(path):
            pass

    assert raised.value.reason == "file is not a database"


async def test_a_journal_whose_rows_break_its_schema_is_recovered_by_a_copy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        await store.save_trace("r1", [TraceEvent(TraceKind.SPAWN, "run", 0.0)])  # peer is NULL
    editor = apsw.Connection(str(path))
    editor.execute(
        "PRAGMA writable_schema = ON;"
        "UPDATE sqlite_master SET sql = replace(sql, 'peer TEXT', 'peer TEXT NOT NULL')"
        " WHERE name = 'trace_events';"
        "PRAGMA writable_schema = OFF;"
    )
    editor.close()
    bad = path.read_bytes()

    async with SQLiteStore.open(path, recover=True) as store:
        assert await store.list_runs() == [a_run().summary()]
        assert await store.trace_of("r1") == [TraceEvent(TraceKind.SPAWN, "run", 0.0)]
        recovered = store.recovered_from

    moved = moved_aside(recovered, path)
    assert recovered is not None  # narrows Optional (moved_aside checked it)
    assert (recovered.damage, recovered.action) == (
        "NULL value in trace_events.peer",
        "every run was copied into a fresh journal in its place",
    )
    assert moved.read_bytes() == bad
    assert check_problems(path) == []


async def test_recover_moves_companion_files_with_the_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    bad = _header_overwritten(await a_database(path))
    path.write_bytes(bad)
    (tmp_path / "runs.db-wal").write_bytes(b"wal bytes")
    (tmp_path / "runs.db-shm").write_bytes(b"shm bytes")

    async with SQLiteStore.open(path, recover=True) as store:
        recovered = store.recovered_from
        assert await store.list_runs() == []

    moved = moved_aside(recovered, path)
    assert sorted(os.listdir(tmp_path)) == [
        "runs.db",
        moved.name,
        f"{moved.name}-shm",
        f"{moved.name}-wal",
    ]
    assert (tmp_path / f"{moved.name}-wal").read_bytes() == b"wal bytes"
    assert moved.read_bytes() == bad
    # (The -shm is SQLite's index of the -wal, rebuilt by any reader: the check rewrote it.)


async def test_moving_aside_never_overwrites_an_earlier_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    bad = _header_overwritten(await a_database(path))
    now = datetime.datetime.now(datetime.UTC)
    earlier = {}
    for seconds in range(3):  # the move happens within these three seconds
        stamp = (now + datetime.timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%SZ")
        taken = tmp_path / f"runs.db.corrupt-{stamp}"
        taken.write_bytes(f"earlier {seconds}".encode())
        earlier[taken] = taken.read_bytes()
    path.write_bytes(bad)

    async with SQLiteStore.open(path, recover=True) as store:
        recovered = store.recovered_from

    assert recovered is not None  # narrows Optional: where it moved the file is compared next
    assert recovered.moved_to in {taken.with_name(taken.name + ".1") for taken in earlier}
    assert recovered.moved_to.read_bytes() == bad
    assert {taken: taken.read_bytes() for taken in earlier} == earlier


async def test_recover_moves_an_unreadable_journal_aside_and_starts_fresh(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    bad = _header_overwritten(await a_database(path))
    path.write_bytes(bad)

    async with SQLiteStore.open(path, recover=True) as store:
        assert await store.list_runs() == []
        await store.create_run(a_run())
        assert await store.list_runs() == [a_run().summary()]
        recovered = store.recovered_from

    moved = moved_aside(recovered, path)
    assert moved.read_bytes() == bad
    assert str(recovered) == (
        f"the journal {path} was damaged (file is not a database): its tables cannot be read; "
        f"a fresh journal starts; the damaged file was moved to {moved}"
    )
    assert sorted(os.listdir(tmp_path)) == sorted(["runs.db", moved.name])
    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == [a_run().summary()]


async def test_recover_on_a_sound_journal_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    before = await a_database(path)

    async with SQLiteStore.open(path, recover=True) as store:
        assert store.recovered_from is None
        assert await store.list_runs() == [a_run().summary()]

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


# -- locks: busy, never corrupt ---------------------------------------------------------------


async def test_a_held_write_lock_makes_a_write_wait_then_succeed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run())
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        written = trio.Event()

        async def write() -> None:
            await store.record_step(a_step("main/0:a"))
            written.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            await trio.sleep(0.3)  # the event loop runs on while the write waits
            assert not written.is_set()
            assert await store.get_run("r1") == a_run()  # reads do not wait for the lock
            other.execute("COMMIT")
            other.close()

        assert await store.steps_of("r1") == [a_step("main/0:a")]
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


async def test_a_lock_held_past_the_busy_timeout_is_busy_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path, busy_timeout_s=0.1) as store:
        await store.create_run(a_run())
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")

        with pytest.raises(JournalBusy) as raised:
            await store.record_step(a_step("main/0:a"))
        assert str(raised.value) == (
            f"the journal {path} is locked by another process: waited 0.1 s for its write "
            "lock; try again, or wait longer with --busy-timeout SECONDS (busy_timeout_s=)"
        )

        assert await store.steps_of("r1") == []
        other.execute("ROLLBACK")
        other.close()
        await store.record_step(a_step("main/0:a"))
        assert await store.steps_of("r1") == [a_step("main/0:a")]
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


async def test_a_swap_that_waits_for_the_lock_compares_with_what_the_holder_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path, busy_timeout_s=60) as store:
        await store.create_run(a_run(status="paused"))
        read = await store.get_run("r1")
        other = apsw.Connection(str(path))
        other.execute("BEGIN IMMEDIATE")  # another process is swapping the run right now
        theirs = a_run(input="theirs", revision=1)
        other.execute(
            "UPDATE runs SET status = 'running', payload = ?, revision = 1 WHERE run_id = 'r1'",
            (CODEC.encode(theirs),),
        )
        outcome: list[RunRecord | None] = []

        async def swap() -> None:
            outcome.append(await store.swap_run(read, a_run(input="ours")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(swap)
            await trio.sleep(0.3)
            assert outcome == []  # waiting for the lock, not deciding on what it read before
            other.execute("COMMIT")
            other.close()

        assert outcome == [None]
        assert await store.get_run("r1") == theirs
    assert raw_rows(path, "SELECT status, revision FROM runs") == [("running", 1)]


async def test_opening_a_locked_database_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await a_database(path)
    other = apsw.Connection(str(path))
    other.execute("PRAGMA journal_mode = DELETE")
    other.execute("BEGIN EXCLUSIVE")  # in rollback mode this keeps readers out too
    opened = trio.Event()
    runs: list[RunSummary] = []

    async def open_and_read() -> None:
        async with SQLiteStore.open(path) as store:
            opened.set()
            runs.extend(await store.list_runs())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_and_read)
        await trio.sleep(0.3)
        assert not opened.is_set()
        other.execute("COMMIT")
        other.close()

    assert runs == [a_run().summary()]
    assert raw_rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


# -- processes --------------------------------------------------------------------------------

WRITER_PROCESS = """
import datetime, sys
import trio
from trioflow.persistence import RunRecord, SQLiteStore, StepRecord

worker, path = sys.argv[1], sys.argv[2]
T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)

async def main() -> None:
    async with SQLiteStore.open(path) as store:
        for n in range(50):
            run_id = f"{worker}-{n}"
            await store.create_run(RunRecord(run_id, "p", "running", T0, n))
            for s in range(3):
                path_s = f"main/{s}:s{s}"
                await store.record_step(
                    StepRecord(run_id, path_s, f"s{s}", True, [worker, n, s], 1, "0.01", 1, 2)
                )
            started = RunRecord(run_id, "p", "running", T0, n)
            await store.swap_run(started, RunRecord(run_id, "p", "completed", T0, n, output=n * 2))
            await trio.sleep(0.002)  # a run's work between writes: the other process gets a turn

print("ready", flush=True)  # imported: wait for the other process
sys.stdin.readline()
trio.run(main)
"""


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some()
        assert chunk, f"the stream ended after {line!r}"
        line += chunk
    return line


async def run_together(script: str, workers: list[str], *args: str) -> None:
    """Run ``script`` once per worker, all released at the same moment; each must succeed."""
    processes: list[trio.Process] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for worker in workers:
                command = [sys.executable, "-c", script, worker, *args]
                start_process = partial(
                    trio.run_process, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                processes.append(await nursery.start(start_process))
            for process in processes:
                assert process.stdout is not None  # narrows the type (piped)
                assert await read_line(process.stdout) == b"ready\n"
            for process in processes:  # all start at once
                assert process.stdin is not None  # narrows the type (piped)
                await process.stdin.send_all(b"go\n")
    assert [process.returncode for process in processes] == [0] * len(workers)


async def test_two_processes_writing_one_file_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "runs.db"  # neither process finds a database: both create it

    await run_together(WRITER_PROCESS, ["a", "b"], str(path))

    async with SQLiteStore.open(path) as store:
        runs = await store.list_runs()
        assert sorted(run.run_id for run in runs) == sorted(
            f"{worker}-{n}" for worker in ("a", "b") for n in range(50)
        )
        for run in runs:
            worker, _, number = run.run_id.partition("-")
            n = int(number)
            record = await store.get_run(run.run_id)
            assert (record.status, record.input, record.output) == ("completed", n, n * 2)
            steps = await store.steps_of(run.run_id)
            assert [(s.path, s.output) for s in steps] == [
                (f"main/{s}:s{s}", [worker, n, s]) for s in range(3)
            ]
    writers = [run.run_id[0] for run in runs]  # creation order (same start time)
    switches = sum(1 for x, y in itertools.pairwise(writers) if x != y)
    assert switches > 1, f"the two processes did not write at the same time: {writers}"


SWAPPING_PROCESS = """
import pathlib, sys
import attrs, trio
from trioflow.persistence import SQLiteStore

worker, path, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]) / sys.argv[1]

async def main() -> None:
    async with SQLiteStore.open(path) as store:
        read = await store.get_run("r1")  # every process reads the same revision first
        print("ready", flush=True)
        sys.stdin.readline()
        claim = attrs.evolve(read, status="running", input=worker)
        swapped = await store.swap_run(read, claim)
        out.write_text("lost" if swapped is None else f"won {swapped.revision}")

trio.run(main)
"""


async def test_of_processes_swapping_one_run_from_one_read_exactly_one_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run(status="paused"))
    workers = ["a", "b", "c", "d"]

    await run_together(SWAPPING_PROCESS, workers, str(path), str(tmp_path))

    outcomes = {worker: (tmp_path / worker).read_text() for worker in workers}
    [winner] = [worker for worker, outcome in outcomes.items() if outcome != "lost"]
    assert outcomes == {worker: "won 1" if worker == winner else "lost" for worker in workers}
    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == [a_run(input=winner, revision=1).summary()]
        assert await store.get_run("r1") == a_run(input=winner, revision=1)


CREATING_PROCESS = """
import datetime, pathlib, sys
import trio
from trioflow.persistence import RunRecord, SQLiteStore

worker, folder = sys.argv[1], pathlib.Path(sys.argv[2])
T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)

async def main() -> None:
    for n in range(20):  # every process creates each of these files at about the same time
        async with SQLiteStore.open(folder / f"runs-{n}.db") as store:
            await store.create_run(RunRecord(worker, "p", "running", T0, n))

print("ready", flush=True)
sys.stdin.readline()
trio.run(main)
"""


async def test_processes_creating_one_file_at_once_all_open_it(tmp_path: Path) -> None:
    workers = ["a", "b", "c", "d"]

    await run_together(CREATING_PROCESS, workers, str(tmp_path))

    for n in range(20):
        path = tmp_path / f"runs-{n}.db"
        assert raw_rows(path, "SELECT run_id, payload IS NOT NULL FROM runs ORDER BY run_id") == [
            (worker, 1) for worker in workers
        ]
        assert raw_rows(path, "PRAGMA journal_mode") == [("wal",)]


KILLED_PROCESS = """
import datetime, os, signal, sys
import trio
from trioflow.persistence import RunRecord, SQLiteStore, StepRecord

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)

async def main() -> None:
    async with SQLiteStore.open(sys.argv[1]) as store:
        await store.create_run(RunRecord("r1", "p", "running", T0, "in"))
        await store.record_step(StepRecord("r1", "main/0:a", "a", True, "out", 1, "0.01", 1, 2))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint

trio.run(main)
"""


async def test_a_committed_step_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    killed = await trio.run_process(
        [sys.executable, "-c", KILLED_PROCESS, str(path)], capture_stderr=True, check=False
    )
    assert (killed.returncode, killed.stderr) == (-signal.SIGKILL, b"")
    assert (tmp_path / "runs.db-wal").exists()  # the commits are still only in the WAL

    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == [RunRecord("r1", "p", "running", T0, "in").summary()]
        assert await store.steps_of("r1") == [
            StepRecord("r1", "main/0:a", "a", True, "out", 1, "0.01", 1, 2)
        ]


async def test_a_damaged_journal_is_left_with_its_wal_intact_until_recover(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    await a_database(path)
    writer = apsw.Connection(str(path))
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(
        "UPDATE runs SET payload = ? WHERE run_id = 'r1'",
        (CODEC.encode(a_run(status="paused")),),
    )
    # A copy taken while the writer is open: a journal left with its -wal, as after a kill.
    wal = await trio.Path(f"{path}-wal").read_bytes()
    damaged = _header_overwritten(path.read_bytes())
    copy = tmp_path / "copy" / "runs.db"
    copy.parent.mkdir()
    copy.write_bytes(damaged)
    await trio.Path(f"{copy}-wal").write_bytes(wal)
    writer.close()

    with pytest.raises(CorruptDatabase) as raised:
        async with SQLiteStore.open(copy):
            pass
    assert raised.value.reason == "file is not a database"
    assert (copy.read_bytes(), await trio.Path(f"{copy}-wal").read_bytes()) == (damaged, wal)

    async with SQLiteStore.open(copy, recover=True) as store:
        recovered = store.recovered_from
    moved = moved_aside(recovered, copy)
    assert await trio.Path(f"{moved}-wal").read_bytes() == wal
    assert moved.read_bytes() == damaged
