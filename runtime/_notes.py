"""The trace's notes: what the runtime tells the trace besides the kernel's own events.

A note is a kernel :class:`~trioflow.actors.TraceEvent` of kind ``NOTE``;
its ``label`` is a :class:`NoteKind`, written and read by that name (never
by a string literal), so the steps and the governor that write notes and
the trace tree, the Perfetto export, live progress and the testing kit
that read them agree by construction. A note's ``detail`` is for people;
what a reader needs from it comes from a structured source instead:

* usage: a ``COMMIT`` note's ``detail`` is the call's ledger key
  (``<path>#<attempt>#<call>``, see :mod:`trioflow.runtime._paths`), which
  names the ledger entry that holds the usage; a live sink also gets the
  usage itself as the note's ``data`` (:class:`Committed`). Trace events
  are stored without ``data``: a stored trace is read with the run's ledger.
* attempts: a ``RETRY`` note is a :class:`RetryNote` (the attempt that
  failed and why), written and read back here and nowhere else.
* which step a governor note concerns: its ``peer``.
"""

from __future__ import annotations

import enum

import attrs
import trio
from trioflow.actors import TraceEvent, TraceKind

from ._usage import Usage


class NoteKind(enum.StrEnum):
    """The label of every note the runtime (and the kernel) writes."""

    #: The first drive of a run begins (at the run's path ``""``; detail: the wall clock).
    STARTED = "started"
    #: A later drive begins: the run was resumed (detail: the wall clock).
    RESUMED = "resumed"
    #: A step completed in an earlier drive: its record was restored, nothing ran.
    RESTORED = "restored"
    #: A step finished (detail: a ``StepOutcome``).
    OUTCOME = "outcome"
    #: An attempt failed and the step tries again (see :class:`RetryNote`).
    RETRY = "retry"
    #: The step's attempts failed and its fallback runs (detail: the fallback's name).
    FALLBACK = "fallback"
    #: A human-input step waits for an answer (detail: its message).
    PAUSE = "pause"
    #: The step's result came from the cache (detail: the start of the cache key).
    CACHE_HIT = "cache_hit"
    #: A plugin redirected the call to another agent (detail: the agent's class).
    REDIRECT = "redirect"
    #: The governor granted a reservation (peer: the step; detail: the estimate).
    GRANT = "grant"
    #: The governor refused a reservation (peer: the step; detail: why).
    DENY = "deny"
    #: A reservation waits for room under a limit (peer: the step; detail: the estimate).
    WAIT = "wait"
    #: The governor committed a call's usage (peer: the step; detail: the ledger key).
    COMMIT = "commit"
    #: A call spent more than it reserved (peer: the step).
    EXCESS = "excess"
    #: A usage limit was exceeded (peer: the step; detail: which limit).
    BREACH = "breach"
    #: A tool-calling agent called a tool (detail: the tool's name). No agent calls tools
    #: yet: the OpenTelemetry export (``traces/_otel.py``) already turns the pair into a span.
    TOOL_CALL = "tool_call"
    #: The tool returned (detail: ``ok`` or the failure).
    TOOL_DONE = "tool_done"
    #: The kernel dropped a message nobody could answer (written by ``trioflow.actors``).
    DROPPED = "dropped"


def note(
    kind: NoteKind,
    path: str,
    detail: str | None = None,
    *,
    about: str | None = None,
    data: object = None,
) -> TraceEvent:
    """A note of ``kind`` by the actor at ``path``, now; ``about`` is the step it concerns."""
    return TraceEvent(TraceKind.NOTE, path, trio.current_time(), kind, about, detail, data)


def is_note(event: TraceEvent, kind: NoteKind) -> bool:
    """Whether ``event`` is a note of ``kind``."""
    return event.kind is TraceKind.NOTE and event.label == kind


@attrs.frozen(slots=True)
class Committed:
    """A ``COMMIT`` note's ``data``: the call's ledger key and the usage committed."""

    key: str
    usage: Usage


@attrs.frozen(slots=True)
class RetryNote:
    """A ``RETRY`` note: attempt ``attempt`` failed for ``reason`` and the step tries again."""

    attempt: int
    #: The failure's kind and feedback (``agent_error: RuntimeError: overloaded``).
    reason: str

    @property
    def detail(self) -> str:
        """How the note reads (``attempt 1 agent_error: ...``)."""
        return f"{_ATTEMPT}{self.attempt} {self.reason}"

    def event(self, path: str) -> TraceEvent:
        return note(NoteKind.RETRY, path, self.detail)

    @classmethod
    def of(cls, event: TraceEvent) -> RetryNote:
        """The retry ``event`` notes, read back from the :attr:`detail` this class wrote."""
        number, _, reason = (event.detail or "").removeprefix(_ATTEMPT).partition(" ")
        if not (is_note(event, NoteKind.RETRY) and number.isdigit()):
            raise ValueError(f"not a retry note: {event!r}")
        return cls(int(number), reason)


_ATTEMPT = "attempt "
