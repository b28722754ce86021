"""Resuming a run: check it may go on, validate the answer, read its journal, claim it.

A resume reads before it writes. It refuses a run that has ended, a run
whose owner still holds a lease, and an answer for a run that may be
running elsewhere; it validates the answer against the human-input step
it belongs to; it reads the step records and ledger the re-walk replays
from. Only then does it claim the run, with a compare-and-set
(:meth:`~trioflow.persistence.RunStore.swap_run`) that fails if the run
record changed since it was read: of resumes racing for one run exactly
one claims it, and the others raise :class:`RunClaimed` having written
nothing, their answers included. The runner (``_runtime``) drives the run
from what :func:`prepare` returns and the :class:`Ownership` of
:func:`claim`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio
from trioflow.persistence import (
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunStore,
    StepRecord,
    TrustedTypes,
)

from ._dsl._context import BaseContext
from ._dsl._human import HumanStep
from ._dsl._pipeline import Pipeline
from ._errors import ConfigurationError, HumanInputRequired, RunClaimed, RunNotResumable
from ._lease import LeaseTerms, Ownership
from ._logging import run_claimed
from ._paths import locate
from ._results import RunStatus


class _NoInput:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_INPUT"


#: ``resume()`` without an answer (``None`` is a valid answer).
NO_INPUT: Any = _NoInput()

_RESUMABLE = frozenset(
    {
        RunStatus.QUEUED.value,
        RunStatus.PAUSED.value,
        RunStatus.RUNNING.value,
        RunStatus.CANCELLED.value,
        RunStatus.INTERRUPTED.value,
    }
)


@attrs.frozen(slots=True)
class Resumption:
    """What a resume read before its claim: all the re-walk needs from the journal."""

    #: The answers given so far, by pause path, this resume's included.
    answers: Mapping[str, PauseRecord]
    #: The pause this resume answers, to journal once the run is claimed (``None``: no answer).
    answered: PauseRecord | None
    #: The committed step records, by path: these steps are replayed, not run again.
    records: dict[str, StepRecord]
    ledger: Sequence[LedgerEntry]


@attrs.frozen(slots=True)
class Answer:
    """A resume's answer (``NO_INPUT`` if none), and the pause ``path`` it is for."""

    value: Any
    path: str | None


async def prepare(
    store: RunStore,
    pipeline: Pipeline,
    record: RunRecord,
    answer: Answer,
    *,
    types: TrustedTypes,
    now: datetime.datetime,
    root: str,
) -> Resumption:
    """Check ``record`` may be resumed at ``now``, validate ``answer``, read the journal.

    ``root`` is the path of the run's top pipeline, under which the
    answered pause's step is looked up. Nothing is written here.
    """
    require_resumable(record, now, answered=answer.value is not NO_INPUT)
    require_context(record)
    answers, answered = await _answers(store, pipeline, record, answer, types=types, root=root)
    records = {step.path: step for step in await store.steps_of(record.run_id, types=types)}
    ledger = await store.ledger_of(record.run_id)
    return Resumption(answers, answered, records, ledger)


async def claim(store: RunStore, terms: LeaseTerms, record: RunRecord) -> Ownership:
    """Own the run, ``running``, if it is still as read; else raise :class:`RunClaimed`.

    Shielded: a cancellation cannot leave this resume unsure whether it
    owns the run (the drive that follows releases it if cancelled).
    """
    running = attrs.evolve(record, status=RunStatus.RUNNING.value, paused_at=())
    with trio.CancelScope(shield=True):
        claimed = await store.swap_run(record, terms.claim(running))
    if claimed is None:
        raise claimed_since(record)
    took_over = record.status == RunStatus.RUNNING.value
    run_claimed(record.run_id, record.status, epoch=claimed.epoch, took_over=took_over)
    return Ownership(store, claimed, terms)


