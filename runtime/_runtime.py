"""The runner: ``open_runtime`` and ``Runtime.run``.

A runtime holds what runs share on purpose (the store, default limits and
the opt-in step cache) and nothing else: each run gets its own governor,
trace, context and actors, so any number of runs can go on at once on one
runtime without seeing each other. There is no module-level state but
the codec's registry of stored types, process-wide on purpose (see
:mod:`trioflow.persistence._codec`).
"""

from __future__ import annotations

import datetime
import math
import os
import signal
import uuid
import warnings
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import pydantic
import trio
from trioflow.actors import TeeTraceSink, TraceEvent, TraceSink, open_supervisor
from trioflow.persistence import (
    DEFAULT_BUSY_TIMEOUT_S,
    InMemoryStore,
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunStore,
    StaleEpoch,
    StoreError,
    TrustedTypes,
)

from . import _resume
from ._collector import DEFAULT_GC_THRESHOLD, raised_threshold
from ._dsl._context import BaseContext, apply_patch
from ._dsl._nesting import check_nesting
from ._dsl._pipeline import Pipeline, StepLike, as_pipeline
from ._dsl._type_checks import check_input
from ._errors import (
    ConfigurationError,
    RunTakenOver,
    UsageLimitExceeded,
)
from ._governor import Governor, Totals
from ._interrupts import StopSignals
from ._journal import Journal
from ._lease import DEFAULT_LEASE_S, LeaseClock, LeaseKeeper, LeaseTerms, Ownership
from ._logging import LoggedTrace, run_ended, run_lost, run_started
from ._queue_signal import announce_runnable
from ._recorded_usage import ledger_total, run_totals
from ._replay import Replay, first_difference
from ._results import PipelineResult, RunStatus
from ._resume import NO_INPUT
from ._services import RunServices
from ._steps._cache import StepCache
from ._steps._messages import Execute, StepDone
from ._steps._pipeline_actor import PipelineActor
from ._store_choice import journal_location, open_journal
from ._stored import reading_run
from ._stored_types import stored_types
from ._usage import NO_USAGE, Usage, UsageLimits
from .traces._tree import RESUMED, STARTED, NoTrace, RunTrace, build_trace, clock_anchor

if TYPE_CHECKING:  # OpenTelemetry is an optional extra, imported only when turned on
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .traces._otel import OtelExport, RunSpans

#: How many runs' pipelines a runtime keeps for resume() and replay().
REMEMBERED_PIPELINES = 1024

#: The path of a run's top pipeline actor; every step path starts with it.
ROOT_PATH = "main"
GOVERNOR_PATH = "governor"


@attrs.frozen(slots=True)
class _Drive:
    """One drive of one run, bundled once: what :meth:`Runtime._drive` and ``_execute`` need.

    A run started, resumed or replayed differs only in these fields, so the
    drive's functions take one argument instead of threading ten.
    """

    pipeline: Pipeline
    ownership: Ownership
    journal: Journal
    resources: Any = None
    #: The run's ledger so far (a resume's), which the governor starts from.
    ledger: Sequence[LedgerEntry] = ()
    #: Sees every trace event as it happens (live progress).
    watch: TraceSink | None = None
    resumed: bool = False
    #: When replaying: every model call's original reply, by ledger key.
    replies: Mapping[str, Any] | None = None
    #: The pause a resume answers, journaled first.
    answered: PauseRecord | None = None


