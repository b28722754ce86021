"""The run queue: runs stored for workers to take, and the worker that takes them.

``Runtime.submit`` stores a run ``queued`` instead of driving it;
``Runtime.requeue`` stores the answer to a paused run and queues it again.
:class:`Worker` (``trioflow worker``) drives runnable runs, up to
``concurrency`` at once: it picks them from a PostgreSQL journal with
``SKIP LOCKED`` (:mod:`trioflow.persistence._postgres_queue`), then resumes
each through the ordinary claim of the lease protocol, so a run has one
owner at a time however many workers share the database, and every record
a drive writes is fenced by its epoch. A worker that stalls past its lease
is taken over; when it wakes, its writes are refused and it drops the run
(:class:`RunTakenOver`) and goes on with others.

When nothing is runnable the worker waits for ``NOTIFY`` (sent by whoever
makes a run runnable) at most ``poll_s``, then looks again: a lost
notification only delays, and runs whose lease ran out are found by the
poll. A journal failure (the server restarting) is reported in one line
and retried at the next poll; the drives it broke leave their runs
resumable (interrupted, or running with a lease that runs out), and a
worker takes them over.
"""

from __future__ import annotations

import datetime
import math
import uuid
from collections.abc import Callable

import attrs
import trio
from trioflow.persistence import PostgresStore, RunRecord, RunStore, StoreError

from ._dsl._pipeline import Pipeline
from ._errors import (
    ConfigurationError,
    RunClaimed,
    RunNotResumable,
    RunTakenOver,
    UsageLimitExceeded,
)
from ._results import RunStatus
from ._runtime import Runtime

#: Polls for runnable runs, when no notification comes, this often (seconds).
DEFAULT_POLL_S = 1.0

#: Finds a run's pipeline from its stored record (its ``target`` and ``target_sha256``);
#: raises :class:`PipelineUnavailable` when it cannot.
PipelineOf = Callable[[RunRecord], Pipeline]


class PipelineUnavailable(Exception):
    """A worker cannot find (or may not import) a run's pipeline: the run is left as it is."""


def require_queue(store: RunStore) -> PostgresStore:
    """The store, if it can hold a run queue that workers share; else a clear error."""
    if not isinstance(store, PostgresStore):
        raise StoreError(
            "a run queue needs a PostgreSQL journal (--db postgresql://...) that every "
            "worker shares"
        )
    return store


@attrs.define
class Worker:
    """Takes runnable runs from a PostgreSQL journal and drives them; see the module docstring.

    ``say`` receives one line per run driven (or dropped) and per journal
    failure. ``pick_s`` is how long a pick keeps other workers off a run
    before this worker has claimed it.
    """

    runtime: Runtime
    pipeline_of: PipelineOf
    say: Callable[[str], None]
    concurrency: int = 1
    poll_s: float = DEFAULT_POLL_S
    name: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    _freed: trio.Event = attrs.field(factory=trio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"a worker drives at least one run at a time, got {self.concurrency}")
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise ValueError(f"poll_s must be a positive number of seconds, got {self.poll_s}")

    async def run(self) -> None:
        """Drive runnable runs until cancelled (a signal, the caller's scope)."""
        store = require_queue(self.runtime.store)
        slots = trio.Semaphore(self.concurrency)
        async with trio.open_nursery() as nursery:
            while True:
                free = slots.value
                picked = await self._pick(store, free) if free else []
                for run_id in picked:
                    await slots.acquire()  # never waits: ``free`` slots were free
                    nursery.start_soon(self._drive, run_id, slots)
                if free and len(picked) == free:
                    continue  # there may be more
                if free:
                    await self._wait_for_work(store)
                else:
                    await self._freed.wait()
                self._freed = trio.Event()

    async def _pick(self, store: PostgresStore, free: int) -> list[str]:
        now = self.runtime.leases.clock.now()
        until = now + datetime.timedelta(seconds=self.runtime.leases.lease_s)
        try:
            return await store.pick_runnable(self.name, free, now, until)
        except StoreError as error:
            self.say(f"worker: cannot pick runs ({error}); retrying in {self.poll_s:g} s")
            await trio.sleep(self.poll_s)
            return []

    async def _wait_for_work(self, store: PostgresStore) -> None:
        try:
            await store.wait_for_runnable(self.poll_s)
        except StoreError as error:
            self.say(f"worker: cannot listen for runs ({error}); polling")
            await trio.sleep(self.poll_s)

    async def _drive(self, run_id: str, slots: trio.Semaphore) -> None:
        try:
            self.say(await self._outcome(run_id))
        finally:
            slots.release()
            self._freed.set()

    async def _outcome(self, run_id: str) -> str:
        """Drive the run; one line saying how it went.

        A drive's failure can come as a group (several of the run's tasks
        failing at once, the journal under all of them): a group made only
        of the failures below is reported by its first, like a single one.
        """
        try:
            return await self._drive_once(run_id)
        except BaseExceptionGroup as group:
            reported, rest = group.split(_REPORTED)
            if rest is not None or reported is None:
                raise
            first: BaseException = reported
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            return f"run {run_id}: not driven: {first}"

    async def _drive_once(self, run_id: str) -> str:
        try:
            record = await self.runtime.store.get_run(run_id)
            pipeline = self.pipeline_of(record)
            result = await self.runtime.resume(run_id, pipeline=pipeline)
        except UsageLimitExceeded as stopped:
            return f"run {run_id}: {RunStatus.USAGE_LIMIT} ({stopped})"
        except (RunClaimed, RunNotResumable):
            return f"run {run_id}: another worker or resume has it"
        except RunTakenOver as error:
            return f"run {run_id}: {error}"
        except _NOT_DRIVEN as error:
            return f"run {run_id}: not driven: {error}"
        return f"run {run_id}: {result.status}"


#: Why a run was not driven, said in one line: the journal failing (it is retried by the
#: next pick), a pipeline the worker may not import, a pipeline that is not the run's.
_NOT_DRIVEN = (StoreError, PipelineUnavailable, ConfigurationError)

#: Every failure a worker reports and goes on after.
_REPORTED = (*_NOT_DRIVEN, UsageLimitExceeded, RunNotResumable, RunTakenOver)
