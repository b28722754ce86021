"""The journal writer: the one actor through which every SQLite write goes.

Why one writer: SQLite admits one writer at a time per file anyway; having a
single actor own the write connection turns concurrent writes from many
steps into one ordered queue (the actor's bounded mailbox gives
backpressure) and keeps the connection out of concurrent use. Callers
``ask`` it with a message carrying records the codec has already encoded
(in the caller's task, so a value that cannot be stored fails there and
nothing reaches the writer); the reply comes after the transaction is
committed, so an awaited write is durable when it returns.

Each message is one transaction, begun with ``BEGIN IMMEDIATE``: it takes
SQLite's write lock before reading anything, so the existence checks and
``seq`` numbers it reads cannot be overtaken by another process's commit
(a deferred transaction upgrading its read lock would fail with
``SQLITE_BUSY_SNAPSHOT`` at once, without waiting). While another
connection holds the lock, SQLite's busy timeout retries; ``database is
locked`` surfaces as :class:`apsw.BusyError` only once it runs out.

The transaction runs in a worker thread (:func:`trio.to_thread.run_sync`):
apsw releases the GIL inside SQLite, so waiting for a lock or for an fsync
(durability ``"full"``) never blocks the trio event loop. The actor handles
one message at a time, so the connection is used by one thread at a time.
Cancelling an ask waits for its transaction to finish (commit or rollback):
a write is never left half-done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import apsw
import attrs
import trio
from trioflow.actors import Actor, TraceEvent

from ._store import UnknownRun


@attrs.frozen
class RunRow:
    """A run's encoded record and the query columns taken from it."""

    run_id: str
    pipeline_name: str
    status: str
    started_at: str
    finished_at: str | None
    payload: str


@attrs.frozen
class CreateRun:
    """Insert a new run; ``ValueError`` if its id is taken."""

    row: RunRow


@attrs.frozen
class UpdateRun:
    """Replace a stored run; :class:`UnknownRun` if there is none."""

    row: RunRow


@attrs.frozen
class PutStep:
    """Insert or replace the completion record at ``(run_id, path)``."""

    run_id: str
    path: str
    payload: str


@attrs.frozen
class PutPause:
    """Insert or replace the pause at ``(run_id, path)``."""

    run_id: str
    path: str
    payload: str


@attrs.frozen
class PutUsage:
    """Insert or replace the ledger entry at ``(run_id, key)``."""

    run_id: str
    key: str
    payload: str


@attrs.frozen
class AppendTrace:
    """Append trace events to a run's trace."""

    run_id: str
    events: tuple[TraceEvent, ...]


WriteRequest = CreateRun | UpdateRun | PutStep | PutPause | PutUsage | AppendTrace


@contextmanager
def immediate_transaction(connection: apsw.Connection) -> Iterator[None]:
    """A write transaction holding SQLite's write lock from its first statement.

    Committed when the block ends, rolled back if it raises (the rollback
    also covers a failed ``COMMIT``, which leaves the transaction open).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if not connection.get_autocommit():
            connection.execute("ROLLBACK")
        raise


# Keyed upserts: a new key takes the run's next seq; an existing one keeps its
# seq (first-write order) and gets the new payload.
_UPSERT_STEP = """
    INSERT INTO steps (run_id, path, seq, payload)
    VALUES (?1, ?2, (SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE run_id = ?1), ?3)
    ON CONFLICT (run_id, path) DO UPDATE SET payload = excluded.payload
"""
_UPSERT_PAUSE = """
    INSERT INTO pauses (run_id, path, seq, payload)
    VALUES (?1, ?2, (SELECT coalesce(max(seq), 0) + 1 FROM pauses WHERE run_id = ?1), ?3)
    ON CONFLICT (run_id, path) DO UPDATE SET payload = excluded.payload
"""
_UPSERT_USAGE = """
    INSERT INTO ledger (run_id, key, seq, payload)
    VALUES (?1, ?2, (SELECT coalesce(max(seq), 0) + 1 FROM ledger WHERE run_id = ?1), ?3)
    ON CONFLICT (run_id, key) DO UPDATE SET payload = excluded.payload
"""


class JournalWriter(Actor[WriteRequest]):
    """Owns the write connection; applies each request in one committed transaction."""

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection

    async def receive(self, message: WriteRequest) -> None:
        await trio.to_thread.run_sync(self._transaction, message)

    def _transaction(self, message: WriteRequest) -> None:
        with immediate_transaction(self._connection):
            self._apply(message)

    def _apply(self, message: WriteRequest) -> None:
        connection = self._connection
        match message:
            case CreateRun(row):
                if self._exists(row.run_id):
                    raise ValueError(f"a run with id {row.run_id!r} is already stored")
                connection.execute(
                    "INSERT INTO runs (run_id, pipeline_name, status, started_at, finished_at,"
                    " payload) VALUES (?, ?, ?, ?, ?, ?)",
                    _run_columns(row),
                )
            case UpdateRun(row):
                connection.execute(
                    "UPDATE runs SET run_id = ?, pipeline_name = ?, status = ?, started_at = ?,"
                    " finished_at = ?, payload = ? WHERE run_id = ?",
                    (*_run_columns(row), row.run_id),
                )
                if connection.changes() == 0:
                    raise UnknownRun(row.run_id)
            case PutStep(run_id, path, payload):
                self._require(run_id)
                connection.execute(_UPSERT_STEP, (run_id, path, payload))
            case PutPause(run_id, path, payload):
                self._require(run_id)
                connection.execute(_UPSERT_PAUSE, (run_id, path, payload))
            case PutUsage(run_id, key, payload):
                self._require(run_id)
                connection.execute(_UPSERT_USAGE, (run_id, key, payload))
            case AppendTrace(run_id, events):
                self._require(run_id)
                self._append_trace(run_id, events)

    def _append_trace(self, run_id: str, events: tuple[TraceEvent, ...]) -> None:
        rows: list[Any] = self._connection.execute(
            "SELECT coalesce(max(seq), 0) FROM trace_events WHERE run_id = ?", (run_id,)
        ).fetchall()
        last: int = rows[0][0]
        self._connection.executemany(
            "INSERT INTO trace_events (run_id, seq, kind, path, time, label, peer, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, last + n, e.kind.value, e.path, e.time, e.label, e.peer, e.detail)
                for n, e in enumerate(events, start=1)
            ],
        )

    def _exists(self, run_id: str) -> bool:
        return bool(
            self._connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchall()
        )

    def _require(self, run_id: str) -> None:
        if not self._exists(run_id):
            raise UnknownRun(run_id)


def _run_columns(row: RunRow) -> tuple[str, str, str, str, str | None, str]:
    return (row.run_id, row.pipeline_name, row.status, row.started_at, row.finished_at, row.payload)
