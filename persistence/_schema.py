"""The SQLite journal's schema: its versions and the migrations between them.

The version is the database's ``PRAGMA user_version``; a fresh file is
version 0. ``MIGRATIONS[n]`` takes a database from version ``n`` to
``n + 1``, so every database, whatever version it was written at, is
brought to :data:`CURRENT_VERSION` by running the migrations after its own
version in order. Migrations are code, never edited once released: a change
to the schema is a new migration appended to the list, with a test that
migrates a database of every earlier version with its data intact.

History:

1. ``runs`` (the run's query columns and its whole encoded record) and
   ``steps`` (one completion record per step path).
2. ``pauses`` and ``ledger``; ``runs.finished_at``, filled in from each
   stored run's record.
3. ``trace_events``, one row per kernel trace event.
4. ``runs.revision``, the run record's revision, which a compare-and-set
   (``SQLiteStore.swap_run``) compares in its ``WHERE`` clause. Runs
   stored before it are at revision 0, as their records read (they have
   no ``revision`` field, and the codec gives a missing field its default).
5. ``runs.owner``, ``runs.epoch`` and ``runs.lease_expires_at``: the run's
   lease (see :mod:`._store`). Every fenced write compares ``epoch`` in the
   same statement that writes. Runs stored before it have no owner and are
   at epoch 0, as their records read.

Every table keeps the whole encoded record in ``payload`` (the codec's
JSON); the other columns repeat parts of it for listing and filtering.
Timestamps in query columns are UTC ISO-8601 text with microseconds, so
they sort in time order as text. ``seq`` numbers a run's records in the
order they were first written (1, 2, 3...); replacing a record keeps its
``seq``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from ._store import StoreError

Migration = Callable[[apsw.Connection], None]


class SchemaTooNew(StoreError):
    """The database was written by a newer trioflow than this one.

    Opening it is refused (the file is left untouched): this code does not
    know the newer schema and would misread or damage it.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"{path} has journal schema version {found}, newer than version {supported}, "
            "the newest this trioflow knows; open it with a newer trioflow "
            "(the file was left untouched)"
        )
        self.path = path
        self.found = found
        self.supported = supported


def utc_text(moment: datetime.datetime) -> str:
    """``moment`` as the text of a query column: UTC, ISO-8601, with microseconds.

    A naive datetime is kept as it is (it has no offset to convert).
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.isoformat(timespec="microseconds")


def _v1_runs_and_steps(connection: apsw.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            pipeline_name TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX runs_by_start ON runs (started_at);
        CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            path TEXT NOT NULL,
            seq INTEGER NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, path)
        );
        CREATE UNIQUE INDEX steps_in_order ON steps (run_id, seq);
        """
    )


def _v2_pauses_ledger_finished_at(connection: apsw.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE pauses (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            path TEXT NOT NULL,
            seq INTEGER NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, path)
        );
        CREATE UNIQUE INDEX pauses_in_order ON pauses (run_id, seq);
        CREATE TABLE ledger (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        );
        CREATE UNIQUE INDEX ledger_in_order ON ledger (run_id, seq);
        ALTER TABLE runs ADD COLUMN finished_at TEXT;
        """
    )
    # Read from the version-1 payload itself (an encoded RunRecord), not through
    # today's record classes: this migration must keep working when they change.
    rows: list[Any] = connection.execute("SELECT run_id, payload FROM runs").fetchall()
    for run_id, payload in rows:
        finished = json.loads(payload)["fields"].get("finished_at")
        if finished is not None:
            moment = datetime.datetime.fromisoformat(finished["$datetime"])
            connection.execute(
                "UPDATE runs SET finished_at = ? WHERE run_id = ?", (utc_text(moment), run_id)
            )


def _v3_trace_events(connection: apsw.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE trace_events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            time REAL NOT NULL,
            label TEXT NOT NULL,
            peer TEXT,
            detail TEXT,
            PRIMARY KEY (run_id, seq)
        );
        """
    )


def _v4_run_revision(connection: apsw.Connection) -> None:
    connection.execute("ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")


def _v5_run_lease(connection: apsw.Connection) -> None:
    connection.execute(
        """
        ALTER TABLE runs ADD COLUMN owner TEXT;
        ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN lease_expires_at TEXT;
        """
    )


#: ``MIGRATIONS[n]`` migrates a database from version ``n`` to ``n + 1``.
MIGRATIONS: Sequence[Migration] = (
    _v1_runs_and_steps,
    _v2_pauses_ledger_finished_at,
    _v3_trace_events,
    _v4_run_revision,
    _v5_run_lease,
)

#: The schema version this code reads and writes.
CURRENT_VERSION = len(MIGRATIONS)


def schema_version(connection: apsw.Connection) -> int:
    """The database's ``PRAGMA user_version``."""
    rows: list[Any] = connection.execute("PRAGMA user_version").fetchall()
    version: int = rows[0][0]
    return version


def migrate(connection: apsw.Connection, path: str, *, to: int = CURRENT_VERSION) -> int:
    """Bring the database to version ``to``; return the version it was at.

    Runs inside the caller's write transaction (``BEGIN IMMEDIATE``), so
    two processes opening one file at once migrate it once, and a failed
    migration leaves the database at its old version. Raises
    :class:`SchemaTooNew` for a database newer than ``to``.
    """
    found = schema_version(connection)
    if found > to:
        raise SchemaTooNew(path, found, to)
    for migration in MIGRATIONS[found:to]:
        migration(connection)
    if found != to:
        # A pragma takes no bound parameters; ``to`` is an int.
        connection.execute(f"PRAGMA user_version = {int(to)}")
    return found
