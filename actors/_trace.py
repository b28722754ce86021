"""Trace events: what the kernel reports about every actor.

The kernel reports each spawn, message sent and received, exit (with its
outcome), restart and cancellation (with its reason) to a *trace sink*.
Tracing is always on, so an event is a small frozen slotted object built
from values the kernel already holds, and the in-memory sink only appends
it to a list. Timestamps come from :func:`trio.current_time`, the run's
monotonic clock, so traces taken under :class:`trio.testing.MockClock` are
deterministic.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs


class TraceKind(enum.Enum):
    """What happened to an actor."""

    SPAWN = "spawn"
    SEND = "send"
    RECEIVE = "receive"
    EXIT = "exit"
    CANCEL = "cancel"
    RESTART = "restart"
    #: An application-level event (for example a governor decision or a
    #: retry) reported by code built on the kernel.
    NOTE = "note"


@attrs.frozen(slots=True)
class TraceEvent:
    """One thing that happened to one actor.

    ``path`` is the actor the event is about. For ``SEND`` and ``RECEIVE``,
    ``peer`` is the other end (the receiver of a send, the sender of a
    receive; ``None`` when the sender is not an actor) and ``label`` is the
    message's class name. For ``EXIT`` the label is the outcome (``ok`` or
    ``failed``) and ``detail`` the error; for ``CANCEL`` ``detail`` is the
    cancellation reason. For ``NOTE`` the label names the event.

    ``data`` is a structured payload a note may carry for sinks that watch
    a run live (code built on the kernel defines what it holds). It is not
    stored with a trace: what a stored trace needs, its readers take from
    the fields above and from the records the note points to.
    """

    kind: TraceKind
    path: str
    time: float
    label: str = ""
    peer: str | None = None
    detail: str | None = None
    data: object = None


class TraceSink(Protocol):
    """Receives every trace event of the actors it was given to.

    ``record`` is called synchronously from the actor's task and must not
    block: a sink that writes somewhere slow buffers and flushes elsewhere.
    """

    def record(self, event: TraceEvent) -> None: ...


@attrs.define(slots=True)
class MemoryTraceSink:
    """A sink that keeps every event in order, in memory."""

    events: list[TraceEvent] = attrs.field(factory=list)

    def record(self, event: TraceEvent) -> None:
        self.events.append(event)

    def of_kind(self, kind: TraceKind) -> list[TraceEvent]:
        """The events of one kind, in the order they happened."""
        return [event for event in self.events if event.kind is kind]


class TeeTraceSink:
    """Records each event in every one of its sinks, in order.

    Lets a run keep its trace while something else (live progress) watches.
    """

    __slots__ = ("_sinks",)

    def __init__(self, *sinks: TraceSink) -> None:
        self._sinks = sinks

    def record(self, event: TraceEvent) -> None:
        for sink in self._sinks:
            sink.record(event)
