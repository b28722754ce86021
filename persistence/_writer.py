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

Where the transaction runs: in durability ``"normal"`` a commit writes to
the WAL without an fsync, so it cannot block for long unless it has to
wait for another connection's lock. The writer therefore first runs it
inline, in its own task, with a busy timeout of 0: if SQLite's write lock
is free the transaction commits there and then (no thread hand-off); if it
is taken (:class:`apsw.BusyError`), the attempt is rolled back, the busy
timeout is restored, and the transaction runs again in a worker thread
(:func:`trio.to_thread.run_sync`), where the wait for the other process
does not block the event loop. In durability ``"full"`` every commit
fsyncs, so every transaction runs in the worker thread. Either way the
actor handles one message at a time, so the connection is used by one
thread at a time. An inline transaction never yields to trio, so
cancellation cannot interrupt it; cancelling an ask whose transaction is
in the thread waits for it to finish (commit or rollback): a write is
never left half-done.

Checkpoints: SQLite's automatic WAL checkpoint (every 1000 pages) runs
inside the ``COMMIT`` that crosses the threshold and fsyncs the WAL and
the database, even with ``synchronous = NORMAL`` (milliseconds); inline,
that would stall the event loop. The writer replaces it with its own: a WAL hook notes the WAL's
size after every commit, and once it reaches :data:`CHECKPOINT_PAGES` the
writer runs ``PRAGMA wal_checkpoint(PASSIVE)`` in a worker thread before
its next transaction (so the commit that crossed the threshold is answered
at once). That keeps the WAL as bounded as SQLite's own would.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import apsw
import attrs
import trio
from trioflow.actors import Actor, Ask, TraceEvent

from ._store import StaleEpoch, UnknownRun


@attrs.frozen
class RunRow:
    """A run's encoded record and the query columns taken from it."""

    run_id: str
    pipeline_name: str
    status: str
    started_at: str
    finished_at: str | None
    payload: str
    revision: int
    owner: str | None
    epoch: int
    lease_expires_at: str | None

    def columns(
        self,
    ) -> tuple[str, str, str, str, str | None, str, int, str | None, int, str | None]:
        """The values in the runs table's column order (the SQLite and PostgreSQL schemas')."""
        return attrs.astuple(self, recurse=False)


@attrs.frozen
class CreateRun(Ask[bool]):
    """Insert a new run; ``ValueError`` if its id is taken."""

    row: RunRow


@attrs.frozen
class SwapRun(Ask[bool]):
    """Replace a stored run if its revision is still ``expected``; replies whether it did.

    :class:`UnknownRun` if there is no such run.
    """

    row: RunRow
    expected: int


@attrs.frozen
class RenewLease(Ask[bool]):
    """Store ``row`` (the run with its lease extended) if the run is still at its revision
    and epoch; replies whether it did. :class:`UnknownRun` if there is no such run."""

    row: RunRow


# The writes below are fenced when ``epoch`` is set: applied only if the run is at
# that epoch, else :class:`StaleEpoch` (see the store protocol).


@attrs.frozen
class PutStep(Ask[bool]):
    """Insert or replace the completion record at ``(run_id, path)``."""

    run_id: str
    path: str
    payload: str
    epoch: int | None = None


@attrs.frozen
class PutPause(Ask[bool]):
    """Insert or replace the pause at ``(run_id, path)``."""

    run_id: str
    path: str
    payload: str
    epoch: int | None = None


@attrs.frozen
class PutUsage(Ask[bool]):
    """Insert or replace the ledger entry at ``(run_id, key)``."""

    run_id: str
    key: str
    payload: str
    epoch: int | None = None


@attrs.frozen
class AppendTrace(Ask[bool]):
    """Append trace events to a run's trace."""

    run_id: str
    events: tuple[TraceEvent, ...]
    epoch: int | None = None


@attrs.frozen
class DeleteRun(Ask[bool]):
    """Delete a run and its records if its revision is still ``expected``; replies whether it did.

    :class:`UnknownRun` if there is no such run.
    """

    run_id: str
    expected: int


WriteRequest = (
    CreateRun | SwapRun | RenewLease | PutStep | PutPause | PutUsage | AppendTrace | DeleteRun
)

#: The tables holding a run's records, deleted before the run itself (their foreign keys).
_RUN_TABLES = ("trace_events", "ledger", "pauses", "steps")

#: WAL size, in pages, at which the writer checkpoints (SQLite's own auto-checkpoint default).
CHECKPOINT_PAGES = 1000


