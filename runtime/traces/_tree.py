"""A run's trace as a tree: what every actor did, how it ended, what it cost.

The kernel's trace events say when each actor started, what it sent and
received and how it ended; the step records say what each step achieved
and cost. :func:`build_trace` joins the two into a :class:`RunTrace`:

* every event placed on one timeline (:class:`TimedEvent`): seconds since
  the run started, across pauses and resumes, and the wall-clock time.
  Every drive of a run (the first and each resume) begins with a NOTE at
  the run's own path ``""``, labelled ``started`` or ``resumed``, whose
  ``time`` is the monotonic clock and whose ``detail`` is the wall clock
  (ISO 8601, UTC) at that moment (:func:`clock_anchor`). Within a drive an
  event's wall time is the anchor's plus the monotonic time since it. A
  later drive is placed where its wall clock says, but never before the
  previous drive ended: monotonic clocks of two processes cannot be
  compared, and a mock clock may run far ahead of the wall clock.
* what each actor did in each drive (:class:`ActorSpan`): from its first
  message (or its spawn, if it never got one) to its exit or cancellation.
* the tree (:class:`TraceNode`): the top pipeline, its steps, their
  branches, loop iterations and map items, a step's attempts (when it
  retried) and its fallback, each with a status, times, attempts, cost,
  tokens and the reason for a failure or a cancellation.

A step's status, attempts, cost and tokens come from its completion record
when it has one (a record is what the journal guarantees); a step without
one (cancelled, paused, or stopped by a crash) is described by the trace:
its exit or cancellation, and the usage the governor committed for it and
the steps beneath it. A step whose record carries a usage-limit breach has
failed, with the breach as its reason, even when its own call returned: the
run stopped there. Attempts and fallbacks are not actors: they come from
the step's ``retry`` and ``fallback`` notes (see :mod:`trioflow.runtime._notes`),
their usage from the run's ledger (each entry's key names the step, the
attempt and the call), and a fallback's outcome from the named parts of its
step's history (:func:`~trioflow.runtime._steps._fallback_history.fallback_history`).
Nodes' paths are read with :mod:`trioflow.runtime._paths`.
"""

from __future__ import annotations

import datetime
import enum
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import LedgerEntry, PauseRecord, RunRecord, StepRecord

from .._errors import TrioflowError
from .._notes import NoteKind, RetryNote, is_note, note
from .._paths import (
    SegmentKind,
    attempt_path,
    fallback_path,
    is_within,
    last_segment,
    parent_of,
    parse_ledger_key,
    parse_segment,
)
from .._results import StepResult
from .._steps._fallback_history import fallback_history
from .._steps._messages import Execute
from .._usage import Usage

#: The path of run-level notes: the run's root supervisor.
RUN_PATH = ""
#: Labels of the notes that begin a drive (see the module docstring).
STARTED = NoteKind.STARTED
RESUMED = NoteKind.RESUMED

_EXECUTE = Execute.__name__


class NoTrace(TrioflowError):
    """The run exists but has no trace events stored."""

    def __init__(self, run_id: str, status: str) -> None:
        why = (
            "a trace is stored when a run ends, pauses or is interrupted, so it is still "
            "running or its process was killed"
            if status == "running"
            else "no trace events were stored with it"
        )
        super().__init__(f"run {run_id!r} has no trace (status: {status}): {why}")
        self.run_id = run_id
        self.status = status


class NodeKind(enum.StrEnum):
    """What a node of the tree is, read from its path."""

    #: The top pipeline (``main``).
    PIPELINE = "pipeline"
    #: A step of a pipeline (``<pipeline>/<index>:<name>``).
    STEP = "step"
    #: A branch of a parallel, conditional or router step, or a router's chooser.
    BRANCH = "branch"
    #: One iteration of a loop (``<loop>/loop[i]``).
    ITERATION = "iteration"
    #: One item of a map-over (``<map>/item[i]``).
    ITEM = "item"
    #: The fallback of a step (``<step>/fallback:<name>``).
    FALLBACK = "fallback"
    #: One attempt of a step that retried (``<step>#<attempt>``).
    ATTEMPT = "attempt"


