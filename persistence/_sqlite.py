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
locked`` is retried for ``busy_timeout_s``, never taken for corruption),
an fsync or a WAL checkpoint never blocks the event loop. The writer
commits in a worker thread whenever one of them may happen: always with
``"full"``, and with ``"normal"`` when the write lock is taken; an
uncontended ``"normal"`` commit needs none of them and runs in the
writer's task, saving the thread hand-off (see :mod:`._writer`). Reads
run in the caller's task on a second, read-only connection: in WAL mode
readers never wait for writers and read the last commit, and the queries
are short index lookups.

Files: the parent folder is created if needed. A file that is not a
database, or is damaged (caught by ``PRAGMA quick_check`` on open, which
reads the whole file once), is moved aside with its ``-wal``/``-shm``
files to ``NAME.corrupt-<UTC time>`` (a counter is added if that name is
taken; nothing is overwritten or deleted). Then :class:`CorruptDatabase`
says where it went, or, with ``recover=True``, a fresh database is started
at ``path`` and :attr:`SQLiteStore.recovered_from` holds that error. A
database newer than this code raises :class:`SchemaTooNew`; a valid
SQLite database that trioflow did not create raises :class:`StoreError`;
both files are left untouched.
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
from trioflow.actors import ActorRef, TraceEvent, TraceKind, TraceSink, open_supervisor

from ._codec import CODEC, CorruptJournal
from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._schema import CURRENT_VERSION, SchemaTooNew, migrate, schema_version, utc_text
from ._store import StoreError, UnknownRun, require_same_run
from ._writer import (
    AppendTrace,
    CreateRun,
    ImmediateTransaction,
    JournalWriter,
    PutPause,
    PutStep,
    PutUsage,
    RenewLease,
    RunRow,
    SwapRun,
    WriteRequest,
)

R = TypeVar("R")

Durability = Literal["normal", "full"]

_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}

#: The first bytes of every SQLite database file.
_HEADER = b"SQLite format 3\x00"

#: Files SQLite keeps next to a database; moved aside with it.
_COMPANIONS = ("-wal", "-shm", "-journal")


class CorruptDatabase(StoreError):
    """The file was not a readable SQLite database; it was moved to ``moved_to``."""

    def __init__(self, path: Path, moved_to: Path, reason: str) -> None:
        super().__init__(
            f"{path} is not a readable SQLite database ({reason}); it was moved aside to "
            f"{moved_to} (nothing was deleted). Open the store with recover=True to start "
            "a fresh database in its place."
        )
        self.path = path
        self.moved_to = moved_to
        self.reason = reason


