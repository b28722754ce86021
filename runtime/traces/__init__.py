"""A run's trace: the tree of what every actor did, and its Perfetto export.

``await rt.trace(run_id)`` returns a :class:`RunTrace`, built from the
kernel's trace events and the run's journal; :func:`perfetto_json` turns
it into a file ui.perfetto.dev opens. ``_otel`` exports runs to
OpenTelemetry as they happen; it is imported only when
``open_runtime(tracer_provider=...)`` or ``TRIOFLOW_OTEL=1`` turns it on.
:class:`NoteKind` names every note a run writes into the kernel's trace
events. The command line's views of a trace (``trioflow trace``, live
progress) are built here too.
"""

from .._notes import NoteKind
from ._perfetto import perfetto_json, perfetto_trace
from ._tree import (
    ActorSpan,
    NodeKind,
    NodeStatus,
    NoTrace,
    RunTrace,
    SpanEnd,
    TimedEvent,
    TraceNode,
    filter_nodes,
)

__all__ = [
    "ActorSpan",
    "NoTrace",
    "NodeKind",
    "NodeStatus",
    "NoteKind",
    "RunTrace",
    "SpanEnd",
    "TimedEvent",
    "TraceNode",
    "filter_nodes",
    "perfetto_json",
    "perfetto_trace",
]