class NodeStatus(enum.StrEnum):
    """How a node ended."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    #: No end was recorded: the trace was saved while it ran.
    RUNNING = "running"


class SpanEnd(enum.StrEnum):
    """How an actor's span ended."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: The drive's trace ends before the actor's exit.
    UNFINISHED = "unfinished"


@attrs.frozen
class TimedEvent:
    """A trace event placed on the run's timeline."""

    event: TraceEvent
    #: Seconds since the run started, across pauses and resumes.
    offset_s: float
    wall: datetime.datetime
    #: Which drive of the run recorded it: 0 for the first, then one per resume.
    drive: int


@attrs.frozen
class ActorSpan:
    """What one actor did in one drive: from its first message (or spawn) to its end.

    ``start_index`` and ``end_index`` are positions in :attr:`RunTrace.events`.
    """

    path: str
    start_s: float
    end_s: float
    end: SpanEnd
    reason: str | None
    #: The step completed in an earlier drive: its record was restored, nothing ran.
    restored: bool
    start_index: int
    end_index: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@attrs.frozen
class TraceNode:
    """One node of the tree: an actor, or a step's attempt or fallback.

    ``start_s`` and ``end_s`` are seconds since the run started (the first
    start and the last end over every drive); ``duration_s`` is the time it
    ran, summed over drives. ``cost_usd`` and ``tokens`` cover everything
    beneath it; ``reason`` says why it failed, was cancelled or waits.
    """

    path: str
    name: str
    kind: NodeKind
    status: NodeStatus
    start_s: float
    end_s: float
    duration_s: float
    started_at: datetime.datetime
    attempts: int
    cost_usd: Decimal
    tokens: int
    reason: str | None = None
    restored: bool = False
    children: tuple[TraceNode, ...] = ()

    def walk(self) -> Iterator[TraceNode]:
        """This node, then its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@attrs.frozen
class RunTrace:
    """A run's trace: its events on one timeline, its actors' spans and the tree."""

    run_id: str
    pipeline_name: str
    status: str
    #: The wall-clock time the timeline starts from.
    started_at: datetime.datetime
    events: tuple[TimedEvent, ...]
    spans: tuple[ActorSpan, ...]
    roots: tuple[TraceNode, ...]
    #: What each agent call committed, by ledger key (``<path>#<attempt>#<call>``).
    ledger: Mapping[str, Usage] = attrs.field(factory=dict)

    def commits(self) -> Iterator[tuple[TimedEvent, str, Usage]]:
        """Each governor commit on the timeline: its event, the step's path, the usage."""
        for timed in self.events:
            event = timed.event
            if is_note(event, NoteKind.COMMIT) and event.peer is not None:
                usage = self.ledger.get(event.detail or "")
                if usage is not None:
                    yield timed, event.peer, usage

    def nodes(self) -> Iterator[TraceNode]:
        """Every node, depth first."""
        for root in self.roots:
            yield from root.walk()

    def node(self, path: str) -> TraceNode:
        """The node at ``path``; ``KeyError`` if there is none."""
        for node in self.nodes():
            if node.path == path:
                return node
        raise KeyError(f"no node at {path!r} in the trace of run {self.run_id!r}")

    def filtered(self, *, failed: bool = False, path: str | None = None) -> tuple[TraceNode, ...]:
        """The tree pruned by :func:`filter_nodes`."""
        return filter_nodes(self.roots, failed=failed, path=path)


def filter_nodes(
    roots: Sequence[TraceNode], *, failed: bool = False, path: str | None = None
) -> tuple[TraceNode, ...]:
    """The nodes that match, with their ancestors so the tree stays a tree.

    ``failed`` keeps nodes that failed or were cancelled; ``path`` keeps
    nodes whose path starts with it. Both together keep nodes matching both.
    """

    def matches(node: TraceNode) -> bool:
        if failed and node.status not in (NodeStatus.FAILED, NodeStatus.CANCELLED):
            return False
        return path is None or node.path.startswith(path)

    def prune(node: TraceNode) -> TraceNode | None:
        children = tuple(kept for child in node.children if (kept := prune(child)) is not None)
        if children or matches(node):
            return attrs.evolve(node, children=children)
        return None

    return tuple(kept for root in roots if (kept := prune(root)) is not None)