class _Damaged(Exception):
    """Raised while checking a file: it is not a database or it is damaged."""


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
        reader: apsw.Connection,
        writer: ActorRef[WriteRequest],
        recovered_from: CorruptDatabase | None,
    ) -> None:
        self.path = path
        self.durability = durability
        #: With ``recover=True``: the corrupt file this store replaced (where it went).
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
        busy_timeout_s: float = 5.0,
        trace: TraceSink | None = None,
    ) -> AsyncIterator[SQLiteStore]:
        """Open (creating or migrating) the journal at ``path``; see the module docstring.

        ``trace`` receives the writer actor's kernel events (by default they
        are discarded). Raises :class:`CorruptDatabase`,
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
        reader: apsw.Connection | None = None
        try:
            reader = _connect(file, busy_ms)
            reader.execute("PRAGMA query_only = ON")
            async with open_supervisor("journal", trace or _DiscardTrace()) as supervisor:
                writer = supervisor.spawn(
                    "writer",
                    lambda: JournalWriter(
                        connection,
                        busy_timeout_ms=busy_ms,
                        commit_inline=durability == "normal",
                    ),
                )
                yield cls(file, durability, reader, writer, recovered_from)
        finally:
            if reader is not None:
                reader.close()
            connection.close()

    # -- writes: encoded here, in the caller's task, then committed by the writer ----------

    async def create_run(self, run: RunRecord) -> None:
        await self._writer.ask(CreateRun(_run_row(run)))

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        # Compared and written by the writer in one IMMEDIATE transaction: no other
        # connection, in this process or another, can write the run in between.
        require_same_run(expected, replacement)
        swapped = attrs.evolve(replacement, revision=expected.revision + 1)
        swap = SwapRun(_run_row(swapped), expected.revision)
        return swapped if await self._writer.ask(swap) else None

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        # Compared (revision and epoch) and written in one statement by the writer.
        renewed = attrs.evolve(run, lease_expires_at=until)
        return renewed if await self._writer.ask(RenewLease(_run_row(renewed))) else None

    # Fenced writes: the writer compares ``epoch`` in the statement that writes.

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(step, where=f"step {step.path!r}")
        with trio.CancelScope(shield=True):  # finishes even if the caller is cancelled
            await self._writer.ask(PutStep(step.run_id, step.path, payload, epoch))

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(entry, where="ledger")
        await self._writer.ask(PutUsage(entry.run_id, entry.key, payload, epoch))

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(pause, where=f"pause {pause.path!r}")
        await self._writer.ask(PutPause(pause.run_id, pause.path, payload, epoch))

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await self._writer.ask(AppendTrace(run_id, tuple(events), epoch))

    # -- reads: the read-only connection, in the caller's task ----------------------------

    async def get_run(self, run_id: str) -> RunRecord:
        rows = self._reader.execute("SELECT payload FROM runs WHERE run_id = ?", (run_id,))
        found = rows.fetchall()
        if not found:
            raise UnknownRun(run_id)
        return _decoded(found[0][0], RunRecord)

    async def list_runs(self) -> list[RunRecord]:
        rows = self._reader.execute("SELECT payload FROM runs ORDER BY started_at, rowid")
        return [_decoded(payload, RunRecord) for (payload,) in rows.fetchall()]

    async def steps_of(self, run_id: str) -> list[StepRecord]:
        return self._payloads("steps", run_id, StepRecord)

    async def pauses_of(self, run_id: str) -> list[PauseRecord]:
        return self._payloads("pauses", run_id, PauseRecord)

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        return self._payloads("ledger", run_id, LedgerEntry)

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        rows = self._reader.execute(
            "SELECT kind, path, time, label, peer, detail FROM trace_events"
            " WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        return [_trace_event(row) for row in rows.fetchall()]

    def _payloads(self, table: str, run_id: str, kind: type[R]) -> list[R]:
        # ``table`` is one of this module's constants, never caller input.
        self._require(run_id)
        rows = self._reader.execute(
            f"SELECT payload FROM {table} WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [_decoded(payload, kind) for (payload,) in rows.fetchall()]

    def _require(self, run_id: str) -> None:
        if not self._reader.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchall():
            raise UnknownRun(run_id)


def _run_row(run: RunRecord) -> RunRow:
    return RunRow(
        run.run_id,
        run.pipeline_name,
        run.status,
        utc_text(run.started_at),
        None if run.finished_at is None else utc_text(run.finished_at),
        CODEC.encode(run, where="run"),
        run.revision,
        run.owner,
        run.epoch,
        None if run.lease_expires_at is None else utc_text(run.lease_expires_at),
    )


def _decoded(payload: Any, kind: type[R]) -> R:
    if not isinstance(payload, str):
        raise CorruptJournal(f"expected a stored {kind.__name__} as text, read {payload!r}")
    record: Any = CODEC.decode(payload)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record


def _trace_event(row: tuple[Any, ...]) -> TraceEvent:
    kind, path, time, label, peer, detail = row
    try:
        known = TraceKind(kind)
    except ValueError:
        raise CorruptJournal(f"the journal holds a trace event of unknown kind {kind!r}") from None
    return TraceEvent(known, path, time, label, peer, detail)


# -- opening: runs in a worker thread (it may wait for locks and reads the whole file) ----


def _connect(path: Path, busy_ms: int) -> apsw.Connection:
    connection = apsw.Connection(str(path))
    # Before anything else: every statement, these checks included, waits for locks.
    connection.set_busy_timeout(busy_ms)
    return connection


def _open_journal(
    path: Path, recover: bool, durability: Durability, busy_ms: int
) -> tuple[apsw.Connection, CorruptDatabase | None]:
    """The write connection to a checked, current journal at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    recovered_from: CorruptDatabase | None = None
    try:
        _check(path, busy_ms)
    except _Damaged as damage:
        corrupt = CorruptDatabase(path, _move_aside(path), str(damage))
        if not recover:
            raise corrupt from damage.__cause__
        recovered_from = corrupt
    connection = _connect(path, busy_ms)
    try:
        _prepare(connection, path, durability, busy_ms)
    except BaseException:
        connection.close()
        raise
    return connection, recovered_from


