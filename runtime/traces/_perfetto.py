"""A run's trace as Chrome/Perfetto trace-event JSON, for ui.perfetto.dev.

What the file holds (the JSON object format, timestamps in microseconds
since the run started):

* one process (``pid`` 1) named after the pipeline and the run id, and one
  thread track per actor, named by its path and numbered by first
  appearance in the trace (``M`` metadata events);
* a complete slice (``X``) for each actor's span, from its first message
  to its exit or cancellation, with the step's status, attempts, cost,
  tokens and reason as arguments; inside a step's slice, one slice per
  attempt (when it retried) and one for its fallback;
* a flow arrow (``s`` then ``f``, one id each) from every message's send to
  its receipt, paired in order per (sender, receiver, message type); each
  end binds to a ``message`` marker (a thread-scoped instant of category
  ``message``) at the exact time and on the track of the sender and of the
  receiver, inside their slices;
* counters (``C``): the cumulative cost and tokens the governor committed,
  and each actor's mailbox depth (messages sent to it and not yet received);
* thread-scoped instants (``i``, category ``note``) for retries, fallbacks,
  redirects, cache hits, restored steps, pauses, resumes, dropped messages,
  restarts and cancellations (with the reason); the governor's denials,
  waits and breaches are shown on the track of the step they concern.

Every event has a category (``__metadata`` for names, ``counter`` for
counters): some importers (TracerBench) fail on an event without one.

Why markers: viewers bind a flow event differently. Chrome DevTools binds
it only to an event of the same category, thread and exact timestamp;
Perfetto binds it (``bp: "e"``) to the slice on top of its track's stack
when the flow event is read, which may be a stale instant or a finished
slice. A send happens in the middle of its actor's slice, where no slice
starts; so each (track, timestamp) with message ends gets one marker, its
flow events written right after it: both viewers then bind the arrow to
that marker. At one timestamp, events are written metadata, counters,
instants that start with a slice, slices (longer first), markers with their
flows (in the order the messages happened, so a send precedes its receipt),
then the other instants.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
from trioflow.actors import TraceKind

from .._notes import NoteKind
from .._paths import last_segment, parent_of, step_of
from ._tree import (
    RUN_PATH,
    STARTED,
    ActorSpan,
    NodeKind,
    RunTrace,
    TimedEvent,
    TraceNode,
)
from ._tree import is_anchor as _is_anchor

#: The process every event belongs to: one run per file.
PID = 1

#: Notes that are not instants: governor bookkeeping (commits become the usage
#: counters), the start of the first drive (the start of the timeline) and a
#: step's outcome (its slice already ends there).
_NOT_INSTANTS = frozenset({NoteKind.GRANT, NoteKind.COMMIT, STARTED, NoteKind.OUTCOME})
#: Governor notes shown on the track of the step they concern (their ``peer``): a
#: reservation refused or waiting for room, a limit breached.
_ABOUT_PEER = frozenset({NoteKind.DENY, NoteKind.WAIT, NoteKind.BREACH})

# Where an event goes among events at the same timestamp (see the module docstring).
_METADATA, _COUNTER, _EARLY_INSTANT, _SLICE, _MESSAGE, _INSTANT = range(6)

#: The category of flows and of the markers they bind to.
MESSAGE_CATEGORY = "message"


def perfetto_trace(trace: RunTrace) -> dict[str, Any]:
    """The trace-event JSON document of ``trace`` (see the module docstring)."""
    return {"traceEvents": _Export(trace).events(), "displayTimeUnit": "ms"}


def perfetto_json(trace: RunTrace) -> str:
    """:func:`perfetto_trace` as JSON text."""
    return json.dumps(perfetto_trace(trace), indent=None, separators=(",", ":"))


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


class _Export:
    def __init__(self, trace: RunTrace) -> None:
        self._trace = trace
        actors = {span.path for span in trace.spans}
        self._tids: dict[str, int] = {}
        for timed in trace.events:
            path = timed.event.path
            if path in actors and path not in self._tids:
                self._tids[path] = len(self._tids) + 1
        self._nodes = {node.path: node for node in trace.nodes()}
        # (sort key, event): sorted once at the end.
        self._out: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
        self._slice_starts: set[tuple[int, int]] = set()

    def events(self) -> list[dict[str, Any]]:
        self._metadata()
        self._slices()
        self._flows()
        self._counters()
        self._instants()
        self._out.sort(key=lambda item: item[0])
        return [event for _, event in self._out]

    def _emit(self, ts: int, rank: int, event: dict[str, Any], tie: int = 0) -> None:
        event["ts"] = ts
        event["pid"] = PID
        self._out.append(((ts, rank, tie), event))

    def _track(self, path: str) -> int | None:
        """The track of ``path``, or of its nearest actor ancestor (attempts, fallbacks)."""
        path = step_of(path)
        while path:
            if path in self._tids:
                return self._tids[path]
            path = parent_of(path)
        return None

    # -- names

    def _metadata(self) -> None:
        trace = self._trace
        self._emit(
            0,
            _METADATA,
            {
                "ph": "M",
                "name": "process_name",
                "cat": "__metadata",
                "args": {"name": f"{trace.pipeline_name} (run {trace.run_id})"},
            },
        )
        for path, tid in self._tids.items():
            name = {
                "ph": "M",
                "name": "thread_name",
                "cat": "__metadata",
                "tid": tid,
                "args": {"name": path},
            }
            order = {
                "ph": "M",
                "name": "thread_sort_index",
                "cat": "__metadata",
                "tid": tid,
                "args": {"sort_index": tid},
            }
            self._emit(0, _METADATA, name)
            self._emit(0, _METADATA, order)

    # -- slices

    def _slices(self) -> None:
        for span in self._trace.spans:
            self._actor_slice(span)
        for node in self._nodes.values():
            if node.kind in (NodeKind.ATTEMPT, NodeKind.FALLBACK):
                self._work_slice(node)

    def _actor_slice(self, span: ActorSpan) -> None:
        args: dict[str, Any] = {"path": span.path, "end": span.end.value}
        if span.reason is not None:
            args["reason"] = span.reason
        if span.restored:
            args["restored"] = True
        node = self._nodes.get(span.path)
        if node is not None:
            args.update(_node_args(node))
        name = last_segment(span.path)
        self._slice(self._tids[span.path], span.start_s, span.end_s, name, "actor", args)

    def _work_slice(self, node: TraceNode) -> None:
        tid = self._track(node.path)
        if tid is not None:
            args = {"path": node.path, **_node_args(node)}
            self._slice(tid, node.start_s, node.end_s, node.name, node.kind.value, args)

    def _slice(
        self, tid: int, start_s: float, end_s: float, name: str, cat: str, args: dict[str, Any]
    ) -> None:
        ts = _us(start_s)
        dur = max(_us(end_s) - ts, 0)
        if dur > 0:
            self._slice_starts.add((tid, ts))
        event = {"ph": "X", "name": name, "cat": cat, "tid": tid, "dur": dur, "args": args}
        self._emit(ts, _SLICE, event, tie=-dur)

    # -- flows

    def _flows(self) -> None:
        ends = sorted(self._flow_ends(), key=lambda end: (end.ts, end.order))
        markers: dict[tuple[int, int], dict[str, Any]] = {}
        for end in ends:
            marker = markers.get((end.tid, end.ts))
            if marker is None:
                marker = {
                    "ph": "i",
                    "s": "t",
                    "name": "",
                    "cat": MESSAGE_CATEGORY,
                    "tid": end.tid,
                    "args": {"messages": []},
                }
                markers[(end.tid, end.ts)] = marker
                self._emit(end.ts, _MESSAGE, marker, tie=end.order)
            marker["args"]["messages"].append(f"{end.verb} {end.label}")
            flow = {
                "ph": end.phase,
                "bp": "e",
                "name": end.label,
                "cat": MESSAGE_CATEGORY,
                "id": end.flow_id,
                "tid": end.tid,
            }
            self._emit(end.ts, _MESSAGE, flow, tie=end.order)
        for marker in markers.values():
            marker["name"] = ", ".join(marker["args"]["messages"])

    def _flow_ends(self) -> Iterator[_FlowEnd]:
        """Both ends of each message's flow, ``order`` being the trace order of the event."""
        sent: defaultdict[tuple[str, str, str], deque[tuple[float, int]]] = defaultdict(deque)
        flow_id = 0
        for order, timed in enumerate(self._trace.events):
            event = timed.event
            if _is_anchor(event):
                sent.clear()  # a message sent in an earlier drive is never received in this one
            elif event.kind is TraceKind.SEND and event.peer is not None:
                sent[(event.path, event.peer, event.label)].append((timed.offset_s, order))
            elif event.kind is TraceKind.RECEIVE:
                sender = event.peer or RUN_PATH
                queue = sent[(sender, event.path, event.label)]
                if not queue:
                    continue
                sent_s, sent_order = queue.popleft()
                source, target = self._track(sender), self._track(event.path)
                if source is None or target is None:
                    continue
                flow_id += 1
                label = event.label
                yield _FlowEnd(_us(sent_s), sent_order, source, "s", "send", label, flow_id)
                yield _FlowEnd(_us(timed.offset_s), order, target, "f", "receive", label, flow_id)

    # -- counters

    def _counters(self) -> None:
        self._usage_counter()
        self._mailbox_counters()

    def _usage_counter(self) -> None:
        commits = list(self._trace.commits())
        tid = self._track(commits[0][0].event.path) if commits else None
        tid = tid if tid is not None else min(self._tids.values(), default=None)
        if tid is None:
            return
        self._counter(0, tid, "usage", {"cost_usd": 0, "tokens": 0})
        cost, tokens = Decimal(0), 0
        for timed, _, usage in commits:
            cost += usage.cost_usd
            tokens += usage.total_tokens
            args = {"cost_usd": float(cost), "tokens": tokens}
            self._counter(_us(timed.offset_s), tid, "usage", args)

    def _mailbox_counters(self) -> None:
        depth: defaultdict[str, int] = defaultdict(int)
        running: set[str] = set()
        for timed, path, change in self._mailbox_changes(running):
            tid = self._tids.get(path)
            if tid is None:
                continue
            new = 0 if change is None else max(depth[path] + change, 0)
            if new == depth[path]:
                continue
            depth[path] = new
            self._counter(_us(timed.offset_s), tid, f"mailbox {path}", {"depth": new})

    def _mailbox_changes(self, running: set[str]) -> Iterator[tuple[TimedEvent, str, int | None]]:
        """``(event, actor, +1/-1)`` for each mailbox change, ``None`` to reset it to empty."""
        for timed in self._trace.events:
            event = timed.event
            if _is_anchor(event):
                for path in sorted(running):
                    yield timed, path, None
                running.clear()
                continue
            match event.kind:
                case TraceKind.SPAWN:
                    running.add(event.path)
                case TraceKind.SEND if event.peer in running:
                    yield timed, event.peer, +1
                case TraceKind.RECEIVE:
                    yield timed, event.path, -1
                case TraceKind.NOTE if event.label == NoteKind.DROPPED:
                    yield timed, event.path, -1
                case TraceKind.EXIT | TraceKind.CANCEL:
                    running.discard(event.path)
                    yield timed, event.path, None

    def _counter(self, ts: int, tid: int, name: str, args: dict[str, Any]) -> None:
        counter = {"ph": "C", "name": name, "cat": "counter", "tid": tid, "args": args}
        self._emit(ts, _COUNTER, counter)

    # -- instants

    def _instants(self) -> None:
        root = self._trace.roots[0].path if self._trace.roots else None
        for timed in self._trace.events:
            event = timed.event
            args: dict[str, Any] = {}
            if event.kind is TraceKind.CANCEL:
                name, about = "cancel", event.path
                args["reason"] = event.detail
            elif event.kind is TraceKind.RESTART:
                name, about = "restart", event.path
                args["error"] = event.detail
            elif event.kind is TraceKind.NOTE and event.label not in _NOT_INSTANTS:
                name, about = event.label, event.path
                if event.label in _ABOUT_PEER and event.peer:
                    about = event.peer
                    args["by"] = event.path
                if event.path == RUN_PATH:
                    about = root or RUN_PATH
                args["detail"] = event.detail
            else:
                continue
            tid = self._track(about)
            if tid is None:
                continue
            args["path"] = about
            ts = _us(timed.offset_s)
            rank = _EARLY_INSTANT if (tid, ts) in self._slice_starts else _INSTANT
            instant = {"ph": "i", "s": "t", "name": name, "cat": "note", "tid": tid, "args": args}
            self._emit(ts, rank, instant)


@attrs.frozen
class _FlowEnd:
    """One end of a message's flow: where (track, time) and which way."""

    ts: int
    #: The position of the send or receipt in the trace: a send precedes its receipt.
    order: int
    tid: int
    phase: str
    verb: str
    label: str
    flow_id: int


def _node_args(node: TraceNode) -> dict[str, Any]:
    args: dict[str, Any] = {
        "status": node.status.value,
        "attempts": node.attempts,
        "cost_usd": str(node.cost_usd),
        "tokens": node.tokens,
    }
    if node.reason is not None:
        args["reason"] = node.reason
    return args
