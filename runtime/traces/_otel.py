"""OpenTelemetry export: a run's actor tree as spans, its usage as metrics.

Turned on by ``open_runtime(tracer_provider=..., meter_provider=...)`` or
the ``TRIOFLOW_OTEL`` environment variable (see :func:`otel_from_environment`);
off by default. Off, this module is never imported, and so neither is
``opentelemetry``: a runtime without it pays nothing.

Why a trace-event consumer and not ``with tracer.start_as_current_span``
around each step: OpenTelemetry finds a span's parent in a context
variable, and trio gives each task a copy of its parent's context at spawn
time, not at the moment a message arrives; an actor's task is spawned by
its supervisor, and a span made current in one actor's task would never be
seen by a sibling or a later message anyway. The kernel's trace events
already name every actor by its path, and a path names its parent. So
:class:`RunSpans` receives the events as they happen (it is a
:class:`~trioflow.actors.TraceSink`) and opens and ends spans with an
explicit parent: the span of the nearest enclosing path. No context
variable is read or set, so the tree is right under any schedule.

The spans of one drive (the first run, or a resume):

* ``run <pipeline>``: the drive, from its start to how it ended
  (``trioflow.run.status``). Its trace id is the run id (a uuid's 128 bits)
  and its parent a remote span context made from the run id, so every
  drive of a run, the first and each resume, lands in one trace.
* one span per step actor (a step, branch, loop iteration, map item),
  named by the last segment of its path, parented as the actor tree is.
* an agent step's attempts: ``chat <model>`` when its agent names a model,
  else ``invoke_agent <step>``; each with ``trioflow.attempt``, the
  GenAI usage attributes and the cost. A failed attempt that was retried
  ends ``ERROR`` with the failure as its description. A step whose agent
  is a plain function (``@step``) gets attempt spans only when it was
  retried or fell back: once, its own span says everything, at half the cost.
* ``fallback:<name>``: the fallback step of an agent step, its attempts beneath it.
* ``human input``: a human step's pause, from the pause to the drive's end
  of that step, with the message asked.
* ``execute_tool <name>``: a tool call. No step kind calls tools yet; the
  hook is the pair of notes of kind ``NoteKind.TOOL_CALL`` (detail: the tool's
  name) and ``NoteKind.TOOL_DONE`` (detail: ``ok`` or the failure) at the
  calling step's path, which a tool-calling agent is to record.

Attributes follow the OpenTelemetry GenAI semantic conventions where they
apply (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.agent.name``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``), plus trioflow's own: ``trioflow.run_id``,
``trioflow.step.path``, ``trioflow.attempt``, ``trioflow.outcome`` and
``trioflow.cost_usd`` (a decimal string: a float would round money).
Spans have status ``ERROR`` when their step failed or went over a usage
limit, and are left ``UNSET`` otherwise, as the conventions ask of
instrumentation. Usage goes to two metrics as well:
``gen_ai.client.token.usage`` (a histogram, by ``gen_ai.token.type``) and
``trioflow.cost`` (a counter, US dollars).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping

import attrs
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from trioflow.actors import TraceEvent, TraceKind

from .._dsl._agent_step import AgentStep
from .._dsl._pipeline import Pipeline
from .._errors import ConfigurationError
from .._notes import Committed, NoteKind, RetryNote
from .._paths import fallback_path, last_segment, locate, parent_of, parse_segment
from .._results import RunStatus
from .._steps._messages import Execute
from .._steps._step_actor import StepOutcome
from .._usage import NO_USAGE, Usage
from ..agents._agents import CallableAgent, FakeModel

#: The instrumentation scope's name.
SCOPE = "trioflow"

_EXECUTE = Execute.__name__
_FAILED_OUTCOMES = frozenset({StepOutcome.FAILED.value, StepOutcome.LIMIT.value})
_FAILED_RUNS = frozenset(
    {
        RunStatus.FAILED.value,
        RunStatus.USAGE_LIMIT.value,
        RunStatus.INTERRUPTED.value,
        RunStatus.CANCELLED.value,
    }
)


class OtelExport:
    """A runtime's exporter: where spans and metrics go. One per runtime, shared by its runs."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        tracing = tracer_provider or trace.NoOpTracerProvider()
        metering = meter_provider or metrics.NoOpMeterProvider()
        self.tracer = tracing.get_tracer(SCOPE)
        meter = metering.get_meter(SCOPE)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="tokens used by model calls"
        )
        self.cost = meter.create_counter(
            "trioflow.cost", unit="USD", description="what model calls cost"
        )

    def drive(self, run_id: str, pipeline: Pipeline, *, root: str, resumed: bool) -> RunSpans:
        """The spans of one drive of ``run_id``: started now, ended by :meth:`RunSpans.end`."""
        return RunSpans(self, run_id, pipeline, root=root, resumed=resumed)