async def _answers(
    store: RunStore,
    pipeline: Pipeline,
    record: RunRecord,
    answer: Answer,
    *,
    types: TrustedTypes,
    root: str,
) -> tuple[dict[str, PauseRecord], PauseRecord | None]:
    """The answers given so far with ``answer`` validated, and its pause to journal.

    Nothing is written here: the answered pause is journaled only once
    the resume has claimed the run, so a resume that loses the claim
    leaves the pause as it was.
    """
    pauses = await store.pauses_of(record.run_id, types=types)
    answers = {p.path: p for p in pauses if p.answered_at is not None}
    pending = [p for p in pauses if p.answered_at is None]
    if answer.value is NO_INPUT:
        # An interrupted run re-walks to its pauses and waits there again.
        if pending and record.status == RunStatus.PAUSED.value:
            waiting = "; ".join(f"{p.path}: {p.message}" for p in pending)
            raise HumanInputRequired(f"run {record.run_id!r} waits for input at {waiting}")
        return answers, None
    if not any(answer.path in (None, p.path) for p in pending):
        await _require_unchanged(store, record)  # else _chosen_pause says what is wrong
    pause = _chosen_pause(record.run_id, pending, answer.path)
    step = locate(pipeline, pause.path, root=root)
    if not isinstance(step, HumanStep):
        raise ConfigurationError(f"{pause.path!r} is not a human-input step of this pipeline")
    validated = step.validate(answer.value, path=pause.path)
    answered = attrs.evolve(
        pause, answer=validated, answered_at=datetime.datetime.now(datetime.UTC)
    )
    return {**answers, pause.path: answered}, answered


async def _require_unchanged(store: RunStore, record: RunRecord) -> None:
    """Raise :class:`RunClaimed` if the stored run is no longer at ``record``'s revision.

    For a resume that read the run record, then its pauses: an answer
    it finds missing may have been given in between by a resume that
    claimed the run.
    """
    if (await store.get_run(record.run_id)).revision != record.revision:
        raise claimed_since(record)


def require_resumable(record: RunRecord, now: datetime.datetime, *, answered: bool) -> None:
    """Refuse a run that has ended, a run whose owner's lease runs at ``now``, and an
    answer for a run that may be running elsewhere."""
    if record.status not in _RESUMABLE:
        raise RunNotResumable(
            f"run {record.run_id!r} has status {record.status!r}: only queued, paused, running "
            "(interrupted) or cancelled runs can be resumed"
        )
    if not answered and record.status == RunStatus.RUNNING.value and record.leased_at(now):
        assert record.lease_expires_at is not None  # narrows the type: leased_at checked it
        until = record.lease_expires_at.astimezone(datetime.UTC).isoformat(timespec="seconds")
        raise RunClaimed(
            f"run {record.run_id!r} is running: its owner holds a lease on it until {until} "
            "and renews it while its process is alive. If that process died, resume the run "
            "once the lease has run out",
            run_id=record.run_id,
        )
    if answered and record.status == RunStatus.RUNNING.value:
        raise RunClaimed(
            f"run {record.run_id!r} is running, so it takes no answer: another resume (or the "
            "run itself) is driving it, or its process died. If that process died, resume the "
            "run without an answer to take it over: it goes on to its pauses again",
            run_id=record.run_id,
        )


def require_context(record: RunRecord) -> None:
    """Refuse a run whose stored context is of a class this pipeline does not declare."""
    if not isinstance(record.context, BaseContext):
        raise ConfigurationError(
            f"run {record.run_id!r} started from a context the journal stores as "
            f"{getattr(record.context, 'class_name', type(record.context).__name__)}, "
            "which this pipeline does not declare: resume with the pipeline that ran it "
            "(from the command line: the same pipeline file)"
        )


def claimed_since(record: RunRecord) -> RunClaimed:
    """The error of a resume that lost the run to another after reading it."""
    return RunClaimed(
        f"run {record.run_id!r} was claimed by another resume after this one read it "
        f"(status {record.status!r}): this resume did not start it and changed nothing",
        run_id=record.run_id,
    )


def _chosen_pause(run_id: str, pending: list[PauseRecord], path: str | None) -> PauseRecord:
    if not pending:
        raise ConfigurationError(
            f"run {run_id!r} is not waiting for human input (any pause it had is answered): "
            "resume it without an answer"
        )
    if path is None:
        if len(pending) > 1:
            paths = ", ".join(repr(p.path) for p in pending)
            raise HumanInputRequired(
                f"run {run_id!r} waits for input at several steps ({paths}): pass path=..."
            )
        return pending[0]
    for pause in pending:
        if pause.path == path:
            return pause
    paths = ", ".join(repr(p.path) for p in pending)
    raise ConfigurationError(f"run {run_id!r} has no pause at {path!r}; waiting at {paths}")
