"""Checking a journal's file whole, and recovering a damaged one.

A full check reads every page (``PRAGMA integrity_check``: about 2 s for
600 MB), so it is never part of opening a journal: opening costs the same
at 1 GB as at 1 MB. It runs where it is asked for (``trioflow doctor``,
:func:`examine_journal`) or needed: when SQLite reports damage during use (to say
what is damaged) and for ``--recover``.

Recovering (:func:`recover_journal`) keeps every run that can be read, in
order of preference:

1. ``REINDEX`` in place, when the damage is in indexes whose pages are
   sound (an index that disagrees with its table): nothing moves.
2. A copy: a fresh journal at the same schema version (built by this
   code's own migrations, never by SQL read from the damaged file) gets
   every row of every table, read by full table scans, which never read an
   index; the indexes are rebuilt as the rows go in. This saves all runs
   when only index pages are damaged. The damaged file is moved aside and
   the copy takes its place.
3. When a table itself cannot be read, the damaged file is moved aside
   and a fresh journal starts at its path.

Nothing is ever deleted: a moved file keeps its name with
``.corrupt-<UTC time>`` appended, with its ``-wal`` and ``-shm``.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import apsw
import attrs

from ._failures import DAMAGE, DEFAULT_BUSY_TIMEOUT_S, CorruptDatabase
from ._files import (
    NotAJournal,
    has_sqlite_header,
    is_new,
    looks_like_journal,
    make_private,
    move_aside,
    with_suffix,
)
from ._schema import CURRENT_VERSION, SchemaTooNew, migrate, schema_version
from ._store import StoreError

#: How many of a check's problems a message quotes.
QUOTED_PROBLEMS = 3


@attrs.frozen
class Recovery:
    """What ``recover=True`` did with a damaged journal."""

    path: Path
    #: The damage the full check found.
    damage: str
    #: Where the damaged file went; ``None`` when it was repaired in place.
    moved_to: Path | None
    #: What was done, in words.
    action: str

    def __str__(self) -> str:
        where = "" if self.moved_to is None else f"; the damaged file was moved to {self.moved_to}"
        return f"the journal {self.path} was damaged ({self.damage}): {self.action}{where}"


def check_file(path: Path, busy_ms: int) -> None:
    """Make sure ``path`` is absent, empty, or a journal this code can open.

    Reads the header, the first page and the schema, never the whole file.
    Raises :class:`NotAJournal` for anything that is not recognisably a
    trioflow journal, :class:`CorruptDatabase` for one SQLite cannot open,
    :class:`SchemaTooNew`, or :class:`StoreError`; in every case the file is
    left as it was. A file without SQLite's header is refused before SQLite
    opens it; the others are only read (see :func:`_reading`).
    """
    if is_new(path):
        return
    if path.stat().st_size > 0 and not has_sqlite_header(path):
        if looks_like_journal(path):
            raise CorruptDatabase(path, "file is not a database")
        raise NotAJournal(path, "it does not start as an SQLite database")
    connection = _reading(path, busy_ms)
    try:
        # One read transaction, so every check sees one snapshot even while another
        # process creates or migrates the database (tables and version change together).
        connection.execute("BEGIN")
        try:
            version = schema_version(connection)
            tables = _tables(connection)
        except DAMAGE as error:
            if looks_like_journal(path):
                raise CorruptDatabase(path, str(error)) from error
            raise NotAJournal(path, f"an SQLite file trioflow cannot read: {error}") from error
        _require_ours(path, version, tables)
    finally:
        if not connection.get_autocommit():
            connection.execute("ROLLBACK")
        connection.close()


def _tables(connection: apsw.Connection) -> list[str]:
    rows: list[Any] = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _require_ours(path: Path, version: int, tables: list[str]) -> None:
    """Refuse a database this code did not create, or that is newer than it."""
    if version > CURRENT_VERSION:
        raise SchemaTooNew(str(path), version, CURRENT_VERSION)
    if version == 0 and tables and "runs" not in tables:
        raise StoreError(
            f"{path} is an SQLite database that trioflow did not create (schema version 0, "
            f"tables: {', '.join(tables)}); it was left untouched"
        )
    if version > 0 and "runs" not in tables:
        raise NotAJournal(
            path, f"another program's SQLite database: version {version}, tables {tables}"
        )


def _reading(path: Path, busy_ms: int) -> apsw.Connection:
    """A connection to read ``path`` with, which leaves no file behind and deletes none.

    When a ``-wal`` file exists the connection is read-only, because a
    read-write connection closing on a damaged database deletes its
    ``-wal`` file, which holds the last commits. Without one, read-write
    is right: it removes the ``-wal`` and ``-shm`` files it made itself
    when it closes (a read-only one would leave them).
    """
    has_wal = with_suffix(path, "-wal").exists()
    flags = apsw.SQLITE_OPEN_READONLY if has_wal else apsw.SQLITE_OPEN_READWRITE
    connection = apsw.Connection(str(path), flags=flags)
    connection.set_busy_timeout(busy_ms)
    return connection


def problems(path: Path, busy_ms: int) -> list[str]:
    """What SQLite's full check finds wrong in the database at ``path`` (empty: sound).

    ``integrity_check`` reads every page and checks every index against its
    table (``quick_check`` would skip the latter: a stale index is damage
    too). The file is only read (see :func:`_reading`).
    """
    try:
        connection = _reading(path, busy_ms)
    except apsw.Error as error:
        return [str(error)]
    try:
        rows: list[Any] = connection.execute("PRAGMA integrity_check").fetchall()
    except DAMAGE as error:
        return [str(error)]
    finally:
        connection.close()
    found = [line for (text,) in rows for line in str(text).splitlines()]
    return [] if found == ["ok"] else [line for line in found if line != "*** in database main ***"]


@attrs.frozen
class JournalHealth:
    """What a full check (``trioflow doctor``) found in a journal."""

    path: Path
    #: What is wrong, as SQLite's check says it; empty when the journal is sound.
    problems: tuple[str, ...]
    #: How many runs it holds (``None`` when it is damaged).
    runs: int | None
    size_bytes: int

    @property
    def sound(self) -> bool:
        return not self.problems


def examine_journal(
    path: str | os.PathLike[str], *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
) -> JournalHealth:
    """Check every page of the journal at ``path`` (``trioflow doctor``); nothing is changed.

    Raises :class:`NotAJournal`, :class:`SchemaTooNew`, or :class:`StoreError`
    when there is no journal at ``path``.
    """
    path = Path(path)
    busy_ms = round(busy_timeout_s * 1000)
    if not path.exists():
        raise StoreError(f"there is no journal at {path}")
    size = path.stat().st_size
    if is_new(path):
        return JournalHealth(path, (), 0, size)
    try:
        check_file(path, busy_ms)
    except CorruptDatabase as damaged:
        return JournalHealth(path, (damaged.reason,), None, size)
    found = problems(path, busy_ms)
    if found:
        return JournalHealth(path, tuple(found), None, size)
    connection = _reading(path, busy_ms)
    try:
        counted: list[Any] = connection.execute("SELECT count(*) FROM runs").fetchall()
    finally:
        connection.close()
    return JournalHealth(path, (), int(counted[0][0]), size)


def summary(found: list[str]) -> str:
    """The first problems of a check, for a one-line message."""
    quoted = "; ".join(found[:QUOTED_PROBLEMS])
    more = len(found) - QUOTED_PROBLEMS
    return quoted + (f" (and {more} more)" if more > 0 else "")


def recover_journal(path: Path, busy_ms: int) -> Recovery | None:
    """Repair the journal at ``path``, or move it aside; ``None`` if it is sound.

    Run by ``recover=True`` before the store opens the file: see the module
    docstring for what is tried, in order.
    """
    found = problems(path, busy_ms)
    if not found:
        return None
    damage = summary(found)
    if _reindexed(path, busy_ms):
        return Recovery(path, damage, None, "its indexes were rebuilt in place; no run was lost")
    copy = with_suffix(path, f".recovering-{os.getpid()}")
    try:
        _copy_tables(path, copy, busy_ms)
    except BaseException as error:
        for suffix in ("", "-wal", "-shm"):
            with_suffix(copy, suffix).unlink(missing_ok=True)  # our own partial copy
        if not isinstance(error, DAMAGE):
            raise
        moved = move_aside(path)
        return Recovery(path, damage, moved, "its tables cannot be read; a fresh journal starts")
    moved = move_aside(path)
    os.rename(copy, path)
    return Recovery(path, damage, moved, "every run was copied into a fresh journal in its place")


def _reindexed(path: Path, busy_ms: int) -> bool:
    """Rebuild every index in place; whether the file is sound afterwards.

    Only tried on a file whose header and schema SQLite can read: a
    read-write connection closing on an unreadable one would delete its
    ``-wal`` file, which holds the last commits.
    """
    if not _schema_readable(path, busy_ms):
        return False
    try:
        connection = apsw.Connection(str(path))
        try:
            connection.set_busy_timeout(busy_ms)
            connection.execute("REINDEX")
        finally:
            connection.close()
    except DAMAGE:
        return False  # an index page itself is damaged: REINDEX cannot free it
    return not problems(path, busy_ms)


def _schema_readable(path: Path, busy_ms: int) -> bool:
    connection = _reading(path, busy_ms)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except DAMAGE:
        return False
    finally:
        connection.close()
    return True


def _copy_tables(damaged: Path, copy: Path, busy_ms: int) -> None:
    """Fill a fresh journal at ``copy`` with every row of ``damaged``, by table scans."""
    make_private(copy)
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    target = apsw.Connection(str(copy), flags=flags)
    try:
        target.set_busy_timeout(busy_ms)
        target.execute("ATTACH DATABASE ? AS damaged", (_read_only_uri(damaged),))
        stored: list[Any] = target.execute("PRAGMA damaged.user_version").fetchall()
        version = int(stored[0][0])
        target.execute("BEGIN IMMEDIATE")
        migrate(target, str(copy), to=version)
        for table in _created_tables(target):
            columns = ", ".join(f'"{name}"' for name in _columns(target, table))
            # ``WHERE 1`` keeps SQLite from copying the damaged indexes' pages as they are.
            target.execute(
                f'INSERT INTO main."{table}" ({columns}) '
                f'SELECT {columns} FROM damaged."{table}" WHERE 1'
            )
        target.execute("COMMIT")
        target.execute("DETACH DATABASE damaged")
        target.execute("PRAGMA journal_mode = WAL")
    finally:
        target.close()


def _read_only_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"


def _created_tables(connection: apsw.Connection) -> list[str]:
    """The tables of the fresh journal, parents first (created by this code's migrations)."""
    rows: list[Any] = connection.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY rowid"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _columns(connection: apsw.Connection, table: str) -> list[str]:
    rows: list[Any] = connection.execute(
        "SELECT name FROM pragma_table_info(?, 'main')", (table,)
    ).fetchall()
    return [str(name) for (name,) in rows]