def clock_anchor(kind: NoteKind) -> TraceEvent:
    """The note that begins a drive: monotonic time now, and the wall clock as ``detail``."""
    now = datetime.datetime.now(datetime.UTC)
    return note(kind, RUN_PATH, now.isoformat())


def build_trace(
    run: RunRecord,
    events: Sequence[TraceEvent],
    steps: Sequence[StepRecord],
    pauses: Sequence[PauseRecord] = (),
    ledger: Sequence[LedgerEntry] = (),
) -> RunTrace:
    """Join a run's trace events, step records and ledger into a :class:`RunTrace`."""
    timeline = _timeline(events, run.started_at)
    spans = _spans(timeline)
    waiting = {pause.path: pause.message for pause in pauses if pause.answered_at is None}
    usage = {entry.key: _usage_of(entry) for entry in ledger}
    records = {step.path: step for step in steps}
    roots = _Tree(timeline, spans, records, waiting, usage).roots()
    started_at = timeline[0].wall if timeline else run.started_at
    return RunTrace(
        run.run_id, run.pipeline_name, run.status, started_at, timeline, spans, roots, usage
    )


def _usage_of(entry: LedgerEntry) -> Usage:
    return Usage(Decimal(entry.cost_usd), entry.input_tokens, entry.output_tokens)


def is_anchor(event: TraceEvent) -> bool:
    """Whether ``event`` begins a drive (see :func:`clock_anchor`)."""
    return (
        event.kind is TraceKind.NOTE
        and event.path == RUN_PATH
        and event.label in (STARTED, RESUMED)
    )


# -- the timeline ----------------------------------------------------------------------------


def _timeline(
    events: Sequence[TraceEvent], run_started: datetime.datetime
) -> tuple[TimedEvent, ...]:
    timed: list[TimedEvent] = []
    origin: datetime.datetime | None = None
    wall = run_started  # a trace saved before anchors existed: the run's start
    monotonic = events[0].time if events else 0.0
    base = 0.0
    last = 0.0
    drive = -1
    for event in events:
        if is_anchor(event) or drive < 0:
            drive += 1
            anchor_wall = _wall(event) if is_anchor(event) else None
            wall = anchor_wall or (wall + datetime.timedelta(seconds=last - base))
            if origin is None:
                origin, base = wall, 0.0
            else:
                base = max((wall - origin).total_seconds(), last)
            monotonic = event.time
        offset = max(base + (event.time - monotonic), last)
        last = offset
        at = wall + datetime.timedelta(seconds=event.time - monotonic)
        timed.append(TimedEvent(event, offset, at, drive))
    return tuple(timed)


def _wall(event: TraceEvent) -> datetime.datetime | None:
    try:
        wall = datetime.datetime.fromisoformat(event.detail or "")
    except ValueError:
        return None
    return wall if wall.tzinfo is not None else wall.replace(tzinfo=datetime.UTC)


# -- the spans -------------------------------------------------------------------------------


@attrs.define
class _OpenSpan:
    path: str
    opened: int
    work: int | None = None
    restored: bool = False


def _spans(timeline: Sequence[TimedEvent]) -> tuple[ActorSpan, ...]:
    spans: list[ActorSpan] = []
    running: dict[str, _OpenSpan] = {}

    def close(path: str, index: int, end: SpanEnd, reason: str | None) -> None:
        span = running.pop(path)
        start = span.work if span.work is not None else span.opened
        spans.append(
            ActorSpan(
                path,
                timeline[start].offset_s,
                timeline[index].offset_s,
                end,
                reason,
                span.restored,
                start,
                index,
            )
        )

    def close_all(index: int) -> None:
        for path in list(running):
            close(path, index, SpanEnd.UNFINISHED, None)

    for index, timed in enumerate(timeline):
        event = timed.event
        path = event.path
        if is_anchor(event):
            close_all(index - 1)
            continue
        match event.kind:
            case TraceKind.SPAWN:
                if path in running:
                    close(path, index, SpanEnd.UNFINISHED, None)
                running[path] = _OpenSpan(path, index)
            case TraceKind.RECEIVE:
                span = running.setdefault(path, _OpenSpan(path, index))
                if span.work is None:
                    span.work = index
            case TraceKind.EXIT:
                running.setdefault(path, _OpenSpan(path, index))
                failed = event.label == SpanEnd.FAILED.value
                end = SpanEnd.FAILED if failed else SpanEnd.OK
                close(path, index, end, event.detail if failed else None)
            case TraceKind.CANCEL:
                running.setdefault(path, _OpenSpan(path, index))
                close(path, index, SpanEnd.CANCELLED, event.detail)
            case TraceKind.NOTE if event.label == NoteKind.RESTORED and path in running:
                running[path].restored = True
            case _:
                pass
    close_all(len(timeline) - 1)
    spans.sort(key=lambda span: span.start_index)
    return tuple(spans)