class Runtime:
    """Runs and resumes pipelines; get one from :func:`open_runtime`."""

    def __init__(
        self,
        store: RunStore,
        limits: UsageLimits | None,
        cache: StepCache,
        keeper: LeaseKeeper,
        otel: OtelExport | None = None,
    ) -> None:
        self.store = store
        #: Where the runs' spans and metrics go (OpenTelemetry), when turned on.
        self.otel = otel
        self.limits = limits
        self.cache = cache
        #: Renews the leases of the runs this runtime drives (its task runs in open_runtime).
        self.keeper = keeper
        self.leases = keeper.terms
        # The pipelines of the latest runs, so resume() and replay() can find them
        # again; bounded, so a long-lived runtime does not keep every pipeline.
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        # The pipelines whose nesting was checked: a pipeline is immutable, so once is
        # enough (a walk of every step, per run, costs a 20-step chain ~5% of its time).
        self._nesting_checked: weakref.WeakSet[Pipeline] = weakref.WeakSet()
        self._stops = StopSignals()

    def stop_on(self, *signals: signal.Signals) -> AbstractContextManager[StopSignals]:
        """While inside, each of ``signals`` stops runs as Ctrl-C does; a context manager.

        A run stopped so is stored ``interrupted`` (resumable) with the
        signal named in its reason (``interrupted by SIGTERM``), and
        ``KeyboardInterrupt`` goes on to the caller; ``received`` on the
        value it gives says which signal came. The ``trioflow`` command
        uses it for SIGTERM; a program that embeds the runtime chooses
        (signal handlers belong to its process, and only its main thread
        may install them).
        """
        return self._stops.installed(*signals)

    async def run(
        self,
        pipeline: StepLike,
        input: Any = None,
        *,
        context: BaseContext | None = None,
        resources: Any = None,
        limits: UsageLimits | None = None,
        target: str | None = None,
        target_sha256: str | None = None,
        watch: TraceSink | None = None,
    ) -> PipelineResult:
        """Run ``pipeline`` on ``input`` and return how it went.

        A failing step gives a result with status ``failed`` (not an
        exception); a human-input step gives status ``paused``. A usage
        limit raises :class:`UsageLimitExceeded`, whose ``result`` is the
        run's result with the breaching step last in its history. Mistakes
        in the call itself (input of the wrong type, a context that is not
        a ``BaseContext``) raise at once. ``target`` records where the
        pipeline can be imported from (``FILE.py:NAME``) for a later resume,
        ``target_sha256`` the hash of that file's bytes, without which
        the command line does not import it again.
        """
        pipeline = as_pipeline(pipeline, where="run()")
        record = self._new_record(pipeline, input, context, limits, target, target_sha256)
        ownership = await self._start(record)
        self._remember(record.run_id, pipeline)
        journal = Journal(self.store, record.run_id, ownership.epoch)
        return await self._drive(_Drive(pipeline, ownership, journal, resources, watch=watch))

    def _new_record(
        self,
        pipeline: Pipeline,
        input: Any,
        context: BaseContext | None,
        limits: UsageLimits | None,
        target: str | None,
        target_sha256: str | None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> RunRecord:
        """A new run of ``pipeline``, checked: a fresh id, its own copy of the context."""
        if pipeline not in self._nesting_checked:
            check_nesting(pipeline)
            self._nesting_checked.add(pipeline)
        check_input(input, pipeline.input_type, step=pipeline.steps[0].name)
        context = _initial_context(context, pipeline)
        run_id = uuid.uuid4().hex
        # A deep copy: nothing the caller (or another run) holds is shared with this run.
        context = context.model_copy(update={"run_id": run_id}, deep=True)
        return RunRecord(
            run_id,
            pipeline.name,
            status.value,
            _now(),
            input,
            context=context,
            limits=limits if limits is not None else self.limits,
            target=target,
            target_sha256=target_sha256,
        )

    async def submit(
        self,
        pipeline: StepLike,
        input: Any = None,
        *,
        context: BaseContext | None = None,
        limits: UsageLimits | None = None,
        target: str | None = None,
        target_sha256: str | None = None,
    ) -> str:
        """Store a run of ``pipeline`` as ``queued`` for a worker to drive; its id.

        Checked as :meth:`run` checks it, nothing run here. A worker
        (``trioflow worker``, sharing a PostgreSQL journal) finds the
        pipeline by ``target`` (``FILE.py:NAME``), imported only while the
        file still hashes to ``target_sha256``.
        """
        pipeline = as_pipeline(pipeline, where="submit()")
        record = self._new_record(
            pipeline, input, context, limits, target, target_sha256, RunStatus.QUEUED
        )
        await self.store.create_run(record)
        await announce_runnable(self.store)
        return record.run_id

    async def requeue(
        self,
        run_id: str,
        human_input: Any,
        *,
        path: str | None = None,
        pipeline: StepLike | None = None,
    ) -> None:
        """Answer a paused run and queue it again for a worker, from any process or host.

        The answer is validated as :meth:`resume` validates it; then the run
        is claimed (so of two answers racing only one is stored), the answer
        journaled under that claim, and the run released as ``queued``.
        """
        _, read, ownership = await self._claim_resumable(run_id, pipeline, human_input, path)
        if read.answered is not None:
            await self.store.record_pause(read.answered, epoch=ownership.epoch)
        if not await ownership.end(status=RunStatus.QUEUED.value, paused_at=()):
            raise _taken_over(ownership)
        await announce_runnable(self.store)

    async def _claim_resumable(
        self, run_id: str, pipeline: StepLike | None, human_input: Any, path: str | None
    ) -> tuple[Pipeline, _resume.Resumption, Ownership]:
        """Read and check the run as a resume would (see :mod:`._resume`), then claim it."""
        with reading_run(run_id):
            found, types, record = await self._pipeline_and_run(run_id, pipeline)
            read = await _resume.prepare(
                self.store,
                found,
                record,
                _resume.Answer(human_input, path),
                types=types,
                now=self.leases.clock.now(),
                root=ROOT_PATH,
            )
        return found, read, await _resume.claim(self.store, self.leases, record)

    async def _start(self, record: RunRecord) -> Ownership:
        """Store a new run, owned by this drive (epoch 1) under a fresh lease."""
        claimed = self.leases.claim(record)
        await self.store.create_run(claimed)
        return Ownership(self.store, claimed, self.leases)

    async def resume(
        self,
        run_id: str,
        human_input: Any = NO_INPUT,
        *,
        path: str | None = None,
        pipeline: StepLike | None = None,
        resources: Any = None,
        watch: TraceSink | None = None,
    ) -> PipelineResult:
        """Go on with a paused or interrupted run, without re-running completed steps.

        A paused run needs ``human_input`` (and, when several steps wait,
        the ``path`` it answers); the answer is validated before anything
        runs, and an answer that does not fit leaves the run paused. A run
        interrupted by a crash or a cancellation resumes from its journal:
        the step that was running runs again with the same idempotency key.
        ``pipeline`` is needed when this runtime did not start the run.

        The resume claims the run before it runs anything: it replaces the
        run record it read with a compare-and-set
        (:meth:`~trioflow.persistence.RunStore.swap_run`) that makes this
        drive the run's owner, with the next epoch and a lease. Of resumes
        racing for one run (tasks of one process, or processes sharing a
        journal) exactly one claims it; the others raise
        :class:`RunClaimed` having changed nothing, their answers included.

        A run whose status is ``running`` has an owner driving it, or had
        one whose process died. While the owner's lease runs (it renews it
        every third of ``lease_s``), a resume raises :class:`RunClaimed`
        saying when the lease runs out. Once it has run out, a resume
        without an answer takes the run over (an answer is still refused:
        the run first walks to its pauses again). An owner that is alive
        after all (stalled for longer than its lease) finds out at its next
        renewal or journal write, which the store refuses
        (:class:`~trioflow.persistence.StaleEpoch`): it stops, and raises
        :class:`RunTakenOver`, having written nothing since the takeover.
        """
        found, read, ownership = await self._claim_resumable(run_id, pipeline, human_input, path)
        journal = Journal(self.store, run_id, ownership.epoch, read.records, read.answers)
        drive = _Drive(
            found,
            ownership,
            journal,
            resources,
            read.ledger,
            watch,
            resumed=True,
            answered=read.answered,
        )
        return await self._drive(drive)

    async def _pipeline_and_run(
        self, run_id: str, given: StepLike | None
    ) -> tuple[Pipeline, TrustedTypes, RunRecord]:
        """The run's pipeline, the classes it vouches for, and the run read with them.

        The pipeline is found before anything is decoded: the journal's values
        are constructed only as the classes it declares (see ``_stored_types``).
        """
        pipeline = await self._pipeline_for(run_id, given)
        types = stored_types(pipeline)
        record = await self.store.get_run(run_id, types=types)
        if pipeline.name != record.pipeline_name:
            raise ConfigurationError(
                f"run {record.run_id!r} ran pipeline {record.pipeline_name!r}, "
                f"not {pipeline.name!r}"
            )
        self._remember(run_id, pipeline)
        return pipeline, types, record

    async def trace(self, run_id: str) -> RunTrace:
        """The run's trace: its events on one timeline, its actors' spans and the actor tree.

        Raises :class:`~trioflow.persistence.UnknownRun` for an unknown id and
        :class:`NoTrace` for a run whose trace was never stored (it is still
        running, or its process stopped before the end of the run).
        """
        with reading_run(run_id):
            record = await self.store.get_run(run_id)
            events = await self.store.trace_of(run_id)
            if not events:
                raise NoTrace(run_id, record.status)
            steps = await self.store.steps_of(run_id)
            pauses = await self.store.pauses_of(run_id)
            ledger = await self.store.ledger_of(run_id)
        return build_trace(record, events, steps, pauses, ledger)

    async def replay(
        self, run_id: str, *, pipeline: StepLike | None = None, resources: Any = None
    ) -> Replay:
        """Run a stored run again with every model call answered from its journal.

        No model is called and nothing is paid: each model call's recorded
        reply (or error) comes back instead, while the pipeline's own code
        (function steps, processors, plugins, validators, conditions) runs
        again. Human answers are reused, a step the original took from the
        step cache takes the same result again, and the original run's
        usage limits apply: a replay stops where the original was stopped
        (its result then has status ``usage_limit``; nothing is raised).
        The replay runs in a throwaway
        in-memory store and is compared with the original step by step, in
        the order the replay completed them; the first difference is
        reported.
        """
        with reading_run(run_id):
            found, types, record = await self._pipeline_and_run(run_id, pipeline)
            _resume.require_context(record)
            original = await self.store.steps_of(run_id, types=types)
            pauses = await self.store.pauses_of(run_id, types=types)
        replies = {key: reply for step in original for key, reply in step.replies}
        answers = {pause.path: pause for pause in pauses if pause.answered_at is not None}
        sandbox = Runtime(InMemoryStore(), None, StepCache(), self.keeper)
        copy = RunRecord(
            uuid.uuid4().hex,
            record.pipeline_name,
            RunStatus.RUNNING.value,
            _now(),
            record.input,
            context=record.context,
            limits=record.limits,
        )
        ownership = await sandbox._start(copy)
        journal = Journal(sandbox.store, copy.run_id, ownership.epoch, answers=answers)
        try:
            result = await sandbox._drive(
                _Drive(found, ownership, journal, resources, replies=replies)
            )
        except UsageLimitExceeded as breach:
            if breach.result is None:  # not this replay's governor: a step's code raised it
                raise
            result = breach.result  # stopped where the original's limits stopped it
        again = await sandbox.store.steps_of(copy.run_id)
        difference = first_difference(original, again)
        return Replay(run_id, result, len(again), difference, record.limits)

    async def _pipeline_for(self, run_id: str, given: StepLike | None) -> Pipeline:
        if given is not None:
            pipeline = as_pipeline(given, where="resume()")
            check_nesting(pipeline)
            return pipeline
        if run_id in self._pipelines:
            return self._pipelines[run_id]
        record = await self.store.get_run(run_id)  # for its name: no class of the run's is built
        raise ConfigurationError(
            f"this runtime does not know the pipeline of run {run_id!r} (it was started "
            f"elsewhere, or long ago): pass the pipeline {record.pipeline_name!r} as pipeline=..."
        )

    def _remember(self, run_id: str, pipeline: Pipeline) -> None:
        self._pipelines[run_id] = pipeline
        self._pipelines.move_to_end(run_id)
        while len(self._pipelines) > REMEMBERED_PIPELINES:
            self._pipelines.popitem(last=False)

    async def _drive(self, drive: _Drive) -> PipelineResult:
        """Run (or re-walk) the pipeline of the run ``drive`` owns and store how it ended.

        ``drive.answered`` is the pause a resume answers, journaled first:
        after the claim (a resume that loses it writes nothing), and where a
        failure to journal it ends the run as interrupted, not ``running``.
        The lease is kept alive meanwhile; once another owner has taken the
        run over, this drive writes nothing more and raises
        :class:`RunTakenOver`.
        """
        ownership = drive.ownership
        record = ownership.record
        trace = LoggedTrace(record.run_id)
        # Ties this drive's monotonic clock to the wall clock (see traces/_tree.py).
        trace.record(clock_anchor(RESUMED if drive.resumed else STARTED))
        pipeline = drive.pipeline
        spans = self._spans(record.run_id, pipeline, drive.resumed)
        sink = _watched(trace, drive.watch, spans)
        run_started(record.run_id, pipeline.name, resumed=drive.resumed, epoch=ownership.epoch)
        try:
            if drive.answered is not None:
                await self.store.record_pause(drive.answered, epoch=ownership.epoch)
            with self.keeper.keeping(ownership):
                done, usage = await self._execute(drive, sink)
        except BaseException as error:
            if ownership.lost or _holds(error, StaleEpoch):
                _ended(spans, record.run_id, RunStatus.INTERRUPTED, NO_USAGE, "taken over")
                run_lost(record.run_id, ownership.epoch)
                raise _taken_over(ownership) from error
            status = RunStatus.CANCELLED if _only(error, trio.Cancelled) else RunStatus.INTERRUPTED
            _ended(spans, record.run_id, status, NO_USAGE, self._stops.reason(error))
            with trio.CancelScope(shield=True):
                await self._end_abruptly(ownership, error, trace.events)
            raise
        result = _pipeline_result(record.run_id, done, usage, record.context)
        _ended(spans, record.run_id, result.status, usage, result.error)
        await self._store_outcome(ownership, result, usage, trace.events)
        if done.breach is not None:
            raise UsageLimitExceeded(done.breach, result)
        return result

    def _spans(self, run_id: str, pipeline: Pipeline, resumed: bool) -> RunSpans | None:
        if self.otel is None:
            return None
        return self.otel.drive(run_id, pipeline, root=ROOT_PATH, resumed=resumed)

    async def _store_outcome(
        self,
        ownership: Ownership,
        result: PipelineResult,
        usage: Usage,
        events: list[TraceEvent],
    ) -> None:
        """Store the trace, then replace the run record with how the run ended, released.

        Both fenced: if another resume took the run over meanwhile (this
        process's lease ran out), neither is stored and
        :class:`RunTakenOver` is raised.
        """
        record = ownership.record
        try:
            await self.store.save_trace(record.run_id, events, epoch=ownership.epoch)
        except StaleEpoch as error:
            raise _taken_over(ownership, result) from error
        ended = await ownership.end(
            status=result.status.value,
            finished_at=_now(),
            output=result.output,
            final_context=result.context,
            error=result.error,
            paused_at=result.paused_at,
            **run_totals(usage),
        )
        if not ended:
            raise _taken_over(ownership, result)

    async def _execute(self, drive: _Drive, trace: TraceSink) -> tuple[StepDone, Usage]:
        record = drive.ownership.record
        limits = record.limits
        journal = drive.journal
        pipeline = drive.pipeline
        async with open_supervisor("", trace) as root:
            # Shielded: a call that returned is committed even while the run is cancelled.
            governor = root.spawn(
                GOVERNOR_PATH, lambda: Governor(limits, trace, journal, drive.ledger), shielded=True
            )
            services = RunServices(
                record.run_id,
                governor,
                limits,
                drive.resources,
                self.cache,
                trace,
                journal,
                drive.replies,
            )
            main = root.spawn(ROOT_PATH, lambda: PipelineActor(pipeline, pipeline.name, services))
            done = await main.ask(Execute(record.input, record.context))
            usage = await governor.ask(Totals())
        return done, usage

    async def _end_abruptly(
        self, ownership: Ownership, error: BaseException, events: list[TraceEvent]
    ) -> None:
        """Record a run stopped from outside its steps: resumable, released, with what it spent.

        If the store itself is what failed, this may fail too: the caller's
        error is the one that matters, so a store error here is reported in
        the trace of the next attempt, not raised over it. If another
        resume claimed the run meanwhile, its record is left as it is (the
        fenced writes refuse this one's): the run is that resume's now.
        """
        record = ownership.record
        cancelled = _only(error, trio.Cancelled)
        status = RunStatus.CANCELLED if cancelled else RunStatus.INTERRUPTED
        try:
            spent = ledger_total(await self.store.ledger_of(record.run_id))
            await self.store.save_trace(record.run_id, events, epoch=ownership.epoch)
            await ownership.end(
                status=status.value,
                finished_at=_now(),
                error=self._stops.reason(error),
                **run_totals(spent),
            )
        except StaleEpoch:
            return  # taken over meanwhile: nothing of this drive's is stored
        except StoreError:
            if isinstance(error, StoreError):
                return  # the journal is failing: the original error says so
            raise


class GuardedWatch:
    """Passes events to a watcher; a watcher that raises is dropped, never the run.

    A watcher (a progress display) is the caller's code running inside the
    run's actors: its bug must not fail the step that happened to report an
    event. The first failure is reported as a warning and the watcher is off.
    """

    def __init__(self, watch: TraceSink) -> None:
        self._watch: TraceSink | None = watch

    def record(self, event: TraceEvent) -> None:
        if self._watch is None:
            return
        try:
            self._watch.record(event)
        except Exception as error:  # the watcher's bug: it stops watching, the run goes on
            self._watch = None
            warnings.warn(f"trace watcher dropped after it raised {error!r}", stacklevel=2)


def _watched(trace: TraceSink, watch: TraceSink | None, spans: RunSpans | None) -> TraceSink:
    """The drive's sink: its (logged) trace, and the caller's watcher (guarded) and its
    spans if any; the trace alone, with no tee in between, when there are neither."""
    guarded = None if watch is None else GuardedWatch(watch)
    others = [sink for sink in (guarded, spans) if sink is not None]
    return TeeTraceSink(trace, *others) if others else trace


def _ended(
    spans: RunSpans | None, run_id: str, status: RunStatus, usage: Usage, error: str | None
) -> None:
    """Say how a drive ended: in the log, and on its run span."""
    run_ended(run_id, status.value, usage, error)
    if spans is not None:
        spans.end(status.value, usage, error)


def _only(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` is ``kind``, or a group made only of ``kind``."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(kind)[1] is None
    return isinstance(error, kind)


def _holds(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` is ``kind``, or a group holding one."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(kind) is not None
    return isinstance(error, kind)


def _taken_over(ownership: Ownership, result: PipelineResult | None = None) -> RunTakenOver:
    """The error of a drive whose run another resume took over (this process's lease ran out)."""
    run_id = ownership.run_id
    if result is None:
        what = "this drive stopped, and nothing it did since was stored"
    else:
        what = f"this drive's outcome ({result.status.value}) was not stored"
    return RunTakenOver(
        f"run {run_id!r} was claimed by another resume while this process was driving it "
        f"(its lease had run out): {what}, the run is that resume's",
        run_id=run_id,
        result=result,
    )


def _initial_context(context: BaseContext | None, pipeline: Pipeline) -> BaseContext:
    expected = pipeline.context_type
    if context is None:
        try:
            return expected()
        except pydantic.ValidationError as error:
            raise ConfigurationError(
                f"pipeline {pipeline.name!r}: {expected.__name__} has required fields, "
                f"so pass context=...: {error.errors()[0]['msg']}"
            ) from None
    if not isinstance(context, expected):
        raise ConfigurationError(
            f"pipeline {pipeline.name!r} needs a context of type {expected.__name__}, "
            f"got {type(context).__name__}"
        )
    return context


def _pipeline_result(
    run_id: str, done: StepDone, usage: Usage, context: BaseContext
) -> PipelineResult:
    summary = done.result
    final_context = apply_patch(context, summary.patch, step=ROOT_PATH)
    if done.breach is not None:
        status = RunStatus.USAGE_LIMIT
    elif done.paused:
        status = RunStatus.PAUSED
    elif summary.success:
        status = RunStatus.COMPLETED
    else:
        status = RunStatus.FAILED
    return PipelineResult(
        run_id=run_id,
        status=status,
        output=summary.output,
        step_history=summary.step_history,
        usage=usage,
        context=final_context,
        error=None if done.paused else done.breach or summary.feedback,
        paused_at=done.paused,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@asynccontextmanager
async def open_runtime(
    *,
    store: RunStore | str | os.PathLike[str] | None = None,
    limits: UsageLimits | None = None,
    cache_entries: int = 1024,
    recover: bool = False,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    lease_s: float = DEFAULT_LEASE_S,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    gc_threshold: int | None = DEFAULT_GC_THRESHOLD,
) -> AsyncIterator[Runtime]:
    """Open a runtime over a store.

    ``store`` is a :class:`RunStore` (an :class:`InMemoryStore` for
    throwaway runs), the path of an SQLite journal or a ``postgresql://``
    URL (:class:`~trioflow.persistence.PostgresStore`); by default
    ``$TRIOFLOW_DB`` (either), else the journal at :func:`default_db_path`.
    A damaged journal is refused
    (:class:`~trioflow.persistence.CorruptDatabase`) and left in place until
    ``recover=True`` repairs it, or moves it aside (never deleting it) and
    starts a fresh one. ``busy_timeout_s`` is how long a journal write waits
    for another process's write lock. ``limits`` apply to each run unless
    ``run(..., limits=...)`` overrides them. ``lease_s`` is how long a run's
    lease lasts unless renewed (every third of it while the run is driven):
    how long a run whose process died stays unclaimable.

    ``tracer_provider`` and ``meter_provider`` export every run's spans and
    usage metrics to OpenTelemetry (the ``trioflow[otel]`` extra; see
    :mod:`trioflow.runtime.traces`); so does ``TRIOFLOW_OTEL=1``, through
    OpenTelemetry's global providers. Without either, nothing is exported
    and OpenTelemetry is not imported.

    While it is open, the runtime raises the garbage collector's first
    threshold (process-wide) to ``gc_threshold`` net allocations, unless it
    is higher already; the last runtime to close puts back what it found.
    Steps allocate many short-lived objects, and with CPython's default
    (700) a thousand runs in flight spend over a third of their CPU time in
    the collector (see ``runtime/_collector.py``). ``gc_threshold=None``
    leaves the collector as it is.
    """
    if not (math.isfinite(lease_s) and lease_s > 0):
        raise ConfigurationError(f"lease_s must be a positive number of seconds, got {lease_s}")
    if gc_threshold is not None and gc_threshold < 1:
        raise ConfigurationError(f"gc_threshold must be at least 1 (or None), got {gc_threshold}")
    cache = StepCache(cache_entries)
    keeper = LeaseKeeper(LeaseTerms(lease_s, LeaseClock()))
    otel = _otel(tracer_provider, meter_provider)
    # The keeper's heartbeat runs inside the store's block: it stops before the store closes.
    if store is None or isinstance(store, str | os.PathLike):
        opening = open_journal(
            journal_location(store), recover=recover, busy_timeout_s=busy_timeout_s
        )
        async with opening as journal, keeper.running():
            with raised_threshold(gc_threshold):
                yield Runtime(journal, limits, cache, keeper, otel)
    else:
        async with keeper.running():
            with raised_threshold(gc_threshold):
                yield Runtime(store, limits, cache, keeper, otel)


def _otel(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> OtelExport | None:
    """The runtime's OpenTelemetry export: given providers, else ``TRIOFLOW_OTEL``, else none."""
    setting = os.environ.get("TRIOFLOW_OTEL")
    if tracer_provider is None and meter_provider is None and setting in (None, "", "0"):
        return None  # off: OpenTelemetry is not imported
    try:
        from .traces import _otel
    except ImportError as error:
        raise ConfigurationError(
            f"OpenTelemetry export needs the otel extra (pip install 'trioflow[otel]'): {error}"
        ) from None
    if tracer_provider is None and meter_provider is None:
        return _otel.otel_from_environment(setting)
    return _otel.OtelExport(tracer_provider, meter_provider)


def run_sync(
    pipeline: StepLike,
    input: Any = None,
    *,
    context: BaseContext | None = None,
    resources: Any = None,
    limits: UsageLimits | None = None,
) -> PipelineResult:
    """Run one pipeline from a script: ``trio.run`` around ``rt.run``, on the default store."""

    async def main() -> PipelineResult:
        async with open_runtime(limits=limits) as runtime:
            return await runtime.run(pipeline, input, context=context, resources=resources)

    return trio.run(main)
