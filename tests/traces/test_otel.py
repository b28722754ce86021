"""OpenTelemetry export: the span tree of a run, its attributes, its metrics, and its trace id."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    ConfigurationError,
    RetryPolicy,
    RunStatus,
    Step,
    Usage,
    ValidationResult,
    open_runtime,
    step,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.traces import NoteKind
from trioflow.runtime.traces._otel import OtelExport

Tree = tuple[str, dict[str, Any], str, tuple[Any, ...]]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def tree(spans: tuple[ReadableSpan, ...], run_id: str) -> list[Tree]:
    """The spans as nested (name, attributes, status, children), in start order.

    The run id (random) reads ``RUN``; a span whose parent was not exported is a root.
    """
    ids = {span.context.span_id for span in spans}

    def attributes(span: ReadableSpan) -> dict[str, Any]:
        found = dict(span.attributes or {})
        return {key: "RUN" if value == run_id else value for key, value in found.items()}

    def node(span: ReadableSpan) -> Tree:
        children = [
            c for c in spans if c.parent is not None and c.parent.span_id == span.context.span_id
        ]
        children.sort(key=lambda c: c.start_time or 0)
        status = span.status.status_code.name
        if span.status.description:
            status = f"{status}: {span.status.description}"
        return (span.name, attributes(span), status, tuple(node(c) for c in children))

    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    roots.sort(key=lambda s: s.start_time or 0)
    return [node(root) for root in roots]


def usage(input_tokens: int, output_tokens: int, cost: str) -> dict[str, Any]:
    return {
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "trioflow.cost_usd": cost,
    }


def reject_drafts(output: Any, context: Any) -> ValidationResult:
    return ValidationResult.fail("no drafts") if output == "draft" else ValidationResult.ok()


@step
async def shout(text: str) -> str:
    return text.upper()


def step_span(path: str, outcome: str, spent: dict[str, Any], *children: Tree) -> Tree:
    attributes = {"trioflow.step.path": path, "trioflow.run_id": "RUN", "trioflow.outcome": outcome}
    segment = path.rpartition("/")[2]
    return (segment.partition(":")[2] or segment, {**attributes, **spent}, "UNSET", children)


def attempt(
    path: str,
    name: str,
    number: int,
    outcome: str,
    spent: dict[str, Any],
    status: str = "UNSET",
    **more: Any,
) -> Tree:
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": name,
        "trioflow.step.path": path,
        "trioflow.attempt": number,
        **spent,
        "trioflow.outcome": outcome,
        **more,
    }
    return (f"invoke_agent {name}", attributes, status, ())


async def test_a_run_is_a_span_tree_parented_as_its_actors(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    primary = AgentStep(
        "primary",
        StubAgent([Completion("draft", Usage("0.10", 100, 20))] * 2),
        retry=RetryPolicy(max_attempts=2),
        validators=[reject_drafts],
        fallback=AgentStep("backup", StubAgent([Completion("solid", Usage("0.05", 50, 10))])),
    )
    fan = Step.parallel("fan", {"a": shout, "b": shout})
    async with open_runtime(store=InMemoryStore(), tracer_provider=provider) as rt:
        result = await rt.run(primary >> fan, "question")
    assert result.status is RunStatus.COMPLETED

    none = usage(0, 0, "0")
    assert tree(exporter.get_finished_spans(), result.run_id) == [
        (
            "run pipeline",
            {
                "trioflow.run_id": "RUN",
                "trioflow.pipeline": "pipeline",
                "trioflow.resumed": False,
                "trioflow.run.status": "completed",
                **usage(250, 50, "0.25"),
            },
            "UNSET",
            (
                step_span(
                    "main",
                    "ok",
                    usage(250, 50, "0.25"),
                    step_span(
                        "main/0:primary",
                        "ok",
                        usage(250, 50, "0.25"),
                        attempt(
                            "main/0:primary",
                            "primary",
                            1,
                            "failed",
                            usage(100, 20, "0.10"),
                            "ERROR: Validation failed: reject_drafts: no drafts",
                            **{"error.type": "validation"},
                        ),
                        attempt(
                            "main/0:primary",
                            "primary",
                            2,
                            "failed",
                            usage(100, 20, "0.10"),
                            "ERROR",
                        ),
                        (
                            "fallback:backup",
                            {
                                "trioflow.step.path": "main/0:primary/fallback:backup",
                                **usage(50, 10, "0.05"),
                            },
                            "UNSET",
                            (
                                attempt(
                                    "main/0:primary/fallback:backup",
                                    "backup",
                                    1,
                                    "ok",
                                    usage(50, 10, "0.05"),
                                ),
                            ),
                        ),
                    ),
                    step_span(
                        "main/1:fan",
                        "ok",
                        none,
                        # A function step that ran once: no attempt span beneath it.
                        step_span("main/1:fan/a", "ok", none),
                        # A function step that ran once: no attempt span beneath it.
                        step_span("main/1:fan/b", "ok", none),
                    ),
                ),
            ),
        )
    ]


class NamedModel:
    """An agent that names its model (as OpenAIChat does) and reports what it spent."""

    model = "gpt-test"

    async def run(self, data: Any, *, context: Any, resources: Any) -> Completion[str]:
        return Completion(f"answer to {data}", Usage("0.003", 120, 30))


async def test_model_calls_follow_the_genai_conventions_and_count_in_metrics(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    pipeline = AgentStep("ask", NamedModel()) >> AgentStep("again", NamedModel())
    async with open_runtime(
        store=InMemoryStore(), tracer_provider=provider, meter_provider=meters
    ) as rt:
        result = await rt.run(pipeline, "q")

    calls = [span for span in exporter.get_finished_spans() if span.name == "chat gpt-test"]
    assert [dict(span.attributes or {}) for span in calls] == [
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.agent.name": name,
            "gen_ai.request.model": "gpt-test",
            "trioflow.step.path": path,
            "trioflow.attempt": 1,
            **usage(120, 30, "0.003"),
            "trioflow.outcome": "ok",
        }
        for name, path in (("ask", "main/0:ask"), ("again", "main/1:again"))
    ]
    assert {span.context.trace_id for span in exporter.get_finished_spans()} == {
        int(result.run_id, 16)
    }
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "sum", None) or getattr(point, "value", None)
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    assert sorted(found["gen_ai.client.token.usage"], key=str) == sorted(
        [
            ({"gen_ai.request.model": "gpt-test", "gen_ai.token.type": "input"}, 240),
            ({"gen_ai.request.model": "gpt-test", "gen_ai.token.type": "output"}, 60),
        ],
        key=str,
    )
    assert found["trioflow.cost"] == [({"gen_ai.request.model": "gpt-test"}, pytest.approx(0.006))]


async def test_a_resumed_run_continues_the_original_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    pipeline = shout >> Step.human_in_the_loop("approve", "Publish?", bool) >> say
    async with open_runtime(store=InMemoryStore(), tracer_provider=provider) as rt:
        paused = await rt.run(pipeline, "draft")
        first = exporter.get_finished_spans()
        exporter.clear()
        done = await rt.resume(paused.run_id, True)
        second = exporter.get_finished_spans()
    assert (paused.status, done.status) == (RunStatus.PAUSED, RunStatus.COMPLETED)

    trace_id = int(paused.run_id, 16)
    assert {span.context.trace_id for span in (*first, *second)} == {trace_id}
    runs = [span for span in (*first, *second) if span.name == "run pipeline"]
    assert [(span.attributes or {})["trioflow.resumed"] for span in runs] == [False, True]
    assert [(span.attributes or {})["trioflow.run.status"] for span in runs] == [
        "paused",
        "completed",
    ]
    # Both drives hang off one parent made from the run id: siblings in one trace.
    assert {span.parent.span_id for span in runs if span.parent} == {int(paused.run_id[:16], 16)}
    pause = next(span for span in first if span.name == "human input")
    assert dict(pause.attributes or {}) == {
        "trioflow.step.path": "main/1:approve",
        "trioflow.human.message": "Publish?",
    }
    approve = next(span for span in first if span.name == "approve")
    assert (pause.parent and pause.parent.span_id) == approve.context.span_id
    assert (approve.attributes or {})["trioflow.outcome"] == "paused"
    restored = next(span for span in second if span.name == "shout")
    assert (restored.attributes or {})["trioflow.restored"] is True
    # A restored step ran nothing: no attempt span beneath it.
    assert [
        span.name
        for span in second
        if span.parent and span.parent.span_id == restored.context.span_id
    ] == []


@step
async def say(approved: bool) -> str:
    return "yes" if approved else "no"


@step
async def explode(text: str) -> str:
    raise RuntimeError(f"cannot handle {text}")


async def test_a_failed_step_and_its_run_are_errors(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with open_runtime(store=InMemoryStore(), tracer_provider=provider) as rt:
        result = await rt.run(shout >> explode, "x")
    assert result.status is RunStatus.FAILED
    status = sorted(
        (
            span.name,
            (span.attributes or {}).get("trioflow.attempt"),
            span.status.status_code.name,
            span.status.description,
        )
        for span in exporter.get_finished_spans()
    )
    failure = "RuntimeError: cannot handle X"
    # The default policy tries twice; a function step's attempts get spans once it retried.
    assert status == [
        ("explode", None, "ERROR", None),
        ("invoke_agent explode", 1, "ERROR", failure),
        ("invoke_agent explode", 2, "ERROR", None),
        ("main", None, "ERROR", None),
        ("run pipeline", None, "ERROR", f"step 'main/1:explode' failed (agent_error): {failure}"),
        ("shout", None, "UNSET", None),
    ]


def test_the_tool_call_hook_makes_an_execute_tool_span_beneath_the_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """No step kind calls tools yet: a tool-calling agent records these two notes."""
    spans = OtelExport(provider, None).drive(
        "0123456789abcdef0123456789abcdef",
        AgentStep("ask", NamedModel()) >> shout,
        root="main",
        resumed=False,
    )
    for kind, path, label, detail in [
        (TraceKind.RECEIVE, "main", "Execute", None),
        (TraceKind.RECEIVE, "main/0:ask", "Execute", None),
        (TraceKind.NOTE, "main/0:ask", NoteKind.TOOL_CALL, "search"),
        (TraceKind.NOTE, "main/0:ask", NoteKind.TOOL_DONE, "ok"),
        (TraceKind.NOTE, "main/0:ask", NoteKind.TOOL_CALL, "fetch"),
        (TraceKind.NOTE, "main/0:ask", NoteKind.TOOL_DONE, "HTTP 404"),
        (TraceKind.NOTE, "main/0:ask", "outcome", "ok"),
        (TraceKind.EXIT, "main/0:ask", "ok", None),
        (TraceKind.EXIT, "main", "ok", None),
    ]:
        spans.record(TraceEvent(kind, path, 0.0, label, detail=detail))
    spans.end("completed", Usage(), None)

    found = exporter.get_finished_spans()
    chat = next(span for span in found if span.name == "chat gpt-test")
    tools = [span for span in found if span.name.startswith("execute_tool")]
    assert [
        (
            span.name,
            dict(span.attributes or {}),
            span.status.status_code.name,
            span.status.description,
        )
        for span in tools
    ] == [
        (
            f"execute_tool {name}",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "trioflow.step.path": "main/0:ask",
            },
            status,
            description,
        )
        for name, status, description in (("search", "UNSET", None), ("fetch", "ERROR", "HTTP 404"))
    ]
    assert {span.parent.span_id for span in tools if span.parent} == {chat.context.span_id}


async def test_trioflow_otel_turns_export_on_through_the_global_providers(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setenv("TRIOFLOW_OTEL", "1")
    async with open_runtime(store=InMemoryStore()) as rt:
        await rt.run(shout, "x")
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "main",
        "run shout",
        "shout",
    ]


async def test_a_wrong_trioflow_otel_value_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIOFLOW_OTEL", "yes")
    with pytest.raises(
        ConfigurationError, match=r"^TRIOFLOW_OTEL must be 1 \(on\) or 0 \(off\), got 'yes'$"
    ):
        async with open_runtime(store=InMemoryStore()):
            pass


def test_off_by_default_opentelemetry_is_not_even_imported() -> None:
    program = (
        "import sys, trio\n"
        "from trioflow.persistence import InMemoryStore\n"
        "from trioflow.runtime import open_runtime, step\n"
        "@step\n"
        "async def shout(text: str) -> str:\n"
        "    return text.upper()\n"
        "async def main():\n"
        "    async with open_runtime(store=InMemoryStore()) as rt:\n"
        "        assert (await rt.run(shout, 'x')).output == 'X'\n"
        "trio.run(main)\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "TRIOFLOW_OTEL"}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=environment, check=True
    )
    assert done.stdout == "[]\n"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector's trace endpoint: decodes each request's protobuf body."""

    requests: ClassVar[list[tuple[str, str, ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.requests.append((self.path, self.headers["Content-Type"], request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test reads the requests


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, ExportTraceServiceRequest]]]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", _Receiver.requests
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


async def test_spans_reach_an_otlp_http_collector(
    receiver: tuple[str, list[tuple[str, str, ExportTraceServiceRequest]]],
) -> None:
    endpoint, requests = receiver
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    async with open_runtime(store=InMemoryStore(), tracer_provider=provider) as rt:
        result = await rt.run(AgentStep("ask", NamedModel()), "q")
    # The batch goes out from the processor's thread: flush it (blocking) off the trio thread.
    await trio.to_thread.run_sync(provider.shutdown)

    assert [(path, kind) for path, kind, _ in requests] == [
        ("/v1/traces", "application/x-protobuf")
    ]
    spans = [
        span
        for resource in requests[0][2].resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert {span.trace_id.hex() for span in spans} == {result.run_id}
    by_id = {span.span_id: span for span in spans}
    chat = next(span for span in spans if span.name == "chat gpt-test")
    lineage = [chat.name]
    parent = chat.parent_span_id
    while parent in by_id:
        lineage.append(by_id[parent].name)
        parent = by_id[parent].parent_span_id
    assert lineage == ["chat gpt-test", "ask", "main", "run ask"]
    attributes = {item.key: item.value for item in chat.attributes}
    assert attributes["gen_ai.request.model"].string_value == "gpt-test"
    assert attributes["gen_ai.usage.input_tokens"].int_value == 120
    assert attributes["gen_ai.usage.output_tokens"].int_value == 30
    assert attributes["trioflow.cost_usd"].string_value == "0.003"


@step
async def wait(name: str, *, resources: dict[str, float]) -> str:
    await trio.sleep(resources[name])
    return name


@step
async def names(branches: dict[str, Any]) -> list[str]:
    return ["m0", "m1", "m2", "m3"]


def waiter(name: str) -> AgentStep:
    """A branch's step: it sleeps as long as ``resources[name]`` says."""

    async def wait_for(text: str, *, resources: dict[str, float]) -> str:
        await trio.sleep(resources[name])
        return text

    return Step.from_callable(wait_for, name=name)


SCHEDULED = (
    Step.parallel("fan", {f"b{i}": waiter(f"w{i}") for i in range(3)})
    >> names
    >> Step.map_over("each", wait, max_concurrency=2)
)


def expected_lineage() -> set[tuple[str, ...]]:
    """Each span's name with its ancestors' names up to the run: the same under any schedule."""
    run, main = "run pipeline", "main"
    lineage = {(run,), (main, run), ("fan", main, run), ("names", main, run), ("each", main, run)}
    for i in range(3):
        lineage.add((f"b{i}", "fan", main, run))
    for i in range(4):
        lineage.add((f"item[{i}]", "each", main, run))
    return lineage


@given(delays=st.lists(st.integers(0, 5), min_size=7, max_size=7))
@settings(max_examples=40, deadline=None, database=None)
def test_the_span_tree_is_the_same_under_any_schedule(delays: list[int]) -> None:
    """Branches and map items finish in every order: each span keeps its actor's parent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seconds = dict(zip(["w0", "w1", "w2", "m0", "m1", "m2", "m3"], delays, strict=True))

    async def main() -> None:
        async with open_runtime(store=InMemoryStore(), tracer_provider=provider) as rt:
            result = await rt.run(SCHEDULED, "x", resources=seconds)
            assert result.status is RunStatus.COMPLETED

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}

    def lineage(span: ReadableSpan) -> tuple[str, ...]:
        names = [span.name]
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return tuple(names)

    assert len(spans) == len(expected_lineage())  # no span twice, none missing
    assert {lineage(span) for span in spans} == expected_lineage()
