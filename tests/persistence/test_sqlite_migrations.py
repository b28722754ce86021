"""Schema versions: every earlier version migrates forward with its data intact.

For each version ``v`` below the current one, a database is built with the
migrations up to ``v`` and filled the way a store of that version wrote
it; opening it with :class:`SQLiteStore` must bring it to the current
version with every record readable through the store protocol.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest
import trio
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import (
    CODEC,
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunSummary,
    SchemaTooNew,
    SQLiteStore,
    StaleEpoch,
    StepRecord,
)
from trioflow.persistence._schema import CURRENT_VERSION, MIGRATIONS, migrate, schema_version

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
STARTED = datetime.datetime(2026, 3, 1, 15, 30, tzinfo=IST)
FINISHED = datetime.datetime(2026, 3, 1, 15, 45, 30, 5, tzinfo=IST)

DONE = RunRecord(
    "done",
    "invoices",
    "completed",
    STARTED,
    {"topic": "trio"},
    finished_at=FINISHED,
    output={"total": "12.10"},
    total_cost_usd="0.03",
    input_tokens=20,
    output_tokens=10,
)
RUNNING = RunRecord("running", "invoices", "paused", STARTED + datetime.timedelta(hours=1), "in")
STEPS = [
    StepRecord("done", "main/0:draft", "draft", True, "text", 1, "0.01", 10, 5),
    StepRecord("done", "main/1:check", "check", True, ("ok",), 2, "0.02", 10, 5),
]
PAUSE = PauseRecord("running", "main/0:approve", "approve?", {"type": "boolean"}, STARTED)
ENTRY = LedgerEntry("done", "main/0:draft#1#1", "main/0:draft", "0.01", 10, 5)
EVENT = TraceEvent(TraceKind.NOTE, "run", 0.5, "seeded")  # of run "done"


def utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds")


#: The run record's fields that version 5 added, and their defaults.
LEASE_FIELDS = {"owner": None, "epoch": 0, "lease_expires_at": None}


def written_before_leases(run: RunRecord) -> str:
    """``run`` encoded as trioflow wrote it before version 5: no lease fields."""
    document = json.loads(CODEC.encode(run))
    for name, default in LEASE_FIELDS.items():
        assert document["fields"].pop(name) == default  # the fields this encoding leaves out
    return json.dumps(document)


def written_before_revisions(run: RunRecord) -> str:
    """``run`` encoded as trioflow wrote it before version 4: no ``revision`` field either."""
    document = json.loads(written_before_leases(run))
    assert document["fields"].pop("revision") == 0  # the field this encoding leaves out
    return json.dumps(document)


def _seed_nothing(connection: apsw.Connection) -> None:
    pass


def _seed_v1(connection: apsw.Connection) -> None:
    """What a version-1 store wrote: runs without finished_at, and steps."""
    for run in (DONE, RUNNING):
        connection.execute(
            "INSERT INTO runs (run_id, pipeline_name, status, started_at, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.pipeline_name,
                run.status,
                utc(run.started_at),
                written_before_revisions(run),
            ),
        )
    for seq, step in enumerate(STEPS, start=1):
        connection.execute(
            "INSERT INTO steps (run_id, path, seq, payload) VALUES (?, ?, ?, ?)",
            (step.run_id, step.path, seq, CODEC.encode(step)),
        )


def _seed_v2(connection: apsw.Connection) -> None:
    """What a version-2 store wrote: runs with finished_at, steps, pauses, the ledger."""
    for run in (DONE, RUNNING):
        finished = utc(run.finished_at) if run.finished_at else None
        connection.execute(
            "INSERT INTO runs (run_id, pipeline_name, status, started_at, finished_at, payload)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.pipeline_name,
                run.status,
                utc(run.started_at),
                finished,
                written_before_revisions(run),
            ),
        )
    for seq, step in enumerate(STEPS, start=1):
        connection.execute(
            "INSERT INTO steps (run_id, path, seq, payload) VALUES (?, ?, ?, ?)",
            (step.run_id, step.path, seq, CODEC.encode(step)),
        )
    connection.execute(
        "INSERT INTO pauses (run_id, path, seq, payload) VALUES (?, ?, 1, ?)",
        (PAUSE.run_id, PAUSE.path, CODEC.encode(PAUSE)),
    )
    connection.execute(
        "INSERT INTO ledger (run_id, key, seq, payload) VALUES (?, ?, 1, ?)",
        (ENTRY.run_id, ENTRY.key, CODEC.encode(ENTRY)),
    )


def _seed_v3(connection: apsw.Connection) -> None:
    """What a version-3 store wrote: everything version 2 did, and trace events."""
    _seed_v2(connection)
    connection.execute(
        "INSERT INTO trace_events (run_id, seq, kind, path, time, label, peer, detail)"
        " VALUES (?, 1, ?, ?, ?, ?, NULL, NULL)",
        ("done", EVENT.kind.value, EVENT.path, EVENT.time, EVENT.label),
    )


#: The run a crash left ``running`` before leases existed, claimed twice by then.
CRASHED = RunRecord("crashed", "invoices", "running", STARTED, "in", revision=2)


def _seed_v4(connection: apsw.Connection) -> None:
    """What a version-4 store wrote: everything version 3 did, and revisions."""
    _seed_v3(connection)
    connection.execute(
        "INSERT INTO runs (run_id, pipeline_name, status, started_at, payload, revision)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            CRASHED.run_id,
            CRASHED.pipeline_name,
            CRASHED.status,
            utc(CRASHED.started_at),
            written_before_leases(CRASHED),
            CRASHED.revision,
        ),
    )


#: How a store of each earlier version filled its database (version 0 is an empty file).
SEEDERS: dict[int, Callable[[apsw.Connection], None]] = {
    0: _seed_nothing,
    1: _seed_v1,
    2: _seed_v2,
    3: _seed_v3,
    4: _seed_v4,
}

#: The tables each version has.
TABLES = {
    0: [],
    1: ["runs", "steps"],
    2: ["ledger", "pauses", "runs", "steps"],
    3: ["ledger", "pauses", "runs", "steps", "trace_events"],
    4: ["ledger", "pauses", "runs", "steps", "trace_events"],
    5: ["ledger", "pauses", "runs", "steps", "trace_events"],
}


def database_at(path: Path, version: int) -> None:
    """A database at ``version``, built by the migrations up to it and filled as then."""
    connection = apsw.Connection(str(path))
    connection.execute("BEGIN IMMEDIATE")
    assert migrate(connection, str(path), to=version) == 0
    SEEDERS[version](connection)
    connection.execute("COMMIT")
    connection.close()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = apsw.Connection(str(path))
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def tables(path: Path) -> list[str]:
    return [
        str(name)
        for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
    ]


def schema(path: Path) -> list[tuple[Any, ...]]:
    return rows(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


def test_every_earlier_version_has_a_seeder_and_every_version_its_tables() -> None:
    assert CURRENT_VERSION == len(MIGRATIONS) == 5
    assert sorted(SEEDERS) == list(range(CURRENT_VERSION))
    assert sorted(TABLES) == list(range(CURRENT_VERSION + 1))


def test_each_migration_takes_the_database_one_version_up(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    connection = apsw.Connection(str(path))
    for version in range(CURRENT_VERSION + 1):
        connection.execute("BEGIN IMMEDIATE")
        assert migrate(connection, str(path), to=version) == max(version - 1, 0)
        connection.execute("COMMIT")
        assert schema_version(connection) == version
        assert tables(path) == TABLES[version]
    connection.close()


@pytest.mark.parametrize("version", range(CURRENT_VERSION))
async def test_a_database_of_an_earlier_version_migrates_with_its_data(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "runs.db"
    database_at(path, version)
    fresh = tmp_path / "fresh.db"
    async with SQLiteStore.open(fresh):
        pass

    async with SQLiteStore.open(path) as store:
        if version == 0:
            assert await store.list_runs() == []
        else:
            crashed = [CRASHED] if version >= 4 else []
            expected = [DONE, *crashed, RUNNING]
            assert await store.list_runs() == [run.summary() for run in expected]
            assert await store.get_run("done") == DONE
            assert await store.steps_of("done") == STEPS
            assert await store.steps_of("running") == []
            assert await store.pauses_of("running") == ([PAUSE] if version >= 2 else [])
            assert await store.ledger_of("done") == ([ENTRY] if version >= 2 else [])
            seeded = [EVENT]
            assert await store.trace_of("done") == (seeded if version >= 3 else [])
            # New records follow the migrated ones.
            later = StepRecord("done", "main/2:send", "send", True, None, 1, "0", 0, 0)
            await store.record_step(later)
            await store.record_step(STEPS[0])
            assert await store.steps_of("done") == [*STEPS, later]
            event = TraceEvent(TraceKind.NOTE, "run", 1.0, "migrated")
            await store.save_trace("done", [event])
            assert await store.trace_of("done") == [*(seeded if version >= 3 else []), event]

    assert rows(path, "PRAGMA user_version") == [(CURRENT_VERSION,)]
    assert schema(path) == schema(fresh)
    if version > 0:
        crashed_row = [("crashed", None)] if version >= 4 else []
        assert rows(path, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == [
            *crashed_row,
            ("done", "2026-03-01T10:15:30.000005+00:00"),
            ("running", None),
        ]


@pytest.mark.parametrize("version", range(1, CURRENT_VERSION))
async def test_a_run_stored_before_revisions_reads_at_revision_0_and_is_swapped_once(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "runs.db"
    database_at(path, version)

    async with SQLiteStore.open(path) as store:
        read = await store.get_run("running")
        assert read == RUNNING
        assert read.revision == 0
        claim = attrs.evolve(read, status="running", paused_at=())
        claimed = attrs.evolve(claim, revision=1)
        assert await store.swap_run(read, claim) == claimed
        assert await store.swap_run(read, attrs.evolve(read, status="failed")) is None
        assert await store.get_run("running") == claimed
        assert await store.get_run("done") == DONE

    crashed_row = [("crashed", "running", 2)] if version >= 4 else []
    assert rows(path, "SELECT run_id, status, revision FROM runs ORDER BY run_id") == [
        *crashed_row,
        ("done", "completed", 0),
        ("running", "running", 1),
    ]


@pytest.mark.parametrize("version", range(1, CURRENT_VERSION))
async def test_a_run_stored_before_leases_has_no_owner_at_epoch_0_and_is_claimed_at_once(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "runs.db"
    database_at(path, version)
    until = STARTED + datetime.timedelta(minutes=5)
    step = StepRecord("running", "main/0:draft", "draft", True, "text", 1, "0", 0, 0)

    async with SQLiteStore.open(path) as store:
        read = await store.get_run("running")
        assert (read.owner, read.epoch, read.lease_expires_at) == (None, 0, None)
        assert not read.leased_at(STARTED)  # no lease to wait for: its process is long gone
        claimed = await store.swap_run(read, read.claimed_by("new owner", until))
        assert claimed == attrs.evolve(
            read, owner="new owner", epoch=1, lease_expires_at=until, revision=1
        )
        with pytest.raises(StaleEpoch):
            await store.record_step(step, epoch=0)
        await store.record_step(step, epoch=1)
        assert await store.steps_of("running") == [step]

    assert rows(
        path, "SELECT run_id, owner, epoch, lease_expires_at FROM runs ORDER BY run_id"
    ) == [
        *([("crashed", None, 0, None)] if version >= 4 else []),
        ("done", None, 0, None),
        ("running", "new owner", 1, "2026-03-01T10:05:00.000000+00:00"),
    ]


async def test_a_failed_migration_leaves_the_database_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    database_at(path, 1)
    editor = apsw.Connection(str(path))
    editor.execute("UPDATE runs SET payload = 'not json' WHERE run_id = 'running'")
    editor.close()

    with pytest.raises(json.JSONDecodeError):
        async with SQLiteStore.open(path):
            pass

    assert rows(path, "PRAGMA user_version") == [(1,)]
    assert tables(path) == TABLES[1]
    assert rows(path, "SELECT count(*) FROM steps") == [(2,)]


async def test_two_stores_opening_an_old_database_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    database_at(path, 1)
    found: list[list[RunSummary]] = []

    async def open_and_list() -> None:
        async with SQLiteStore.open(path) as store:
            found.append(await store.list_runs())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_and_list)
        nursery.start_soon(open_and_list)

    assert found == [[DONE.summary(), RUNNING.summary()]] * 2
    assert rows(path, "PRAGMA user_version") == [(CURRENT_VERSION,)]


async def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(DONE)
    editor = apsw.Connection(str(path))
    editor.execute(f"PRAGMA user_version = {CURRENT_VERSION + 1}")
    editor.close()
    before = path.read_bytes()

    with pytest.raises(SchemaTooNew) as raised:
        async with SQLiteStore.open(path):
            pass

    assert str(raised.value) == (
        f"{path} has journal schema version 6, newer than version 5, the newest this "
        "trioflow knows; open it with a newer trioflow (the file was left untouched)"
    )
    assert (raised.value.found, raised.value.supported) == (6, 5)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


def test_migrate_refuses_to_go_down(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    database_at(path, 2)
    connection = apsw.Connection(str(path))

    with pytest.raises(SchemaTooNew) as raised:
        migrate(connection, str(path), to=1)

    assert (raised.value.found, raised.value.supported) == (2, 1)
    assert schema_version(connection) == 2
    connection.close()