def _check(path: Path, busy_ms: int) -> None:
    """Make sure ``path`` is absent, empty, or a sound database this code can read.

    Raises :class:`_Damaged` for a file that is not a database or is
    damaged, :class:`SchemaTooNew` or :class:`StoreError` (not ours). The
    check changes nothing: a file that does not start with SQLite's header
    is refused before SQLite opens it. The others are only read; when a
    ``-wal`` file exists the connection is read-only, because a read-write
    connection closing on a damaged database deletes its ``-wal`` file
    (without one, read-write is right: it removes the ``-wal`` and ``-shm``
    files it made itself when it closes).
    """
    size = path.stat().st_size if path.exists() else 0
    has_wal = _with_suffix(path, "-wal").exists()
    if size == 0 and not has_wal:
        return  # a new database
    if size > 0:
        with path.open("rb") as file:
            if file.read(len(_HEADER)) != _HEADER:
                raise _Damaged("file is not a database")
    flags = apsw.SQLITE_OPEN_READONLY if has_wal else apsw.SQLITE_OPEN_READWRITE
    connection = apsw.Connection(str(path), flags=flags)
    try:
        connection.set_busy_timeout(busy_ms)
        # One read transaction, so every check sees one snapshot even while another
        # process creates or migrates the database (tables and version change together).
        connection.execute("BEGIN")
        try:
            version = schema_version(connection)
            problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
        except (apsw.NotADBError, apsw.CorruptError) as error:
            raise _Damaged(str(error)) from error
        if problems != ["ok"]:
            raise _Damaged("; ".join(str(problem) for problem in problems))
        if version > CURRENT_VERSION:
            raise SchemaTooNew(str(path), version, CURRENT_VERSION)
        if version == 0:
            _require_empty(connection, path)
    finally:
        if not connection.get_autocommit():
            connection.execute("ROLLBACK")
        connection.close()


def _require_empty(connection: apsw.Connection, path: Path) -> None:
    """Refuse a version-0 database that already has tables: trioflow did not create it."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    ]
    if tables:
        raise StoreError(
            f"{path} is an SQLite database that trioflow did not create (schema version 0, "
            f"tables: {', '.join(str(table) for table in tables)}); it was left untouched"
        )


def _prepare(connection: apsw.Connection, path: Path, durability: Durability, busy_ms: int) -> None:
    """WAL mode, the durability's ``synchronous``, and the schema at the current version."""
    _use_wal(connection, path, busy_ms)
    connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
    connection.execute("PRAGMA foreign_keys = ON")
    if schema_version(connection) != CURRENT_VERSION:
        with ImmediateTransaction(connection):  # one process migrates; the others wait
            migrate(connection, str(path))


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


def _move_aside(path: Path) -> Path:
    """Move ``path`` and its companion files to a fresh ``NAME.corrupt-<UTC time>``.

    Hard links make each move refuse to overwrite (``os.rename`` would
    replace a file silently); where the filesystem has no hard links, a
    rename to a name checked to be free is used.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    counter = 0
    while True:
        name = f"{path.name}.corrupt-{stamp}" + (f".{counter}" if counter else "")
        target = path.with_name(name)
        counter += 1
        if any(_with_suffix(target, s).exists() for s in ("", *_COMPANIONS)):
            continue
        try:
            _move(path, target)
        except FileExistsError:  # taken since we looked: try the next name
            continue
        for suffix in _COMPANIONS:
            companion = _with_suffix(path, suffix)
            if companion.exists():
                _move(companion, _with_suffix(target, suffix))
        return target


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _move(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        if target.exists():
            raise FileExistsError(target) from None
        os.rename(source, target)
    else:
        os.unlink(source)
