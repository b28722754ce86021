"""The PostgreSQL store: runs kept in a PostgreSQL database shared by many processes and hosts.

Open it with ``async with PostgresStore.open("postgresql://...") as store:``.
Opening connects, creates or migrates the journal's tables (in the
database's ``trioflow`` schema, :mod:`._postgres_schema`) and keeps a small
pool of connections (:mod:`._postgres_connections`); leaving the block
closes them. It needs the ``postgres`` extra (``pip install
'trioflow[postgres]'``, psycopg 3).

It keeps the same guarantees as the SQLite store, across processes and
hosts: every write is committed when the awaited call returns (the
server's own durability settings decide what a commit survives; with
PostgreSQL's defaults, a power loss), a compare-and-set has one winner,
and every fenced write is refused once another owner claimed the run
(:mod:`._postgres_sql` says how each holds under concurrency). A run's
records keep the order its writes were called in (:mod:`._in_call_order`). Records are
the codec's text, exactly as in SQLite (:mod:`._rows`): a journal is data,
never code.

Cancellation: a database call runs on a worker thread and cannot be
interrupted; a cancelled caller waits for it to end, at most the
statement timeout (``statement_timeout_s``, 30 s by default). A step's
completion record is written even if its caller is cancelled meanwhile,
as the protocol requires.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio
from trioflow.actors import TraceEvent

from . import _postgres_queue as queue
from . import _postgres_sql as sql
from ._codec import CODEC
from ._in_call_order import InCallOrder
from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._rows import decoded, run_row, summaries, trace_event
from ._store import StoreError, require_same_run
from ._trusted import NO_TYPES, TrustedTypes

if TYPE_CHECKING:
    import psycopg

    from ._postgres_connections import Connections

T = TypeVar("T")
R = TypeVar("R")

#: How long one statement may run (lock waits included) before the server cancels it.
DEFAULT_STATEMENT_TIMEOUT_S = 30.0

#: How many connections a store keeps by default (see the benchmark in the module docstring).
DEFAULT_POOL_SIZE = 4


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class PostgresStore:
    """Implements :class:`RunStore` in a PostgreSQL database; see the module docstring.

    Made by :meth:`open`, never directly.
    """

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._order = InCallOrder()
        #: The database's URL without its password: what messages may show.
        self.url = connections.shown

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    ) -> AsyncIterator[PostgresStore]:
        """Connect to the journal at ``url``, creating or migrating its tables.

        :class:`StoreError` if the database cannot be reached (the message
        names it, never its password); :class:`SchemaTooNew` for a journal
        written by a newer trioflow (left untouched).
        """
        try:
            from ._postgres_connections import Connections
        except ImportError as error:
            raise StoreError(
                f"a PostgreSQL journal needs psycopg: pip install 'trioflow[postgres]' ({error})"
            ) from error
        from ._postgres_schema import migrate

        timeout = (
            DEFAULT_STATEMENT_TIMEOUT_S if statement_timeout_s is None else statement_timeout_s
        )
        if not timeout > 0:
            raise ValueError(f"statement_timeout_s must be > 0, got {timeout}")
        connections = Connections(url, pool_size, timeout)
        try:
            await connections.call(lambda connection: migrate(connection, connections.shown))
            yield cls(connections)
        finally:
            connections.close()

    async def _call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return await self._connections.call(work)

    # -- writes: encoded here, in the caller's task, then one statement on a thread --------

    async def create_run(self, run: RunRecord) -> None:
        row = run_row(run)
        await self._call(lambda connection: sql.create_run(connection, row))

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        require_same_run(expected, replacement)
        swapped = attrs.evolve(replacement, revision=expected.revision + 1)
        row = run_row(swapped)
        won = await self._call(lambda connection: sql.swap_run(connection, row, expected.revision))
        return swapped if won else None

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        renewed = attrs.evolve(run, lease_expires_at=until)
        row = run_row(renewed)
        return renewed if await self._call(lambda c: sql.renew_lease(c, row)) else None

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(step, where=f"step {step.path!r}")
        with trio.CancelScope(shield=True):  # finishes even if the caller is cancelled
            await self._put("steps", step.run_id, step.path, payload, epoch)

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(entry, where="ledger")
        await self._put("ledger", entry.run_id, entry.key, payload, epoch)

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        payload = CODEC.encode(pause, where=f"pause {pause.path!r}")
        await self._put("pauses", pause.run_id, pause.path, payload, epoch)

    async def _put(
        self, table: str, run_id: str, key: str, payload: str, epoch: int | None
    ) -> None:
        async with self._order.turn(run_id):
            await self._call(lambda c: sql.put(c, table, run_id, key, payload, epoch))

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        kept = tuple(events)
        async with self._order.turn(run_id):
            await self._call(lambda c: sql.append_trace(c, run_id, kept, epoch))

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        return await self._call(lambda connection: sql.delete_run(connection, run_id, revision))

    # -- the run queue (see :mod:`._postgres_queue`); not part of the store protocol -------

    async def pick_runnable(
        self, worker: str, limit: int, now: datetime.datetime, until: datetime.datetime
    ) -> list[str]:
        """Up to ``limit`` runnable runs no other worker picked, picked for ``worker`` until
        ``until``; their ids, oldest first. A hint: the worker still claims each one."""
        return await self._call(lambda c: queue.pick(c, worker, limit, now, until))

    async def notify_runnable(self) -> None:
        """Wake the workers waiting in :meth:`wait_for_runnable`."""
        await self._call(queue.notify)

    async def wait_for_runnable(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for a run to become runnable; whether one was announced.

        On a listening connection of its own, in a thread: a cancel waits
        for the timeout (keep it short, it is the polling interval).
        """
        return await self._connections.apart(queue.listen, lambda c: queue.wait(c, timeout_s))

    # -- reads ----------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        payload = await self._call(lambda connection: sql.run_payload(connection, run_id))
        return decoded(payload, RunRecord, types)

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        """Runs' summaries, oldest first; :class:`UnreadableRuns` names any that cannot be read."""
        rows = await self._call(lambda connection: sql.run_page(connection, limit, offset))
        return summaries(rows)

    async def count_runs(self) -> int:
        return await self._call(sql.count_runs)

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        return await self._records("steps", run_id, StepRecord, types)

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        return await self._records("pauses", run_id, PauseRecord, types)

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        return await self._records("ledger", run_id, LedgerEntry, NO_TYPES)

    async def _records(
        self, table: str, run_id: str, kind: type[R], types: TrustedTypes
    ) -> list[R]:
        payloads = await self._call(lambda c: sql.payloads_of(c, table, run_id))
        return [decoded(payload, kind, types) for payload in payloads]

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        rows = await self._call(lambda connection: sql.trace_rows(connection, run_id))
        return [trace_event(tuple(row)) for row in rows]