# -- the tree --------------------------------------------------------------------------------


@attrs.frozen
class _Outcome:
    """What a step's record (or a result kept in one) says about it."""

    success: bool
    attempts: int
    cost: Decimal
    tokens: int
    feedback: str | None
    breach: str | None
    #: When its fallback ran: its own attempts' outcome, then the fallback's.
    fell_back: tuple[_Outcome, _Outcome] | None

    @classmethod
    def of_record(cls, record: StepRecord) -> _Outcome:
        history = record.metadata.get("history", ())
        return cls(
            record.success,
            record.attempts,
            Decimal(record.cost_usd),
            record.input_tokens + record.output_tokens,
            record.feedback,
            record.breach,
            _fell_back(record.metadata, history),
        )

    @classmethod
    def of_result(cls, result: StepResult) -> _Outcome:
        return cls(
            result.success,
            result.attempts,
            result.usage.cost_usd,
            result.usage.total_tokens,
            result.feedback,
            None,
            _fell_back(result.metadata, result.step_history),
        )

    @property
    def status(self) -> NodeStatus:
        return NodeStatus.OK if self.success and self.breach is None else NodeStatus.FAILED

    @property
    def reason(self) -> str | None:
        if self.breach is not None:
            return self.breach
        return None if self.success else self.feedback


def _fell_back(metadata: Mapping[str, Any], history: Any) -> tuple[_Outcome, _Outcome] | None:
    """The outcomes of a fallback's two parts (see ``fallback_history``), else ``None``."""
    if not isinstance(history, tuple | list):
        return None
    parts = fallback_history(metadata, history)
    if parts is None or not all(isinstance(p, StepResult) for p in (parts.own, parts.fallback)):
        return None
    return _Outcome.of_result(parts.own), _Outcome.of_result(parts.fallback)


@attrs.define
class _Node:
    """A node being built: its children are added as they are found."""

    path: str
    name: str
    kind: NodeKind
    first_index: int
    status: NodeStatus
    start_s: float
    end_s: float
    duration_s: float
    started_at: datetime.datetime
    attempts: int
    cost: Decimal
    tokens: int
    reason: str | None
    restored: bool = False
    children: list[_Node] = attrs.field(factory=list)

    def frozen(self) -> TraceNode:
        children = sorted(self.children, key=lambda child: child.first_index)
        return TraceNode(
            self.path,
            self.name,
            self.kind,
            self.status,
            self.start_s,
            self.end_s,
            self.duration_s,
            self.started_at,
            self.attempts,
            self.cost,
            self.tokens,
            self.reason,
            self.restored,
            tuple(child.frozen() for child in children),
        )


