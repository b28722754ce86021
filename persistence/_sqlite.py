"""The SQLite store: runs kept in a file, through apsw, in WAL mode.

Open it with ``async with SQLiteStore.open(path) as store:``. Opening
checks the file, migrates its schema to the current version
(:mod:`._schema`) and starts the journal writer (:mod:`._writer`), the one
actor every write goes through; leaving the block lets the writer finish
what is queued and closes the file.

Durability (``durability=``), both committing every write before the
awaited call returns:

* ``"normal"`` (the default): ``PRAGMA synchronous = NORMAL``. A committed
  write survives the process crashing or being killed; the last commits may
  be lost if the machine loses power or the OS crashes (the database stays
  consistent). Commits need no fsync, so they are fast.
* ``"full"``: ``PRAGMA synchronous = FULL``. Every commit is fsynced: it
  also survives power loss, at the cost of one fsync per write.

There is no weaker mode: no write is ever acknowledged before its commit.

Threads: a wait for a lock held by another process (``database is
locked`` is retried for ``busy_timeout_s``, 30 s by default, never taken
for corruption), an fsync or a WAL checkpoint never blocks the event loop.
The writer commits in a worker thread whenever one of them may happen:
always with ``"full"``, and with ``"normal"`` when the write lock is
taken; an uncontended ``"normal"`` commit needs none of them and runs in
the writer's task, saving the thread hand-off (see :mod:`._writer`). Reads
run in the caller's task on a second, read-only connection: in WAL mode
readers never wait for writers and read the last commit, and the queries
are short index lookups.

Files (see :mod:`._files`): a missing parent folder is created ``0700``
and the database ``0600`` (its ``-wal`` and ``-shm`` follow). Opening
reads the header, the first page and the schema, never the whole file, so
it costs the same at any size. Only a recognisable trioflow journal is
ever changed: anything else (a text file, another program's database,
``/dev/null``) raises :class:`NotAJournal` and is left untouched; a
journal newer than this code raises :class:`SchemaTooNew`. A damaged
journal raises :class:`CorruptDatabase`, when opening or whenever SQLite
meets the damage later (the message then quotes a full check of the
file), and is left in place, so every later open meets it again: nothing
starts an empty journal in its place on its own. ``recover=True`` checks
the whole file first and repairs it or moves it aside (:mod:`._health`);
:attr:`SQLiteStore.recovered_from` says what it did. Every other SQLite
failure (a lock held past the busy timeout, a full disk, a read-only
file or folder) is raised as one :class:`StoreError` naming the journal
(:mod:`._failures`).
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import apsw
import attrs
import trio
from trioflow.actors import ActorRef, TraceEvent, TraceSink, open_supervisor

from ._codec import CODEC, CorruptJournal
from ._failures import DAMAGE, DEFAULT_BUSY_TIMEOUT_S, CorruptDatabase, storage_error
from ._files import is_new, make_private, make_private_folder
from ._health import Recovery, check_file, problems, recover_journal, summary
from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._rows import decoded, run_row, summaries, trace_event
from ._schema import CURRENT_VERSION, migrate, schema_version
from ._store import StoreError, UnknownRun, require_same_run
from ._trusted import NO_TYPES, TrustedTypes
from ._writer import (
    AppendTrace,
    CreateRun,
    DeleteRun,
    ImmediateTransaction,
    JournalWriter,
    PutPause,
    PutStep,
    PutUsage,
    RenewLease,
    SwapRun,
    WriteRequest,
)

R = TypeVar("R")

Durability = Literal["normal", "full"]

_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}


class _DiscardTrace:
    """The writer's trace sink when the caller gives none: its events are not kept."""

    def record(self, event: TraceEvent) -> None:
        pass


