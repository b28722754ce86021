"""Log records: what a run did that an operator wants to hear about.

Every record goes to a logger under ``trioflow`` (``trioflow.run``,
``trioflow.step``, ``trioflow.governor``, ``trioflow.lease``) with
structured fields (``extra=``): ``run_id`` always, ``step_path`` when a
step is concerned, and the figures the message states. What is logged:

* INFO: each run's start and end (``completed``, ``paused``), each retry,
  each pause for human input, each claim of a run by a resume.
* WARNING: each step failure, fallback, usage-limit refusal and breach,
  a run that ended ``failed``, ``usage_limit``, ``cancelled`` or
  ``interrupted``, and each takeover (this drive lost its run to another
  owner, or this resume took a run over from an owner whose lease ran out).
* DEBUG: every step's outcome, the hot path of a successful step. Nothing
  of a successful step is logged at INFO.

Step records come from the run's trace events (:class:`LoggedTrace` keeps
them), so the steps' code logs nothing itself and a record says what the
trace says. Their text is the trace's, which is redacted before it is
recorded (an echoed API key never reaches the trace): no secret reaches a
log record either.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from trioflow.actors import TraceEvent, TraceKind

from ._notes import NoteKind
from ._steps._step_actor import StepOutcome
from ._usage import Usage

#: The root of trioflow's loggers; ``trioflow run -v`` sets it to INFO, ``-vv`` to DEBUG.
ROOT = logging.getLogger("trioflow")
RUN = logging.getLogger("trioflow.run")
STEP = logging.getLogger("trioflow.step")
GOVERNOR = logging.getLogger("trioflow.governor")
LEASE = logging.getLogger("trioflow.lease")

_ENDED_WELL = frozenset({"completed", "paused"})
_NOTE = TraceKind.NOTE
_DEBUG_STEPS = functools.partial(STEP.isEnabledFor, logging.DEBUG)


class LoggedTrace:
    """A drive's trace, kept in memory, that logs what its notes say (a trace sink).

    One object, one call per event: every event of every actor passes
    here, so keeping the trace and looking for the notes to log are not
    two sinks behind a tee. Events other than notes cost an append and a
    comparison.
    """

    __slots__ = ("_run_id", "events")

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self.events: list[TraceEvent] = []

    def record(self, event: TraceEvent) -> None:
        self.events.append(event)
        if event.kind is _NOTE:
            self._note(event)

    def _note(self, event: TraceEvent) -> None:
        label = event.label
        if label == NoteKind.OUTCOME:  # one per step: the common case first
            if event.detail in _FAILED:
                self._step(logging.WARNING, event.path, "ended %s", event.detail)
            elif _DEBUG_STEPS():
                self._step(logging.DEBUG, event.path, "ended %s", event.detail)
            return
        match label:
            case NoteKind.RETRY:
                self._step(logging.INFO, event.path, "retry: %s", event.detail)
            case NoteKind.FALLBACK:
                self._step(logging.WARNING, event.path, "fell back to %s", event.detail)
            case NoteKind.PAUSE:
                self._step(logging.INFO, event.path, "waits for human input: %s", event.detail)
            case NoteKind.DENY:
                self._governed(event, "call refused: %s")
            case NoteKind.BREACH:
                self._governed(event, "usage limit breached: %s")
            case _:
                pass

    def _step(self, level: int, path: str, message: str, detail: str | None) -> None:
        if STEP.isEnabledFor(level):
            fields = {"run_id": self._run_id, "step_path": path}
            STEP.log(level, f"run %s step %s {message}", self._run_id, path, detail, extra=fields)

    def _governed(self, event: TraceEvent, message: str) -> None:
        if GOVERNOR.isEnabledFor(logging.WARNING):
            fields = {"run_id": self._run_id, "step_path": event.peer}
            GOVERNOR.warning(
                f"run %s step %s {message}", self._run_id, event.peer, event.detail, extra=fields
            )


_FAILED = frozenset({StepOutcome.FAILED.value, StepOutcome.LIMIT.value})


def run_started(run_id: str, pipeline: str, *, resumed: bool, epoch: int) -> None:
    what = "resumed" if resumed else "started"
    fields = {"run_id": run_id, "pipeline": pipeline, "epoch": epoch}
    RUN.info("run %s %s (pipeline %s, epoch %d)", run_id, what, pipeline, epoch, extra=fields)


def run_ended(run_id: str, status: str, usage: Usage, error: str | None) -> None:
    level = logging.INFO if status in _ENDED_WELL else logging.WARNING
    if not RUN.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "cost_usd": str(usage.cost_usd),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "error": error,
    }
    because = "" if error is None else f": {error}"
    RUN.log(level, "run %s ended %s (%s)%s", run_id, status, usage, because, extra=fields)


def run_claimed(run_id: str, previous_status: str, *, epoch: int, took_over: bool) -> None:
    """A resume claimed a run; ``took_over`` when its owner's lease had run out."""
    fields = {"run_id": run_id, "previous_status": previous_status, "epoch": epoch}
    if took_over:
        LEASE.warning(
            "run %s taken over at epoch %d: its owner's lease had run out",
            run_id,
            epoch,
            extra=fields,
        )
    else:
        LEASE.info("run %s (%s) claimed at epoch %d", run_id, previous_status, epoch, extra=fields)


def run_lost(run_id: str, epoch: int) -> None:
    """This drive's run was taken over by another resume: it stops, writing nothing more."""
    LEASE.warning(
        "run %s was taken over by another owner: this drive (epoch %d) stopped",
        run_id,
        epoch,
        extra={"run_id": run_id, "epoch": epoch},
    )


def set_verbosity(verbose: int) -> None:
    """``-v``: INFO, ``-vv``: DEBUG for trioflow's loggers, with a handler to standard error.

    Without ``-v`` nothing is changed: logging's defaults (warnings and
    worse, to standard error) apply, as in any program that embeds trioflow.
    """
    if verbose <= 0:
        return
    ROOT.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    if not ROOT.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ROOT.addHandler(handler)