class _Tree:
    """Builds the tree; see the module docstring for where each value comes from."""

    def __init__(
        self,
        timeline: Sequence[TimedEvent],
        spans: Sequence[ActorSpan],
        records: Mapping[str, StepRecord],
        waiting: Mapping[str, str],
        ledger: Mapping[str, Usage],
    ) -> None:
        self._timeline = timeline
        self._records = records
        self._waiting = waiting
        # Each call's usage by (step path, attempt).
        self._calls: list[tuple[str, int, Usage]] = []
        for key, usage in ledger.items():
            call = parse_ledger_key(key)
            if call is not None:
                self._calls.append((call.path, call.attempt, usage))
        self._spans: defaultdict[str, list[ActorSpan]] = defaultdict(list)
        for span in spans:
            self._spans[span.path].append(span)
        self._notes: defaultdict[str, list[int]] = defaultdict(list)
        self._steps: set[str] = set()
        for index, timed in enumerate(timeline):
            event = timed.event
            if event.kind is TraceKind.NOTE:
                self._notes[event.path].append(index)
            elif event.label == _EXECUTE and event.kind is TraceKind.RECEIVE:
                self._steps.add(event.path)
            elif event.label == _EXECUTE and event.kind is TraceKind.SEND and event.peer:
                self._steps.add(event.peer)

    def roots(self) -> tuple[TraceNode, ...]:
        nodes = {path: self._actor(path) for path in self._steps if self._spans[path]}
        roots: list[_Node] = []
        for path, node in nodes.items():
            parent = nodes.get(parent_of(path))
            (parent.children if parent is not None else roots).append(node)
        for node in nodes.values():
            if node.status is NodeStatus.OK and self._has_paused(node):
                node.status = NodeStatus.PAUSED
        roots.sort(key=lambda node: node.first_index)
        return tuple(node.frozen() for node in roots)

    def _has_paused(self, node: _Node) -> bool:
        if node.path in self._records:
            return False
        return any(
            child.status is NodeStatus.PAUSED or self._has_paused(child) for child in node.children
        )

    # -- actors

    def _actor(self, path: str) -> _Node:
        spans = self._spans[path]
        last = spans[-1]
        record = self._records.get(path)
        outcome = None if record is None else _Outcome.of_record(record)
        if outcome is not None:
            status, reason = outcome.status, outcome.reason
            attempts, cost, tokens = outcome.attempts, outcome.cost, outcome.tokens
        else:
            status, reason = self._ending(last)
            cost, tokens = self._committed(path, beneath=True)
            attempts = 0
            if self._timeline[last.start_index].event.kind is TraceKind.RECEIVE:
                retries = self._labelled(path, NoteKind.RETRY, last.start_index, last.end_index)
                attempts = len(retries) + 1
        first = spans[0]
        node = _Node(
            path,
            last_segment(path),
            _kind(path),
            first.start_index,
            status,
            first.start_s,
            last.end_s,
            sum(span.duration_s for span in spans),
            self._timeline[first.start_index].wall,
            attempts,
            cost,
            tokens,
            reason,
            restored=last.restored,
        )
        executed = next((span for span in reversed(spans) if not span.restored), None)
        if executed is not None:
            node.children.extend(
                self._work(path, executed.start_index, executed.end_index, node, outcome)
            )
        return node

    def _ending(self, span: ActorSpan) -> tuple[NodeStatus, str | None]:
        """Status and reason of a step without a record, from how its last span ended."""
        match span.end:
            case SpanEnd.CANCELLED:
                return NodeStatus.CANCELLED, span.reason
            case SpanEnd.FAILED:
                return NodeStatus.FAILED, span.reason
            case SpanEnd.UNFINISHED:
                return NodeStatus.RUNNING, None
        paused = self._labelled(span.path, NoteKind.PAUSE, span.start_index, span.end_index)
        if paused:
            message = self._timeline[paused[-1]].event.detail
            return NodeStatus.PAUSED, f"waiting for input: {message}"
        if span.path in self._waiting:
            return NodeStatus.PAUSED, f"waiting for input: {self._waiting[span.path]}"
        return NodeStatus.OK, None

    # -- attempts and fallbacks

    def _work(
        self, path: str, first: int, last: int, node: _Node, outcome: _Outcome | None
    ) -> list[_Node]:
        """The attempts (if the step retried) and the fallback of the step at ``path``.

        ``first``..``last`` are the events where it ran; ``outcome`` what its
        record (or its parent's) says about it, fallback included.
        """
        fell_back = self._labelled(path, NoteKind.FALLBACK, first, last)
        parts = outcome.fell_back if outcome is not None and fell_back else None
        own = parts[0] if parts is not None else outcome
        end = fell_back[0] if fell_back else last
        found: list[_Node] = []
        retries = self._labelled(path, NoteKind.RETRY, first, end)
        if retries:
            bounds = [first, *retries, end]
            for number in range(1, len(bounds)):
                found.append(
                    self._attempt(
                        path,
                        number,
                        bounds[number - 1],
                        bounds[number],
                        node,
                        own,
                        is_last=number == len(bounds) - 1,
                        fell_back=bool(fell_back),
                    )
                )
        if fell_back:
            found.append(
                self._fallback(path, fell_back[0], last, node, parts[1] if parts else None)
            )
        return found

    def _attempt(
        self,
        path: str,
        number: int,
        begins: int,
        ends: int,
        step: _Node,
        own: _Outcome | None,
        *,
        is_last: bool,
        fell_back: bool,
    ) -> _Node:
        reason: str | None
        if not is_last:
            retry = RetryNote.of(self._timeline[ends].event)
            number, status, reason = retry.attempt, NodeStatus.FAILED, retry.reason
        elif fell_back:
            status, reason = NodeStatus.FAILED, own.feedback if own is not None else None
        else:
            status, reason = step.status, step.reason
        cost, tokens = self._committed(path, beneath=False, attempt=number)
        return self._derived(
            attempt_path(path, number),
            f"attempt {number}",
            NodeKind.ATTEMPT,
            begins,
            ends,
            status,
            reason,
            1,
            cost,
            tokens,
        )

    def _fallback(
        self, path: str, begins: int, ends: int, step: _Node, outcome: _Outcome | None
    ) -> _Node:
        at = fallback_path(path, self._timeline[begins].event.detail or "")
        if outcome is not None:
            status, reason = outcome.status, outcome.reason
            attempts, cost, tokens = outcome.attempts, outcome.cost, outcome.tokens
        else:
            status, reason = step.status, step.reason
            cost, tokens = self._committed(at, beneath=True)
            attempts = len(self._labelled(at, NoteKind.RETRY, begins, ends)) + 1
        node = self._derived(
            at,
            last_segment(at),
            NodeKind.FALLBACK,
            begins,
            ends,
            status,
            reason,
            attempts,
            cost,
            tokens,
        )
        node.children.extend(self._work(at, begins, ends, node, outcome))
        return node

    def _derived(
        self,
        path: str,
        name: str,
        kind: NodeKind,
        begins: int,
        ends: int,
        status: NodeStatus,
        reason: str | None,
        attempts: int,
        cost: Decimal,
        tokens: int,
    ) -> _Node:
        start = self._timeline[begins]
        end_s = self._timeline[ends].offset_s
        return _Node(
            path,
            name,
            kind,
            begins,
            status,
            start.offset_s,
            end_s,
            end_s - start.offset_s,
            start.wall,
            attempts,
            cost,
            tokens,
            reason,
        )

    # -- lookups

    def _labelled(self, path: str, kind: NoteKind, first: int, last: int) -> list[int]:
        """Indices of the ``kind`` notes at ``path`` within ``first..last``."""
        return [
            index
            for index in self._notes.get(path, ())
            if first <= index <= last and self._timeline[index].event.label == kind
        ]

    def _committed(
        self, path: str, *, beneath: bool, attempt: int | None = None
    ) -> tuple[Decimal, int]:
        """What the ledger holds for ``path`` (or one ``attempt`` of it; with descendants
        if ``beneath``): cost and tokens."""
        cost, tokens = Decimal(0), 0
        for about, number, usage in self._calls:
            mine = is_within(about, path) if beneath else about == path
            if mine and attempt in (None, number):
                cost += usage.cost_usd
                tokens += usage.total_tokens
        return cost, tokens


#: The node kind of each kind of path segment (a top-level path is the pipeline).
_NODE_KINDS = {
    SegmentKind.STEP: NodeKind.STEP,
    SegmentKind.ITERATION: NodeKind.ITERATION,
    SegmentKind.ITEM: NodeKind.ITEM,
    SegmentKind.FALLBACK: NodeKind.FALLBACK,
    SegmentKind.BRANCH: NodeKind.BRANCH,
}


def _kind(path: str) -> NodeKind:
    if not parent_of(path):
        return NodeKind.PIPELINE
    return _NODE_KINDS[parse_segment(last_segment(path)).kind]
