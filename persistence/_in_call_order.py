"""Writes of one run applied in the order they were called, while other runs' go in parallel.

Why: a store keeps a run's records "in the order they were first written".
The SQLite store has one writer, so calls are applied in call order; the
PostgreSQL store sends calls over several connections at once, and two
writes of one run (two parallel branches pausing) could reach the server
in either order. Queueing each run's writes behind one another (trio's
locks are fair: first come, first served) keeps the order callers see,
and costs nothing across runs, whose writes still overlap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class InCallOrder:
    """One fair lock per run with writes waiting or in flight; dropped when none are."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[trio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, run_id: str) -> AsyncIterator[None]:
        """The block runs once every write of ``run_id`` called before it has finished."""
        lock, users = self._locks.setdefault(run_id, (trio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[run_id]
