"""Runs the crash pipeline to the end, and, when told to, dies after the k-th journal write.

Usage: ``python crash_driver.py DB KILL_AFTER`` (``KILL_AFTER`` 0: never); ``DB`` is an
SQLite file or a ``postgresql://`` URL.
It starts the run if the journal has none, otherwise resumes it (answering
the pause with ``True``) until it completes, then prints what the journal
holds about it as JSON. The kill is a SIGKILL sent to itself right after a write returned:
no clean-up runs, exactly like a crash. Its lease lasts :data:`LEASE_S`, so the process
that resumes after a kill waits at most that long for the lease to run out.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio
from trioflow.actors import TraceEvent
from trioflow.persistence import (
    NO_TYPES,
    LedgerEntry,
    PauseRecord,
    PostgresStore,
    RunRecord,
    RunStore,
    RunSummary,
    SQLiteStore,
    StepRecord,
    TrustedTypes,
)
from trioflow.runtime import RunStatus, Runtime, open_runtime
from trioflow.runtime.lowlevel import stored_types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crash_pipeline import pipeline

#: The lease of each driving process: short, so a resume after a kill soon may take over.
LEASE_S = 1.0


class KillingStore:
    """A store that counts committed writes and dies after the k-th (0: never)."""

    def __init__(self, inner: RunStore, kill_after: int) -> None:
        self._inner = inner
        self._kill_after = kill_after
        self.writes = 0

    def _wrote(self) -> None:
        self.writes += 1
        if self.writes == self._kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    async def create_run(self, run: RunRecord) -> None:
        await self._inner.create_run(run)
        self._wrote()

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        swapped = await self._inner.swap_run(expected, replacement)
        self._wrote()
        return swapped

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        return await self._inner.renew_lease(run, until)

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        await self._inner.record_step(step, epoch=epoch)
        self._wrote()

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        await self._inner.record_usage(entry, epoch=epoch)
        self._wrote()

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        await self._inner.record_pause(pause, epoch=epoch)
        self._wrote()

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        await self._inner.save_trace(run_id, events, epoch=epoch)
        self._wrote()

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        return await self._inner.get_run(run_id, types=types)

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        return await self._inner.list_runs(limit=limit, offset=offset)

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        return await self._inner.steps_of(run_id, types=types)

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        return await self._inner.pauses_of(run_id, types=types)

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        return await self._inner.ledger_of(run_id)

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        return await self._inner.trace_of(run_id)


async def drive(db: str, kill_after: int) -> dict[str, Any]:
    opening = PostgresStore.open(db) if db.startswith("postgresql://") else SQLiteStore.open(db)
    async with opening as journal:
        store = KillingStore(journal, kill_after)
        async with open_runtime(store=store, lease_s=LEASE_S) as runtime:
            runs = await store.list_runs()
            run_id = runs[0].run_id if runs else (await runtime.run(pipeline, "trio")).run_id
            await finish(runtime, run_id)
            record = await store.get_run(run_id, types=stored_types(pipeline))
    context = record.final_context.model_dump(mode="json", exclude={"run_id"})
    for interaction in context["hitl_history"]:
        del interaction["answered_at"]  # when the answer was given: the wall clock of this run
    return {
        "status": record.status,
        "output": record.output,
        "context": context,
        "cost": str(record.total_cost_usd),
        "tokens": [record.input_tokens, record.output_tokens],
        "writes": store.writes,
    }


async def finish(runtime: Runtime, run_id: str) -> None:
    """Resume the run until it completes: pauses with True, other runs as they are.

    A run left ``running`` by the kill is claimed only once the killed
    process's lease has run out, and takes no answer (its process might
    still be driving it): it is resumed without one first, and walks to
    its pauses again.
    """
    while True:
        record = await runtime.store.get_run(run_id)
        status = record.status
        if record.lease_expires_at is not None:
            await trio.sleep_until(_trio_time_at(record.lease_expires_at))
        if status == RunStatus.COMPLETED.value:
            return
        pauses = await runtime.store.pauses_of(run_id)
        waiting = any(pause.answered_at is None for pause in pauses)
        if waiting and status != RunStatus.RUNNING.value:
            await runtime.resume(run_id, True, pipeline=pipeline)
        else:
            await runtime.resume(run_id, pipeline=pipeline)


def _trio_time_at(moment: datetime.datetime) -> float:
    """Trio's clock reading at wall-clock ``moment`` (a little after, to be sure it passed)."""
    left = moment - datetime.datetime.now(datetime.UTC)
    return trio.current_time() + left.total_seconds() + 0.01


if __name__ == "__main__":
    print(json.dumps(trio.run(drive, sys.argv[1], int(sys.argv[2]))))