def otel_from_environment(value: str | None) -> OtelExport | None:
    """``TRIOFLOW_OTEL``: ``1`` exports through OpenTelemetry's global providers.

    The global providers are what the application (or ``opentelemetry-instrument``
    and the ``OTEL_*`` variables) configured; ``0`` or unset is off.
    """
    if value in (None, "", "0"):
        return None
    if value != "1":
        raise ConfigurationError(f"TRIOFLOW_OTEL must be 1 (on) or 0 (off), got {value!r}")
    return OtelExport(trace.get_tracer_provider(), metrics.get_meter_provider())


def run_span_parent(run_id: str) -> SpanContext:
    """The remote parent every drive of ``run_id`` shares: one trace per run, across resumes."""
    digits = run_id if _is_hex128(run_id) else hashlib.sha256(run_id.encode()).hexdigest()[:32]
    trace_id = int(digits, 16)
    span_id = int(digits[:16], 16) or 1
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _is_hex128(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text) and int(text, 16) != 0


@attrs.define
class _Attempt:
    """An attempt of an agent step: its span is started when something needs it."""

    path: str
    number: int
    start_ns: int
    parent: Span
    #: Its agent is a plain function: a lone first attempt of one gets no span of its own.
    plain: bool
    span: Span | None = None
    usage: Usage = NO_USAGE


