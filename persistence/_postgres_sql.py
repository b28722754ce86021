"""The PostgreSQL journal's statements, each run on a worker thread by the store.

Every write is one statement in autocommit (one round trip, committed
when it returns), its checks inside it:

* A compare-and-set (``swap_run``, ``renew_lease``, ``delete_run``) is an
  ``UPDATE``/``DELETE ... WHERE revision = ...``: PostgreSQL re-checks the
  condition on the newest row version after waiting for a concurrent
  writer of the row, so of two swaps from one read exactly one matches.
* A fenced write (step, pause, ledger entry, trace events) first locks the
  run's row ``FOR SHARE`` and compares its epoch, in the same statement
  that writes. The lock is what makes the fence hold under concurrency:
  a claim (an ``UPDATE`` of the row) waits for every fenced write in
  flight, and a fenced write that waited for a claim reads the claimed
  row, so it is refused. No write under an old epoch can commit after the
  claim that ended it.
* Each statement also reports whether the run exists, so ``UnknownRun``
  and ``StaleEpoch`` cost no second query.

Nothing here builds SQL from caller input: table and column names are
this module's constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trioflow.actors import TraceEvent

from ._store import StaleEpoch, UnknownRun
from ._writer import RunRow

if TYPE_CHECKING:
    import psycopg


_RUN_COLUMNS = (
    "run_id, pipeline_name, status, started_at, finished_at, payload, revision, owner, epoch,"
    " lease_expires_at"
)


def create_run(connection: psycopg.Connection[Any], row: RunRow) -> None:
    """Insert the run; ``ValueError`` if its id is taken."""
    inserted = connection.execute(
        f"INSERT INTO trioflow.runs ({_RUN_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (run_id) DO NOTHING RETURNING 1",
        row.columns(),
    ).fetchone()
    if inserted is None:
        raise ValueError(f"a run with id {row.run_id!r} is already stored")


def _changed_or_unknown(found: tuple[Any, ...] | None, run_id: str) -> bool:
    """``(existed, changed)`` as a statement below reports it: whether it changed the run."""
    existed, changed = found if found is not None else (False, 0)
    if not existed:
        raise UnknownRun(run_id)
    return bool(changed)


def swap_run(connection: psycopg.Connection[Any], row: RunRow, expected: int) -> bool:
    """Replace the run if its revision is ``expected``; whether it did.

    A worker's pick of the run (:mod:`._postgres_queue`) ends with it: the
    claim it was for, or any other change, makes the run's queue state new.
    """
    found = connection.execute(
        "WITH swap AS (UPDATE trioflow.runs SET pipeline_name = %s, status = %s,"
        " started_at = %s, finished_at = %s, payload = %s, revision = %s, owner = %s,"
        " epoch = %s, lease_expires_at = %s, picked_by = NULL, picked_until = NULL"
        " WHERE run_id = %s AND revision = %s RETURNING 1)"
        " SELECT EXISTS (SELECT 1 FROM trioflow.runs WHERE run_id = %s),"
        " (SELECT count(*) FROM swap)",
        (*row.columns()[1:], row.run_id, expected, row.run_id),
    ).fetchone()
    return _changed_or_unknown(found, row.run_id)


def renew_lease(connection: psycopg.Connection[Any], row: RunRow) -> bool:
    """Store the renewed lease if the run is still at ``row``'s revision and epoch."""
    found = connection.execute(
        "WITH renew AS (UPDATE trioflow.runs SET payload = %s, lease_expires_at = %s"
        " WHERE run_id = %s AND revision = %s AND epoch = %s RETURNING 1)"
        " SELECT EXISTS (SELECT 1 FROM trioflow.runs WHERE run_id = %s),"
        " (SELECT count(*) FROM renew)",
        (row.payload, row.lease_expires_at, row.run_id, row.revision, row.epoch, row.run_id),
    ).fetchone()
    return _changed_or_unknown(found, row.run_id)


def delete_run(connection: psycopg.Connection[Any], run_id: str, expected: int) -> bool:
    """Delete the run (its records go with it) if its revision is ``expected``."""
    found = connection.execute(
        "WITH gone AS (DELETE FROM trioflow.runs WHERE run_id = %s AND revision = %s"
        " RETURNING 1)"
        " SELECT EXISTS (SELECT 1 FROM trioflow.runs WHERE run_id = %s),"
        " (SELECT count(*) FROM gone)",
        (run_id, expected, run_id),
    ).fetchone()
    return _changed_or_unknown(found, run_id)


#: The fence: the run's row locked against claims, and its epoch.
_FENCE = "fence AS (SELECT epoch FROM trioflow.runs WHERE run_id = %(run_id)s FOR SHARE)"
_AT_EPOCH = "(%(epoch)s::bigint IS NULL OR fence.epoch = %(epoch)s::bigint)"
_OUTCOME = "SELECT (SELECT epoch FROM fence) IS NOT NULL, (SELECT epoch FROM fence)"

