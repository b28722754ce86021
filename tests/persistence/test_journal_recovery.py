"""Damage that spares the runs loses no run: index damage, one undecodable row, a full check.

Before: opening ran ``quick_check``, and any finding (a damaged index, whose
table is intact) moved the whole journal aside, hiding every run; one run
record that could not be decoded made ``list_runs`` fail for all.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import apsw
import pytest
from moved_aside import moved_aside
from trioflow.persistence import (
    CODEC,
    CorruptDatabase,
    CorruptJournal,
    RunRecord,
    SQLiteStore,
    UnreadableRuns,
    examine_journal,
)

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)
RUNS = 300


def a_run(n: int) -> RunRecord:
    return RunRecord(f"r{n:03}", "p", "completed", T0 + datetime.timedelta(minutes=n), n)


async def a_journal(path: Path) -> None:
    async with SQLiteStore.open(path) as store:
        for n in range(RUNS):
            await store.create_run(a_run(n))


def edit(path: Path, sql: str, *bindings: object) -> None:
    connection = apsw.Connection(str(path))
    try:
        connection.execute(sql, bindings)
    finally:
        connection.close()


def overwrite_index_page(path: Path, index: str) -> None:
    """Garbage over the root page of ``index``, past its header and cell pointers."""
    connection = apsw.Connection(str(path))
    [(root,)] = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)
    ).fetchall()
    [(size,)] = connection.execute("PRAGMA page_size").fetchall()
    connection.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * size + 200
    data[start : root * size] = (bytes(range(256)) * size)[: size - 200]
    path.write_bytes(bytes(data))


def unlink_index_from_its_table(path: Path, index: str, change: str) -> None:
    """Change the table behind ``index``'s back: the index's pages stay sound but stale."""
    connection = apsw.Connection(str(path))
    [(sql, root)] = connection.execute(
        "SELECT sql, rootpage FROM sqlite_master WHERE name = ?", (index,)
    ).fetchall()
    connection.execute(
        "PRAGMA writable_schema = ON; DELETE FROM sqlite_master WHERE name = ?;", (index,)
    )
    connection.close()
    connection = apsw.Connection(str(path))
    connection.execute(change)
    connection.execute(
        "PRAGMA writable_schema = ON;INSERT INTO sqlite_master VALUES ('index', ?, 'runs', ?, ?);",
        (index, root, sql),
    )
    connection.close()


async def test_a_damaged_index_page_hides_no_run_and_recover_keeps_them_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    await a_journal(path)
    overwrite_index_page(path, "sqlite_autoindex_runs_1")  # the index of run ids

    async with SQLiteStore.open(path) as store:
        assert await store.list_runs() == [a_run(n).summary() for n in range(RUNS)]  # a table scan
        with pytest.raises(CorruptDatabase):
            await store.get_run("r005")  # through the damaged index
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]

    async with SQLiteStore.open(path, recover=True) as store:
        assert await store.list_runs() == [a_run(n).summary() for n in range(RUNS)]
        assert await store.get_run("r005") == a_run(5)
        recovered = store.recovered_from

    moved_aside(recovered, path)
    assert recovered is not None  # narrows Optional (moved_aside checked it)
    assert recovered.action == "every run was copied into a fresh journal in its place"
    assert examine_journal(path).problems == ()


async def test_a_stale_index_is_rebuilt_in_place(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await a_journal(path)
    unlink_index_from_its_table(
        path, "runs_by_start", "UPDATE runs SET started_at = 'x' || started_at"
    )
    found = examine_journal(path).problems
    assert found[:2] == (
        "row 1 missing from index runs_by_start",
        "row 2 missing from index runs_by_start",
    )

    async with SQLiteStore.open(path, recover=True) as store:
        assert len(await store.list_runs()) == RUNS
        recovered = store.recovered_from

    assert recovered is not None  # narrows Optional: its exact fields are compared next
    assert (recovered.moved_to, recovered.action) == (
        None,
        "its indexes were rebuilt in place; no run was lost",
    )
    assert recovered.damage == "; ".join(found[:3]) + f" (and {len(found) - 3} more)"
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]
    assert examine_journal(path).problems == ()


async def test_a_run_that_cannot_be_decoded_is_named_and_the_others_listed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    await a_journal(path)
    edit(path, "UPDATE runs SET payload = '{\"fields\": ' WHERE run_id = 'r007'")

    async with SQLiteStore.open(path) as store:
        with pytest.raises(UnreadableRuns) as raised:
            await store.list_runs()
        assert await store.get_run("r008") == a_run(8)

    assert raised.value.readable == [a_run(n).summary() for n in range(RUNS) if n != 7]
    [(run_id, reason)] = raised.value.unreadable.items()
    assert run_id == "r007"
    assert reason.startswith("stored JSON cannot be read: ")
    assert str(raised.value) == (
        f"1 stored run(s) cannot be read and were left out (run 'r007': {reason}); "
        f"the other {RUNS - 1} run(s) are intact"
    )


async def test_get_run_names_the_run_that_cannot_be_decoded(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await a_journal(path)
    edit(path, "UPDATE runs SET payload = ? WHERE run_id = 'r007'", CODEC.encode([1, 2]))

    async with SQLiteStore.open(path) as store:
        with pytest.raises(
            CorruptJournal, match=r"^run 'r007' cannot be read: expected a RunRecord"
        ):
            await store.get_run("r007")