class SQLiteStore:
    """Implements :class:`RunStore` in an SQLite file; see the module docstring.

    Made by :meth:`open`, never directly.
    """

    def __init__(
        self,
        path: Path,
        durability: Durability,
        busy_timeout_s: float,
        reader: apsw.Connection,
        writer: ActorRef[WriteRequest],
        recovered_from: Recovery | None,
    ) -> None:
        self.path = path
        self.durability = durability
        self.busy_timeout_s = busy_timeout_s
        #: With ``recover=True``: what was done with a damaged file (``None``: it was sound).
        self.recovered_from = recovered_from
        self._reader = reader
        self._writer = writer

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        recover: bool = False,
        durability: Durability = "normal",
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        trace: TraceSink | None = None,
    ) -> AsyncIterator[SQLiteStore]:
        """Open (creating or migrating) the journal at ``path``; see the module docstring.

        ``trace`` receives the writer actor's kernel events (by default they
        are discarded). Raises :class:`NotAJournal`, :class:`CorruptDatabase`,
        :class:`SchemaTooNew` or :class:`StoreError` as described there.
        """
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', got {durability!r}")
        if busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be >= 0, got {busy_timeout_s}")
        file = Path(path)
        busy_ms = round(busy_timeout_s * 1000)
        try:
            connection, recovered_from = await trio.to_thread.run_sync(
                _open_journal, file, recover, durability, busy_ms
            )
        except OSError as error:  # a folder, a missing permission, a full disk
            raise StoreError(f"cannot open the journal at {file}: {error}") from error
        except DAMAGE as error:
            raise CorruptDatabase(file, str(error)) from error
        except apsw.Error as error:
            raise storage_error(file, error, busy_timeout_s) from error
        reader: apsw.Connection | None = None
        try:
            try:
                reader = _connect(file, busy_ms)
                reader.execute("PRAGMA query_only = ON")
            except apsw.Error as error:
                raise storage_error(file, error, busy_timeout_s) from error
            async with open_supervisor("journal", trace or _DiscardTrace()) as supervisor:
                writer = supervisor.spawn(
                    "writer",
                    lambda: JournalWriter(
                        connection,
                        busy_timeout_ms=busy_ms,
                        commit_inline=durability == "normal",
                    ),
                )
                yield cls(file, durability, busy_timeout_s, reader, writer, recovered_from)
        finally:
            if reader is not None:
                reader.close()
            connection.close()

    # -- writes: encoded here, in the caller's task, then committed by the writer ----------

    async def create_run(self, run: RunRecord) -> None:
        await self._write(CreateRun(run_row(run)))

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        # Compared and written by the writer in one IMMEDIATE transaction: no other
        # connection, in this process or another, can write the run in between.
        require_same_run(expected, replacement)
        swapped = attrs.evolve(replacement, revision=expected.revision + 1)
        swap = SwapRun(run_row(swapped), expected.revision)
        return swapped if await self._write(swap) else None

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        # Compared (revision and epoch) and written in one statement by the writer.
        renewed = attrs.evolve(run, lease_expires_at=until)
        return renewed if await self._write(RenewLease(run_row(renewed))) else None

    # Fenced writes: the writer compares ``epoch`` in the statement that writes.

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(step, where=f"step {step.path!r}")
        with trio.CancelScope(shield=True):  # finishes even if the caller is cancelled
            await self._write(PutStep(step.run_id, step.path, payload, epoch))

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(entry, where="ledger")
        await self._write(PutUsage(entry.run_id, entry.key, payload, epoch))

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(pause, where=f"pause {pause.path!r}")
        await self._write(PutPause(pause.run_id, pause.path, payload, epoch))

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await self._write(AppendTrace(run_id, tuple(events), epoch))

    async def _write(self, request: WriteRequest) -> bool:
        try:
            applied = await self._writer.ask(request)
        except apsw.Error as error:
            raise await self._failure(error) from error
        return applied

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        return await self._write(DeleteRun(run_id, revision))

    # -- reads: the read-only connection, in the caller's task ----------------------------

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        found = await self._rows("SELECT payload FROM runs WHERE run_id = ?", (run_id,))
        if not found:
            raise UnknownRun(run_id)
        try:
            return decoded(found[0][0], RunRecord, types)
        except CorruptJournal as error:
            raise CorruptJournal(f"run {run_id!r} cannot be read: {error}") from error

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        """Runs' summaries, oldest first; :class:`UnreadableRuns` names any that cannot be read.

        One unreadable run does not hide the others: the error holds them.
        The page walks the ``runs_by_start`` index: it reads its own rows, not the table.
        """
        rows = await self._rows(
            "SELECT run_id, payload FROM runs ORDER BY started_at, rowid LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),
        )
        return summaries(rows)

    async def count_runs(self) -> int:
        rows = await self._rows("SELECT count(*) FROM runs")
        return int(rows[0][0])

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        return await self._payloads("steps", run_id, StepRecord, types)

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        return await self._payloads("pauses", run_id, PauseRecord, types)

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        return await self._payloads("ledger", run_id, LedgerEntry, NO_TYPES)

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        await self._require(run_id)
        rows = await self._rows(
            "SELECT kind, path, time, label, peer, detail FROM trace_events"
            " WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        return [trace_event(row) for row in rows]

    async def _payloads(
        self, table: str, run_id: str, kind: type[R], types: TrustedTypes
    ) -> list[R]:
        # ``table`` is one of this module's constants, never caller input.
        await self._require(run_id)
        rows = await self._rows(
            f"SELECT payload FROM {table} WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [decoded(payload, kind, types) for (payload,) in rows]

    async def _require(self, run_id: str) -> None:
        if not await self._rows("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
            raise UnknownRun(run_id)

    async def _rows(self, query: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._reader.execute(query, bindings).fetchall()
        except apsw.Error as error:
            raise await self._failure(error) from error

    async def _failure(self, error: apsw.Error) -> StoreError:
        """What SQLite's ``error`` means for the user; damage is described by a full check."""
        if not isinstance(error, DAMAGE):
            return storage_error(self.path, error, self.busy_timeout_s)
        busy_ms = round(self.busy_timeout_s * 1000)
        found = await trio.to_thread.run_sync(problems, self.path, busy_ms)
        return CorruptDatabase(self.path, summary(found) if found else str(error))


# -- opening: runs in a worker thread (it may wait for locks) -------------------------------


def _connect(path: Path, busy_ms: int) -> apsw.Connection:
    connection = apsw.Connection(str(path))
    # Before anything else: every statement, these checks included, waits for locks.
    connection.set_busy_timeout(busy_ms)
    return connection


def _open_journal(
    path: Path, recover: bool, durability: Durability, busy_ms: int
) -> tuple[apsw.Connection, Recovery | None]:
    """The write connection to a checked, current, private journal at ``path``."""
    make_private_folder(path.parent)
    try:
        check_file(path, busy_ms)
    except CorruptDatabase:
        if not recover:
            raise
    recovered_from = recover_journal(path, busy_ms) if recover and not is_new(path) else None
    make_private(path)
    connection = _connect(path, busy_ms)
    try:
        _prepare(connection, path, durability, busy_ms)
    except BaseException:
        connection.close()
        raise
    return connection, recovered_from


def _prepare(connection: apsw.Connection, path: Path, durability: Durability, busy_ms: int) -> None:
    """WAL mode, the durability's ``synchronous``, and the schema at the current version."""
    _use_wal(connection, path, busy_ms)
    connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
    connection.execute("PRAGMA foreign_keys = ON")
    found = schema_version(connection)
    if found != CURRENT_VERSION:
        try:
            with ImmediateTransaction(connection):  # one process migrates; the others wait
                migrate(connection, str(path))
        except apsw.SQLError as error:  # rolled back: the file is as it was
            raise StoreError(
                f"{path} says it is at journal schema version {found}, but its tables are not "
                f"that version's ({error}): was its user_version changed? It was left unchanged"
            ) from error


def _use_wal(connection: apsw.Connection, path: Path, busy_ms: int) -> None:
    """Put the database in WAL mode (a setting kept in the file) unless it is already.

    Switching needs an exclusive lock, and when two connections switch at
    once (two processes creating one file) SQLite answers the loser with
    "database is locked" at once, without its busy handler, to avoid a
    deadlock. That is contention too, so it is retried here until the busy
    timeout runs out.
    """
    (mode,) = connection.execute("PRAGMA journal_mode").fetchall()[0]
    deadline = time.monotonic() + busy_ms / 1000
    while mode != "wal":
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchall()[0]
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)  # a worker thread: the event loop runs on
            continue
        if mode != "wal":
            raise StoreError(f"{path}: SQLite cannot use WAL mode here (journal mode is {mode})")