class RunSpans:
    """The spans of one drive, opened and ended from its trace events (a trace sink)."""

    def __init__(
        self, export: OtelExport, run_id: str, pipeline: Pipeline, *, root: str, resumed: bool
    ) -> None:
        self._export = export
        self._run_id = run_id
        self._pipeline = pipeline
        self._root = root
        parent = trace.set_span_in_context(NonRecordingSpan(run_span_parent(run_id)))
        self._run = export.tracer.start_span(
            f"run {pipeline.name}",
            parent,
            SpanKind.INTERNAL,
            {
                "trioflow.run_id": run_id,
                "trioflow.pipeline": pipeline.name,
                "trioflow.resumed": resumed,
            },
        )
        self._spans: dict[str, Span] = {}
        self._usage: dict[str, Usage] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._tools: dict[str, Span] = {}
        self._pauses: dict[str, Span] = {}
        #: The fallback spans opened under a step, by the step's path.
        self._fallbacks: dict[str, list[str]] = {}
        self._models: dict[str, str | None] = {}

    # -- the trace sink

    def record(self, event: TraceEvent) -> None:
        match event.kind:
            case TraceKind.RECEIVE if event.label == _EXECUTE:
                self._started(event.path)
            case TraceKind.NOTE:
                self._note(event)
            case TraceKind.EXIT:
                failed = event.label != "ok"
                self._ended(event.path, event.detail if failed else None, cancelled=None)
            case TraceKind.CANCEL:
                self._ended(event.path, None, cancelled=event.detail or "cancelled")
            case _:
                pass

    def _started(self, path: str) -> None:
        if path in self._spans:
            return
        segment = parse_segment(last_segment(path))
        attributes = {"trioflow.step.path": path, "trioflow.run_id": self._run_id}
        span = self._start(segment.name or segment.text, self._parent_of(path), attributes)
        self._spans[path] = span
        if isinstance(self._spec(path), AgentStep):
            self._attempts[path] = self._attempt(path, 1, span)

    def _note(self, event: TraceEvent) -> None:
        path, detail = event.path, event.detail or ""
        match event.label:
            case NoteKind.COMMIT if event.peer is not None and isinstance(event.data, Committed):
                self._committed(event.peer, event.data.usage)
            case NoteKind.RETRY:
                self._retried(path, RetryNote.of(event))
            case NoteKind.FALLBACK:
                self._fell_back(path, detail)
            case NoteKind.RESTORED | NoteKind.CACHE_HIT:
                self._attempts.pop(path, None)
                self._set(path, "trioflow." + event.label, True)
            case NoteKind.PAUSE:
                attributes = {"trioflow.step.path": path, "trioflow.human.message": detail}
                self._pauses[path] = self._start("human input", self._spans[path], attributes)
            case NoteKind.BREACH:
                self._run.add_event("usage limit exceeded", {"trioflow.breach": detail})
            case NoteKind.DENY if event.peer is not None:
                self._set(event.peer, "trioflow.refused", detail)
            case NoteKind.OUTCOME:
                self._outcome(path, str(detail))
            case NoteKind.TOOL_CALL:
                self._tool_called(path, detail)
            case NoteKind.TOOL_DONE:
                self._tool_done(path, detail)
            case _:
                pass

    # -- attempts, fallbacks, tools

    def _committed(self, path: str, usage: Usage) -> None:
        attempt = self._attempts.get(path)
        if attempt is not None:
            self._attempt_span(attempt)
            attempt.usage += usage
        for above in _self_and_ancestors(path):
            if above in self._spans:
                self._usage[above] = self._usage.get(above, NO_USAGE) + usage
        model = self._model(path)
        labels = {"gen_ai.request.model": model} if model else {}
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            self._export.tokens.record(count, {**labels, "gen_ai.token.type": kind})
        self._export.cost.add(float(usage.cost_usd), labels)

    def _retried(self, path: str, retry: RetryNote) -> None:
        attempt = self._attempts.get(path)
        if attempt is None:
            return
        kind, _, feedback = retry.reason.partition(": ")
        self._attempt_span(attempt)  # an attempt that was retried is shown, function or not
        self._end_attempt(attempt, StepOutcome.FAILED.value, feedback, kind)
        self._attempts[path] = self._attempt(path, attempt.number + 1, attempt.parent)

    def _fell_back(self, path: str, name: str) -> None:
        attempt = self._attempts.pop(path, None)
        if attempt is not None:
            self._attempt_span(attempt)  # an attempt that fell back is shown, function or not
            self._end_attempt(attempt, StepOutcome.FAILED.value, None, None)
        fallback = fallback_path(path, name)
        span = self._start(f"fallback:{name}", self._spans[path], {"trioflow.step.path": fallback})
        self._spans[fallback] = span
        self._fallbacks.setdefault(path, []).append(fallback)
        self._attempts[fallback] = self._attempt(fallback, 1, span)

    def _tool_called(self, path: str, name: str) -> None:
        attempt = self._attempts.get(path)
        parent = self._attempt_span(attempt) if attempt is not None else self._spans[path]
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "trioflow.step.path": path,
        }
        self._tools[path] = self._start(f"execute_tool {name}", parent, attributes)

    def _tool_done(self, path: str, outcome: str) -> None:
        span = self._tools.pop(path, None)
        if span is None:
            return
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    def _attempt(self, path: str, number: int, parent: Span) -> _Attempt:
        spec = self._spec(path)
        plain = isinstance(spec, AgentStep) and isinstance(spec.agent, CallableAgent)
        return _Attempt(path, number, time.time_ns(), parent, plain)

    def _attempt_span(self, attempt: _Attempt) -> Span:
        if attempt.span is None:
            model = self._model(attempt.path)
            spec = self._spec(attempt.path)
            name = spec.name if isinstance(spec, AgentStep) else attempt.path
            operation = "chat" if model else "invoke_agent"
            attributes: dict[str, str | int] = {
                "gen_ai.operation.name": operation,
                "gen_ai.agent.name": name,
                "trioflow.step.path": attempt.path,
                "trioflow.attempt": attempt.number,
            }
            if model:
                attributes["gen_ai.request.model"] = model
            title = f"{operation} {model or name}"
            attempt.span = self._start(title, attempt.parent, attributes, attempt.start_ns)
        return attempt.span

    def _end_attempt(
        self, attempt: _Attempt, outcome: str, reason: str | None, error_type: str | None
    ) -> None:
        if attempt.span is None and attempt.plain and attempt.number == 1:
            return  # a function step that ran once: its step's span says it all
        span = self._attempt_span(attempt)
        _usage_attributes(span, attempt.usage)
        span.set_attribute("trioflow.outcome", outcome)
        if error_type:
            span.set_attribute("error.type", error_type)
        if outcome in _FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, reason))
        span.end()

    # -- ends

    def _family(self, path: str) -> list[str]:
        """``path`` and the fallbacks opened under it (theirs too), outermost first.

        Looked up, not searched for: a step's end costs the same with a
        thousand siblings open.
        """
        family = [path]
        for fallback in self._fallbacks.get(path, ()):
            family.extend(self._family(fallback))
        return family

    def _outcome(self, path: str, outcome: str) -> None:
        self._set(path, "trioflow.outcome", outcome)
        for open_path in self._family(path):
            attempt = self._attempts.pop(open_path, None)
            if attempt is not None:
                self._end_attempt(attempt, outcome, None, None)
        if outcome in _FAILED_OUTCOMES and path in self._spans:
            self._spans[path].set_status(Status(StatusCode.ERROR))

    def _ended(self, path: str, failure: str | None, *, cancelled: str | None) -> None:
        """End the actor's span, and whatever is still open beneath it."""
        if path not in self._spans:
            return
        family = self._family(path)
        for open_path in family:
            attempt = self._attempts.pop(open_path, None)
            if attempt is not None:
                self._end_attempt(attempt, "cancelled", None, None)
        pause = self._pauses.pop(path, None)
        if pause is not None:
            pause.end()
        for fallback in reversed(family[1:]):
            self._fallbacks.pop(fallback, None)
            self._close(fallback)
        self._fallbacks.pop(path, None)
        span = self._spans[path]
        if cancelled is not None:
            span.set_attribute("trioflow.outcome", "cancelled")
            span.set_attribute("trioflow.cancel_reason", cancelled)
        if failure is not None:
            span.set_status(Status(StatusCode.ERROR, failure))
        self._close(path)

    def _close(self, path: str) -> None:
        span = self._spans.pop(path)
        _usage_attributes(span, self._usage.pop(path, NO_USAGE))
        span.end()

    def end(self, status: str, usage: Usage, error: str | None) -> None:
        """End the drive's run span (and any span its events left open) with how it ended."""
        for attempt in list(self._attempts.values()):
            self._end_attempt(attempt, status, None, None)
        self._attempts.clear()
        for span in (*self._tools.values(), *self._pauses.values()):
            span.end()
        for path in sorted(self._spans, key=len, reverse=True):
            self._close(path)
        run = self._run
        run.set_attribute("trioflow.run.status", status)
        _usage_attributes(run, usage)
        if status in _FAILED_RUNS:
            run.set_status(Status(StatusCode.ERROR, error))
        run.end()

    # -- helpers

    def _start(
        self,
        name: str,
        parent: Span,
        attributes: Mapping[str, str | int],
        start_ns: int | None = None,
    ) -> Span:
        context = trace.set_span_in_context(parent)
        return self._export.tracer.start_span(
            name, context, SpanKind.INTERNAL, attributes, start_time=start_ns
        )

    def _parent_of(self, path: str) -> Span:
        for above in _ancestors(path):
            if above in self._spans:
                return self._spans[above]
        return self._run

    def _set(self, path: str, key: str, value: str | bool) -> None:
        span = self._spans.get(path)
        if span is not None:
            span.set_attribute(key, value)

    def _spec(self, path: str) -> object:
        try:
            return locate(self._pipeline, path, root=self._root)
        except ConfigurationError:  # the top pipeline, a branch's body: not a step
            return None

    def _model(self, path: str) -> str | None:
        """The model an agent step's agent names (``gen_ai.request.model``), if any."""
        if path not in self._models:
            spec = self._spec(path)
            agent = spec.agent if isinstance(spec, AgentStep) else None
            model = getattr(agent, "model", None)
            if isinstance(agent, FakeModel):
                model = agent.name
            self._models[path] = model if isinstance(model, str) else None
        return self._models[path]


def _usage_attributes(span: Span, usage: Usage) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    span.set_attribute("trioflow.cost_usd", str(usage.cost_usd))


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = parent_of(path)
        yield path


def _self_and_ancestors(path: str) -> Iterator[str]:
    yield path
    yield from _ancestors(path)