class ImmediateTransaction:
    """A write transaction holding SQLite's write lock from its first statement.

    ``with ImmediateTransaction(connection):`` begins it; it is committed
    when the block ends and rolled back if the block raises (the rollback
    also covers a failed ``COMMIT``, which leaves the transaction open). If
    ``BEGIN IMMEDIATE`` itself fails, no transaction was started. A class
    rather than a generator-based context manager: it wraps every journal
    write, and this is a microsecond cheaper each time.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self._connection
        try:
            if kind is None:
                connection.execute("COMMIT")
        finally:
            if not connection.get_autocommit():
                connection.execute("ROLLBACK")


# Keyed upserts: a new key takes the run's next seq; an existing one keeps its
# seq (first-write order) and gets the new payload.
#
# The fence is in the same statement: with an epoch (?4) that is not the run's,
# the new row's seq is NULL, so the NOT NULL constraint refuses the row before
# any conflict is resolved (SQLite checks NOT NULL first) and nothing is
# written. Why not ``INSERT ... SELECT ... WHERE``: an INSERT whose SELECT reads
# the table it writes (the seq) goes through a temporary table, which made
# every journal write some 15% slower; this costs one primary-key lookup.
_FENCED_SEQ = """CASE WHEN ?4 IS NULL OR (SELECT epoch FROM runs WHERE run_id = ?1) = ?4
        THEN (SELECT coalesce(max(seq), 0) + 1 FROM {table} WHERE run_id = ?1) END"""
_UPSERT_STEP = f"""
    INSERT INTO steps (run_id, path, seq, payload)
    VALUES (?1, ?2, {_FENCED_SEQ.format(table="steps")}, ?3)
    ON CONFLICT (run_id, path) DO UPDATE SET payload = excluded.payload
"""
_UPSERT_PAUSE = f"""
    INSERT INTO pauses (run_id, path, seq, payload)
    VALUES (?1, ?2, {_FENCED_SEQ.format(table="pauses")}, ?3)
    ON CONFLICT (run_id, path) DO UPDATE SET payload = excluded.payload
"""
_UPSERT_USAGE = f"""
    INSERT INTO ledger (run_id, key, seq, payload)
    VALUES (?1, ?2, {_FENCED_SEQ.format(table="ledger")}, ?3)
    ON CONFLICT (run_id, key) DO UPDATE SET payload = excluded.payload