#: The keyed tables and their key column.
KEYED = {"steps": "path", "pauses": "path", "ledger": "key"}


def _upsert(table: str) -> str:
    key = KEYED[table]
    return (
        f"WITH {_FENCE}, put AS (INSERT INTO trioflow.{table} (run_id, {key}, payload)"
        f" SELECT %(run_id)s, %(key)s, %(payload)s FROM fence WHERE {_AT_EPOCH}"
        f" ON CONFLICT (run_id, {key}) DO UPDATE SET payload = excluded.payload"
        f" RETURNING 1) {_OUTCOME}, (SELECT count(*) FROM put)"
    )


_UPSERTS = {table: _upsert(table) for table in KEYED}


def _fenced(found: tuple[Any, ...] | None, run_id: str, epoch: int | None) -> None:
    """Raise what a fenced statement's ``(exists, run's epoch, ...)`` outcome means."""
    if found is None or not found[0]:
        raise UnknownRun(run_id)
    if epoch is not None and found[1] != epoch:
        raise StaleEpoch(run_id, epoch)


def put(
    connection: psycopg.Connection[Any],
    table: str,
    run_id: str,
    key: str,
    payload: str,
    epoch: int | None,
) -> None:
    """Insert or replace the record at ``(run_id, key)`` in ``table``, fenced by ``epoch``."""
    found = connection.execute(
        _UPSERTS[table], {"run_id": run_id, "key": key, "payload": payload, "epoch": epoch}
    ).fetchone()
    _fenced(found, run_id, epoch)


_APPEND_TRACE = (
    f"WITH {_FENCE}, put AS (INSERT INTO trioflow.trace_events"
    " (run_id, kind, path, time, label, peer, detail)"
    " SELECT %(run_id)s, e.kind, e.path, e.time, e.label, e.peer, e.detail FROM fence,"
    " unnest(%(kinds)s::text[], %(paths)s::text[], %(times)s::float8[], %(labels)s::text[],"
    " %(peers)s::text[], %(details)s::text[]) WITH ORDINALITY"
    " AS e(kind, path, time, label, peer, detail, n)"
    f" WHERE {_AT_EPOCH} ORDER BY e.n RETURNING 1) {_OUTCOME}, (SELECT count(*) FROM put)"
)


def append_trace(
    connection: psycopg.Connection[Any],
    run_id: str,
    events: Sequence[TraceEvent],
    epoch: int | None,
) -> None:
    """Append ``events`` to the run's trace, in order, fenced by ``epoch``."""
    found = connection.execute(
        _APPEND_TRACE,
        {
            "run_id": run_id,
            "epoch": epoch,
            "kinds": [event.kind.value for event in events],
            "paths": [event.path for event in events],
            "times": [event.time for event in events],
            "labels": [event.label for event in events],
            "peers": [event.peer for event in events],
            "details": [event.detail for event in events],
        },
    ).fetchone()
    _fenced(found, run_id, epoch)


# -- reads ------------------------------------------------------------------------------------


def run_payload(connection: psycopg.Connection[Any], run_id: str) -> Any:
    """The run's stored payload; :class:`UnknownRun` if there is none."""
    found = connection.execute(
        "SELECT payload FROM trioflow.runs WHERE run_id = %s", (run_id,)
    ).fetchone()
    if found is None:
        raise UnknownRun(run_id)
    return found[0]


def run_page(connection: psycopg.Connection[Any], limit: int | None, offset: int) -> list[Any]:
    """``(run_id, payload)`` of a page of runs, oldest first."""
    return connection.execute(
        "SELECT run_id, payload FROM trioflow.runs ORDER BY started_at, created LIMIT %s OFFSET %s",
        (limit, offset),
    ).fetchall()


def count_runs(connection: psycopg.Connection[Any]) -> int:
    found = connection.execute("SELECT count(*) FROM trioflow.runs").fetchone()
    return 0 if found is None else int(found[0])


def payloads_of(connection: psycopg.Connection[Any], table: str, run_id: str) -> list[Any]:
    """The run's payloads in ``table`` in first-write order; :class:`UnknownRun` if no run."""
    run_payload(connection, run_id)
    rows = connection.execute(
        f"SELECT payload FROM trioflow.{table} WHERE run_id = %s ORDER BY seq", (run_id,)
    ).fetchall()
    return [payload for (payload,) in rows]


def trace_rows(connection: psycopg.Connection[Any], run_id: str) -> list[Any]:
    """The run's trace rows in order; :class:`UnknownRun` if there is no run."""
    run_payload(connection, run_id)
    return connection.execute(
        "SELECT kind, path, time, label, peer, detail FROM trioflow.trace_events"
        " WHERE run_id = %s ORDER BY seq",
        (run_id,),
    ).fetchall()
