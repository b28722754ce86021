"""The PostgreSQL journal's schema: its versions and the migrations between them.

The same concepts as the SQLite journal (:mod:`._schema`, version 5):
``runs`` with the lease columns (``owner``, ``epoch``,
``lease_expires_at``) and ``revision``, and per run its ``steps``,
``pauses``, ``ledger`` and ``trace_events``. Every table lives in the
PostgreSQL schema ``trioflow``, so the journal can share a database with
other applications. Differences, and why:

* ``seq`` (first-write order) is an identity column shared by all runs,
  not a per-run count: numbering per run would need the run's largest
  ``seq`` read under a lock, serialising every write of a run; a global
  sequence orders a run's records just as well.
* ``runs.created`` (identity) breaks ties of ``started_at`` in the list
  order, where SQLite uses the ``rowid``.
* ``runs.picked_by`` and ``runs.picked_until``: which worker picked a
  runnable run from the queue, and until when no other worker may pick
  it (:mod:`._postgres_queue`). Not part of the run's record: a pick is a
  hint that spares workers racing for one run, the claim that follows is
  the protocol's compare-and-set.
* A run's records go with it (``ON DELETE CASCADE``): a delete is one
  statement.
* Text columns compared or sorted (times, ids) are ``COLLATE "C"``: byte
  order, whatever the database's locale, so UTC ISO-8601 text sorts in
  time order as in SQLite.

The version is kept in ``trioflow.schema_version``. Migrations run in one
transaction holding an advisory lock, so processes opening one database at
once migrate it once; a migration is code, never edited once released.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._schema import SchemaTooNew

if TYPE_CHECKING:
    import psycopg

_V1 = """
CREATE TABLE trioflow.runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    finished_at TEXT COLLATE "C",
    payload TEXT NOT NULL,
    revision BIGINT NOT NULL,
    owner TEXT,
    epoch BIGINT NOT NULL,
    lease_expires_at TEXT COLLATE "C",
    created BIGINT GENERATED ALWAYS AS IDENTITY,
    picked_by TEXT,
    picked_until TEXT COLLATE "C"
);
CREATE INDEX runs_by_start ON trioflow.runs (started_at, created);
CREATE INDEX runs_runnable ON trioflow.runs (created)
    WHERE status IN ('queued', 'interrupted', 'running');
CREATE TABLE trioflow.steps (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES trioflow.runs (run_id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE INDEX steps_in_order ON trioflow.steps (run_id, seq);
CREATE TABLE trioflow.pauses (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES trioflow.runs (run_id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE INDEX pauses_in_order ON trioflow.pauses (run_id, seq);
CREATE TABLE trioflow.ledger (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES trioflow.runs (run_id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX ledger_in_order ON trioflow.ledger (run_id, seq);
CREATE TABLE trioflow.trace_events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES trioflow.runs (run_id) ON DELETE CASCADE,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    label TEXT NOT NULL,
    peer TEXT,
    detail TEXT,
    PRIMARY KEY (run_id, seq)
);
"""

#: ``MIGRATIONS[n]`` takes the journal from version ``n`` to ``n + 1``.
MIGRATIONS: Sequence[str] = (_V1,)

#: The schema version this code reads and writes.
CURRENT_VERSION = len(MIGRATIONS)

#: The advisory lock key migrations hold ("trioflow" in ASCII, as a number).
_MIGRATION_LOCK = 0x7472696F666C6F77


def migrate(connection: psycopg.Connection[Any], where: str) -> int:
    """Bring the journal at ``where`` to :data:`CURRENT_VERSION`; the version it was at.

    :class:`SchemaTooNew` for a journal newer than this code (left untouched).
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute("CREATE SCHEMA IF NOT EXISTS trioflow")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS trioflow.schema_version (version INTEGER NOT NULL)"
        )
        row = connection.execute("SELECT max(version) FROM trioflow.schema_version").fetchone()
        found = 0 if row is None or row[0] is None else int(row[0])
        if found > CURRENT_VERSION:
            raise SchemaTooNew(where, found, CURRENT_VERSION)
        for migration in MIGRATIONS[found:]:
            connection.execute(migration)
        if found != CURRENT_VERSION:
            connection.execute("DELETE FROM trioflow.schema_version")
            connection.execute(
                "INSERT INTO trioflow.schema_version VALUES (%s)", (CURRENT_VERSION,)
            )
    return found
