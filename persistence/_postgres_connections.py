"""Connections to a PostgreSQL journal, used from trio: psycopg's sync API on worker threads.

Why threads: psycopg 3's async API runs on asyncio only; its sync API
blocks the calling thread, so every database call runs in a worker thread
(:func:`trio.to_thread.run_sync`) on a connection that thread alone uses
for the call. Why a small pool rather than a connection per call or one
connection: see ``bench/workloads/postgres_journal.py``, which measures the
three (opening a connection per call costs a full connect and
authentication per write; one connection serialises every run's writes
behind one round trip at a time; a few connections let concurrent runs'
round trips overlap).

Bounded calls: a call on a thread cannot be cancelled, so every session
sets ``statement_timeout`` (which also bounds lock waits) and connecting
has a ``connect_timeout``. Cancelling a task that waits for a call waits
for the call to end, committed or rolled back: at most the statement
timeout (plus the connect timeout when the call had to connect first).
That is what a cancel waits for, never longer, and a write is never
left half-done.

Failures: a connection the server ended while it was idle (a restart)
is noticed before it is used and replaced; one that breaks during a call
is discarded and the next call connects afresh, and the call that met it
raises :class:`~trioflow.persistence.StoreError` naming the database
(never its password). Whether that call's write was committed is unknown
to the caller, which is why every journal write is idempotent (keyed
upserts, compare-and-sets on revisions) and safe to repeat.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import trio

from ._store import StoreError

T = TypeVar("T")

#: How long connecting may take.
CONNECT_TIMEOUT_S = 10


def redacted(url: str) -> str:
    """``url`` as it may be printed: every part of it but the password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<an unparsable PostgreSQL URL>"
    parts.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **parts)


def _told_something(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server sent an idle connection anything: it only does to end it.

    A server restarting (or an administrator ending sessions) tells each
    idle client so and closes it; the connection notices only when next
    used, and that call would fail. Looking first (a poll of the socket,
    without waiting) costs a system call and spares the call: the
    connection is replaced before anything is sent, so a write never
    fails on a connection that was already dead (whether a failed write
    was committed cannot be known; whether it was sent can).
    """
    readable, _, _ = select.select([connection.fileno()], [], [], 0)
    return bool(readable)


class _Lent:
    """The connection a call uses: the one lent, or the one the call's thread opened."""

    __slots__ = ("connection",)

    def __init__(self, connection: psycopg.Connection[Any] | None) -> None:
        self.connection = connection


class Connections:
    """At most ``size`` connections, each lent to one call at a time, on its worker thread."""

    def __init__(self, url: str, size: int, statement_timeout_s: float) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one connection, got {size}")
        self.url = url
        self.shown = redacted(url)
        self._statement_timeout_ms = round(statement_timeout_s * 1000)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lending = trio.Semaphore(size)
        # Threads of their own: trio's default limiter is shared by the whole process.
        self._threads = trio.CapacityLimiter(size)
        self._closed = False
        #: The connection kept apart from the pool (see :meth:`apart`).
        self._apart: psycopg.Connection[Any] | None = None

    async def call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(connection)`` on a worker thread; see the module docstring for cancels."""
        async with self._lending:
            if self._closed:
                raise StoreError(f"the PostgreSQL journal {self.shown} is closed")
            lent = _Lent(self._idle.pop() if self._idle else None)
            try:
                return await trio.to_thread.run_sync(self._call, lent, work, limiter=self._threads)
            finally:
                self._give_back(lent.connection)

    def _call(self, lent: _Lent, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            if lent.connection is not None and _told_something(lent.connection):
                lent.connection.close()
                lent.connection = None
            if lent.connection is None:
                lent.connection = self.connect()
            return work(lent.connection)
        except psycopg.Error as error:
            raise self.failure(error) from error

    def _give_back(self, connection: psycopg.Connection[Any] | None) -> None:
        """Keep a sound connection for the next call; a broken one is dropped.

        A statement that failed leaves a sound connection as it was: in
        autocommit, or after a ``transaction()`` block rolled back, nothing stays open.
        """
        if connection is None:
            return
        if connection.broken or connection.closed or self._closed:
            connection.close()
        else:
            self._idle.append(connection)

    async def apart(
        self,
        prepare: Callable[[psycopg.Connection[Any]], None],
        work: Callable[[psycopg.Connection[Any]], T],
    ) -> T:
        """``work`` on the one connection kept apart from the pool, on a thread of its own.

        For a session whose state matters (``LISTEN``): ``prepare`` runs on
        each new such connection, and a broken one is replaced at the next call.
        Calls must not overlap (one waiting task uses it).
        """

        def call() -> T:
            try:
                if self._apart is None or self._apart.broken or self._apart.closed:
                    self._apart = self.connect()
                    prepare(self._apart)
                return work(self._apart)
            except psycopg.Error as error:
                raise self.failure(error) from error

        if self._closed:
            raise StoreError(f"the PostgreSQL journal {self.shown} is closed")
        return await trio.to_thread.run_sync(call)

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit session with the statement timeout set."""
        connection = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        connection.execute(f"SET statement_timeout = {int(self._statement_timeout_ms)}")
        return connection

    def failure(self, error: psycopg.Error) -> StoreError:
        """What ``error`` means for the user, naming the database (without its password).

        One line: the server's and libpq's own lines (a message, a hint) are joined.
        """
        said = " ".join(str(error).split())
        if isinstance(error, psycopg.errors.QueryCanceled):
            return StoreError(
                f"the PostgreSQL journal {self.shown} did not answer within the statement "
                f"timeout ({self._statement_timeout_ms / 1000:g} s): {said}"
            )
        if isinstance(error, psycopg.OperationalError):
            return StoreError(f"the PostgreSQL journal {self.shown} cannot be reached: {said}")
        return StoreError(
            f"the PostgreSQL journal {self.shown} refused a statement: "
            f"{type(error).__name__}: {said}"
        )

    def close(self) -> None:
        """Close every idle connection; calls after this fail."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        if self._apart is not None:
            self._apart.close()