"""


class JournalWriter(Actor[WriteRequest]):
    """Owns the write connection; applies each request in one committed transaction.

    ``commit_inline`` is true for durability ``"normal"``: a transaction is
    first tried in the actor's task, and only moved to a worker thread when
    it would have to wait for a lock (see the module docstring).
    ``busy_timeout_ms`` is how long the worker thread waits for a lock; the
    connection is set to it outside inline attempts.
    """

    def __init__(
        self, connection: apsw.Connection, *, busy_timeout_ms: int, commit_inline: bool
    ) -> None:
        self._connection = connection
        self._busy_timeout_ms = busy_timeout_ms
        self._commit_inline = commit_inline
        self._wal_pages = 0
        # A WAL hook takes the place of SQLite's auto-checkpoint (they share one slot).
        connection.set_wal_hook(self._note_wal_size)

    async def receive(self, message: WriteRequest) -> bool:
        """Commit ``message``; whether it was applied (false only for a lost compare-and-set)."""
        if self._wal_pages >= CHECKPOINT_PAGES:
            self._wal_pages = 0
            await trio.to_thread.run_sync(self._checkpoint)
        if self._commit_inline:
            applied = self._inline(message)
            if applied is not None:
                return applied
        return await trio.to_thread.run_sync(self._transaction, message)

    def _inline(self, message: WriteRequest) -> bool | None:
        """Commit ``message`` now unless that means waiting for a lock.

        Returns what :meth:`_transaction` returns, or ``None`` if it did not
        commit: with a busy timeout of 0, a lock held by another connection
        raises :class:`apsw.BusyError` at once; the transaction is then
        rolled back (nothing of it stays, no transaction stays open) and
        left to the worker thread.
        """
        connection = self._connection
        connection.set_busy_timeout(0)
        try:
            return self._transaction(message)
        except apsw.BusyError:
            return None
        finally:
            connection.set_busy_timeout(self._busy_timeout_ms)

    def _transaction(self, message: WriteRequest) -> bool:
        with ImmediateTransaction(self._connection):
            return self._apply(message)

    def _checkpoint(self) -> None:
        # PASSIVE never waits: frames a reader still needs are left for the next one.
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _note_wal_size(self, connection: apsw.Connection, database: str, pages: int) -> int:
        """The WAL hook: called after each commit with the WAL's size in pages."""
        self._wal_pages = pages
        return apsw.SQLITE_OK

    def _apply(self, message: WriteRequest) -> bool:
        """Apply ``message`` inside the open transaction; whether it changed the journal."""
        connection = self._connection
        match message:
            case CreateRun(row):
                if self._exists(row.run_id):
                    raise ValueError(f"a run with id {row.run_id!r} is already stored")
                connection.execute(
                    "INSERT INTO runs (run_id, pipeline_name, status, started_at, finished_at,"
                    " payload, revision, owner, epoch, lease_expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row.columns(),
                )
            case SwapRun(row, expected):
                return self._swap(row, expected)
            case RenewLease(row):
                return self._renew(row)
            case PutStep(run_id, path, payload, epoch):
                self._upsert(_UPSERT_STEP, run_id, path, payload, epoch)
            case PutPause(run_id, path, payload, epoch):
                self._upsert(_UPSERT_PAUSE, run_id, path, payload, epoch)
            case PutUsage(run_id, key, payload, epoch):
                self._upsert(_UPSERT_USAGE, run_id, key, payload, epoch)
            case AppendTrace(run_id, events, epoch):
                self._require_epoch(run_id, epoch)  # there may be no event to refuse it
                self._append_trace(run_id, events)
            case DeleteRun(run_id, expected):
                return self._delete(run_id, expected)
        return True

    def _swap(self, row: RunRow, expected: int) -> bool:
        """Replace the run's row if its revision is ``expected``, in one statement."""
        self._connection.execute(
            "UPDATE runs SET pipeline_name = ?, status = ?, started_at = ?, finished_at = ?,"
            " payload = ?, revision = ?, owner = ?, epoch = ?, lease_expires_at = ?"
            " WHERE run_id = ? AND revision = ?",
            (
                row.pipeline_name,
                row.status,
                row.started_at,
                row.finished_at,
                row.payload,
                row.revision,
                row.owner,
                row.epoch,
                row.lease_expires_at,
                row.run_id,
                expected,
            ),
        )
        return self._changed(row.run_id)

    def _renew(self, row: RunRow) -> bool:
        """Store the renewed lease if the run is at ``row``'s revision and epoch (one statement)."""
        self._connection.execute(
            "UPDATE runs SET payload = ?, lease_expires_at = ?"
            " WHERE run_id = ? AND revision = ? AND epoch = ?",
            (row.payload, row.lease_expires_at, row.run_id, row.revision, row.epoch),
        )
        return self._changed(row.run_id)

    def _changed(self, run_id: str) -> bool:
        """Whether the last statement changed the run's row; :class:`UnknownRun` if none exists."""
        if self._connection.changes() == 1:
            return True
        self._require(run_id)
        return False

    def _delete(self, run_id: str, expected: int) -> bool:
        """Delete the run's records, then the run, if its revision is ``expected``."""
        connection = self._connection
        rows: list[Any] = connection.execute(
            "SELECT revision FROM runs WHERE run_id = ?", (run_id,)
        ).fetchall()
        if not rows:
            raise UnknownRun(run_id)
        if rows[0][0] != expected:
            return False
        for table in _RUN_TABLES:  # one of this module's constants, never caller input
            connection.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        connection.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        return True

    def _upsert(
        self, statement: str, run_id: str, key: str, payload: str, epoch: int | None
    ) -> None:
        """One keyed upsert, fenced by ``epoch`` when given (see ``_FENCED_SEQ``).

        :class:`UnknownRun` if ``run_id`` names no stored run, :class:`StaleEpoch`
        if the run is not at ``epoch``. The run is checked by the statement
        itself: by the schema's foreign key (enforced on this connection:
        ``PRAGMA foreign_keys = ON``) and by the fence, rather than by a query
        of our own before it. They are the only constraints these upserts can
        break: a key already stored becomes an update, and the ``seq`` taken is
        one past the run's largest (or NULL when fenced out).
        """
        try:
            self._connection.execute(statement, (run_id, key, payload, epoch))
        except apsw.ConstraintError as error:
            # A documented attribute that apsw's type stubs do not declare.
            kind = error.extendedresult  # type: ignore[attr-defined]
            if kind == apsw.SQLITE_CONSTRAINT_FOREIGNKEY:
                raise UnknownRun(run_id) from None
            if kind != apsw.SQLITE_CONSTRAINT_NOTNULL or epoch is None:
                raise
            self._require(run_id)  # a missing run fails the fence too
            raise StaleEpoch(run_id, epoch) from None

    def _require_epoch(self, run_id: str, epoch: int | None) -> None:
        """:class:`UnknownRun` for a missing run; :class:`StaleEpoch` if not at ``epoch``."""
        rows: list[Any] = self._connection.execute(
            "SELECT epoch FROM runs WHERE run_id = ?", (run_id,)
        ).fetchall()
        if not rows:
            raise UnknownRun(run_id)
        if epoch is not None and rows[0][0] != epoch:
            raise StaleEpoch(run_id, epoch)

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
