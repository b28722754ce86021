"""Waking the workers of a run queue when a run becomes runnable (see :mod:`._queue`)."""

from __future__ import annotations

from trioflow.persistence import PostgresStore, RunStore


async def announce_runnable(store: RunStore) -> None:
    """Wake the workers sharing ``store``, if it can have any (a PostgreSQL journal)."""
    if isinstance(store, PostgresStore):
        await store.notify_runnable()
