"""``rt.trace``: the run's events on one timeline and its actor tree, with exact values."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, LedgerEntry, RunRecord, StepRecord, UnknownRun
from trioflow.runtime import (
    AgentStep,
    Completion,
    RunStatus,
    Runtime,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.traces import NodeKind, NodeStatus, NoTrace, RunTrace, TraceNode, filter_nodes
from trioflow.runtime.traces._tree import build_trace

T0 = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)


def timed(
    name: str, delay: float, *, cost: str | None = None, fail: str | None = None
) -> AgentStep:
    """A step that takes ``delay`` seconds, then fails with ``fail`` or returns (at ``cost``)."""

    async def run(data: Any) -> Any:
        await trio.sleep(delay)
        if fail is not None:
            raise RuntimeError(fail)
        return name if cost is None else Completion(name, Usage(cost, 10, 5))

    return Step.from_callable(run, name=name)


Row = tuple[str, str, str, float, float, float, int, str, int, str | None]


def rows(nodes: tuple[TraceNode, ...] | RunTrace) -> list[Row]:
    """(path, kind, status, start, end, duration, attempts, cost, tokens, reason) per node."""
    found = nodes.nodes() if isinstance(nodes, RunTrace) else (n for r in nodes for n in r.walk())
    return [
        (
            node.path,
            node.kind.value,
            node.status.value,
            node.start_s,
            node.end_s,
            node.duration_s,
            node.attempts,
            str(node.cost_usd),
            node.tokens,
            node.reason,
        )
        for node in found
    ]


# -- the tree of real runs -------------------------------------------------------------------


async def test_a_sequence_gives_the_pipeline_and_its_steps(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await rt.run(timed("a", 1, cost="0.25") >> timed("b", 2), "x")

    trace = await rt.trace(result.run_id)

    assert (trace.run_id, trace.pipeline_name, trace.status) == (
        result.run_id,
        "pipeline",
        "completed",
    )
    assert rows(trace) == [
        ("main", "pipeline", "ok", 0.0, 3.0, 3.0, 1, "0.25", 15, None),
        ("main/0:a", "step", "ok", 0.0, 1.0, 1.0, 1, "0.25", 15, None),
        ("main/1:b", "step", "ok", 1.0, 3.0, 2.0, 1, "0", 0, None),
    ]
    assert [node.name for node in trace.nodes()] == ["main", "0:a", "1:b"]
    assert trace.node("main/0:a").cost_usd == Decimal("0.25")
    with pytest.raises(KeyError, match="no node at 'main/9:z'"):
        trace.node("main/9:z")


async def test_the_trace_starts_with_a_wall_clock_anchor(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    result = await rt.run(timed("a", 2), "x")
    after = datetime.datetime.now(datetime.UTC)

    first = (await trioflow_store.trace_of(result.run_id))[0]
    assert (first.kind, first.path, first.label, first.peer) == (
        TraceKind.NOTE,
        "",
        "started",
        None,
    )
    anchor = datetime.datetime.fromisoformat(str(first.detail))
    assert before <= anchor <= after
    trace = await rt.trace(result.run_id)
    assert trace.started_at == anchor
    exit_a = next(
        t for t in trace.events if t.event.kind is TraceKind.EXIT and t.event.path == "main/0:a"
    )
    assert exit_a.offset_s == 2.0
    assert exit_a.wall == anchor + datetime.timedelta(seconds=2)
    assert trace.node("main/0:a").started_at == anchor


async def test_retries_are_attempt_children_with_their_own_cost_and_reason(
    rt: Runtime, autojump_clock: Any
) -> None:
    replies = iter(
        [Completion("weak", Usage("0.10", 4, 1)), Completion("good", Usage("0.20", 6, 2))]
    )

    async def write(data: Any) -> Completion:
        await trio.sleep(1)
        return next(replies)

    def strong(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.ok() if output == "good" else ValidationResult.fail("too weak")

    result = await rt.run(Step.from_callable(write, name="write", validators=[strong]), "x")

    trace = await rt.trace(result.run_id)
    assert rows(trace) == [
        ("main", "pipeline", "ok", 0.0, 2.0, 2.0, 1, "0.30", 13, None),
        ("main/0:write", "step", "ok", 0.0, 2.0, 2.0, 2, "0.30", 13, None),
        (
            "main/0:write#1",
            "attempt",
            "failed",
            0.0,
            1.0,
            1.0,
            1,
            "0.10",
            5,
            "validation: Validation failed: strong: too weak",
        ),
        ("main/0:write#2", "attempt", "ok", 1.0, 2.0, 1.0, 1, "0.20", 8, None),
    ]
    assert [node.name for node in trace.node("main/0:write").children] == ["attempt 1", "attempt 2"]


async def test_a_fallback_chain_is_children_of_the_step(rt: Runtime, autojump_clock: Any) -> None:
    last = AgentStep("last", StubAgent([Completion("L", Usage("0.05", 2, 2))]))
    middle = AgentStep("middle", StubAgent([RuntimeError("m1"), RuntimeError("m2")]), fallback=last)

    async def primary(data: Any) -> str:
        await trio.sleep(1)
        raise RuntimeError("p")

    step = Step.from_callable(primary, name="s", fallback=middle)

    result = await rt.run(step, "x")

    assert result.status == "completed"
    primary_error = "step 'main/0:s' failed (agent_error): RuntimeError: p"
    middle_error = "step 'main/0:s/fallback:middle' failed (agent_error): RuntimeError: m2"
    assert rows(await rt.trace(result.run_id)) == [
        ("main", "pipeline", "ok", 0.0, 2.0, 2.0, 1, "0.05", 4, None),
        ("main/0:s", "step", "ok", 0.0, 2.0, 2.0, 5, "0.05", 4, None),
        (
            "main/0:s#1",
            "attempt",
            "failed",
            0.0,
            1.0,
            1.0,
            1,
            "0",
            0,
            "agent_error: RuntimeError: p",
        ),
        ("main/0:s#2", "attempt", "failed", 1.0, 2.0, 1.0, 1, "0", 0, primary_error),
        # Like its step, a fallback whose own fallback succeeded is ok as a whole.
        ("main/0:s/fallback:middle", "fallback", "ok", 2.0, 2.0, 0.0, 3, "0.05", 4, None),
        (
            "main/0:s/fallback:middle#1",
            "attempt",
            "failed",
            2.0,
            2.0,
            0.0,
            1,
            "0",
            0,
            "agent_error: RuntimeError: m1",
        ),
        ("main/0:s/fallback:middle#2", "attempt", "failed", 2.0, 2.0, 0.0, 1, "0", 0, middle_error),
        (
            "main/0:s/fallback:middle/fallback:last",
            "fallback",
            "ok",
            2.0,
            2.0,
            0.0,
            1,
            "0.05",
            4,
            None,
        ),
    ]


async def test_cancelled_branches_say_why_and_keep_what_they_paid(
    rt: Runtime, autojump_clock: Any
) -> None:
    parallel = Step.parallel(
        "par",
        {
            "a": timed("slow", 100),
            "b": timed("boom", 1, fail="kaput"),
            "c": timed("quick", 0.5, cost="0.30") >> timed("slow_c", 100),
        },
    )

    result = await rt.run(parallel, "x")

    boom = "step 'main/0:par/b' failed (agent_error): RuntimeError: kaput"
    stopped = f"branch 'b' failed: {boom}"
    why = "branch 'b' failed"
    assert rows(await rt.trace(result.run_id)) == [
        ("main", "pipeline", "failed", 0.0, 2.0, 2.0, 1, "0.30", 15, stopped),
        ("main/0:par", "step", "failed", 0.0, 2.0, 2.0, 1, "0.30", 15, stopped),
        ("main/0:par/a", "branch", "cancelled", 0.0, 2.0, 2.0, 1, "0", 0, why),
        ("main/0:par/b", "branch", "failed", 0.0, 2.0, 2.0, 2, "0", 0, boom),
        (
            "main/0:par/b#1",
            "attempt",
            "failed",
            0.0,
            1.0,
            1.0,
            1,
            "0",
            0,
            "agent_error: RuntimeError: kaput",
        ),
        ("main/0:par/b#2", "attempt", "failed", 1.0, 2.0, 1.0, 1, "0", 0, boom),
        # No record for a cancelled branch: its cost is what the governor committed beneath it.
        ("main/0:par/c", "branch", "cancelled", 0.0, 2.0, 2.0, 1, "0.30", 15, why),
        ("main/0:par/c/0:quick", "step", "ok", 0.0, 0.5, 0.5, 1, "0.30", 15, None),
        ("main/0:par/c/1:slow_c", "step", "cancelled", 0.5, 2.0, 1.5, 1, "0", 0, why),
    ]


async def test_loop_iterations_map_items_and_branches_are_children(
    rt: Runtime, autojump_clock: Any
) -> None:
    loop = Step.loop_until(
        "loop", timed("body", 1, cost="0.10"), lambda output, context: False, max_loops=2
    )
    items = Step.map_over("each", timed("item", 2, cost="0.01"), max_concurrency=2)
    choose = Step.branch_on("pick", lambda data, context: "yes", {"yes": timed("y", 1)})

    async def listing(data: Any) -> list[int]:
        return [1, 2, 3]

    async def text(data: Any) -> str:
        return str(data)

    pipeline = (
        Step.from_callable(listing, name="list")
        >> items
        >> Step.from_callable(text, name="text")
        >> choose
        >> loop
    )
    result = await rt.run(pipeline, "x")

    max_loops = "step 'main/4:loop' reached max_loops=2 without meeting its exit condition"
    assert rows(await rt.trace(result.run_id)) == [
        ("main", "pipeline", "failed", 0.0, 7.0, 7.0, 1, "0.23", 75, max_loops),
        ("main/0:list", "step", "ok", 0.0, 0.0, 0.0, 1, "0", 0, None),
        ("main/1:each", "step", "ok", 0.0, 4.0, 4.0, 1, "0.03", 45, None),
        ("main/1:each/item[0]", "item", "ok", 0.0, 2.0, 2.0, 1, "0.01", 15, None),
        ("main/1:each/item[1]", "item", "ok", 0.0, 2.0, 2.0, 1, "0.01", 15, None),
        ("main/1:each/item[2]", "item", "ok", 2.0, 4.0, 2.0, 1, "0.01", 15, None),
        ("main/2:text", "step", "ok", 4.0, 4.0, 0.0, 1, "0", 0, None),
        ("main/3:pick", "step", "ok", 4.0, 5.0, 1.0, 1, "0", 0, None),
        ("main/3:pick/yes", "branch", "ok", 4.0, 5.0, 1.0, 1, "0", 0, None),
        ("main/4:loop", "step", "failed", 5.0, 7.0, 2.0, 2, "0.20", 30, max_loops),
        ("main/4:loop/loop[1]", "iteration", "ok", 5.0, 6.0, 1.0, 1, "0.10", 15, None),
        ("main/4:loop/loop[2]", "iteration", "ok", 6.0, 7.0, 1.0, 1, "0.10", 15, None),
    ]


async def test_a_breaching_step_fails_with_the_breach(rt: Runtime, autojump_clock: Any) -> None:
    pipeline = timed("a", 1, cost="0.60") >> timed("b", 1, cost="0.60") >> timed("c", 1)

    with pytest.raises(UsageLimitExceeded) as raised:
        await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert raised.value.result.status is RunStatus.USAGE_LIMIT
    breach = "Cost limit of $1.00 exceeded"
    assert rows(await rt.trace(raised.value.result.run_id)) == [
        ("main", "pipeline", "failed", 0.0, 2.0, 2.0, 1, "1.20", 30, breach),
        ("main/0:a", "step", "ok", 0.0, 1.0, 1.0, 1, "0.60", 15, None),
        ("main/1:b", "step", "failed", 1.0, 2.0, 1.0, 1, "0.60", 15, breach),
    ]


async def test_a_pause_and_its_resume_are_on_one_timeline(
    rt: Runtime, trioflow_store: InMemoryStore, autojump_clock: Any
) -> None:
    pipeline = (
        timed("draft", 3, cost="0.20")
        >> Step.human_in_the_loop("approve", "Publish?", bool)
        >> timed("publish", 2)
    )
    paused = await rt.run(pipeline, "x")

    trace = await rt.trace(paused.run_id)
    assert trace.status == "paused"
    assert rows(trace) == [
        ("main", "pipeline", "paused", 0.0, 3.0, 3.0, 1, "0.20", 15, None),
        ("main/0:draft", "step", "ok", 0.0, 3.0, 3.0, 1, "0.20", 15, None),
        (
            "main/1:approve",
            "step",
            "paused",
            3.0,
            3.0,
            0.0,
            1,
            "0",
            0,
            "waiting for input: Publish?",
        ),
    ]

    await trio.sleep(60)  # the person takes a minute; the mock clock is not the wall clock
    done = await rt.resume(paused.run_id, True)

    trace = await rt.trace(done.run_id)
    labels = [
        (t.event.label, t.drive)
        for t in trace.events
        if t.event.kind is TraceKind.NOTE and t.event.path == ""
    ]
    assert labels == [("started", 0), ("resumed", 1)]
    # The resumed drive is placed after the first one ended (3 s): never before it.
    assert rows(trace) == [
        ("main", "pipeline", "ok", 0.0, 5.0, 5.0, 1, "0.20", 15, None),
        ("main/0:draft", "step", "ok", 0.0, 3.0, 3.0, 1, "0.20", 15, None),
        ("main/1:approve", "step", "ok", 3.0, 3.0, 0.0, 1, "0", 0, None),
        ("main/2:publish", "step", "ok", 3.0, 5.0, 2.0, 1, "0", 0, None),
    ]
    assert [node.restored for node in trace.nodes()] == [False, True, False, False]
    pauses = [t.event for t in trace.events if t.event.label == "pause"]
    assert [(e.path, e.detail) for e in pauses] == [("main/1:approve", "Publish?")]
    assert [
        (s.path, s.start_s, s.end_s, s.restored) for s in trace.spans if s.path == "main/0:draft"
    ] == [
        ("main/0:draft", 0.0, 3.0, False),
        ("main/0:draft", 3.0, 3.0, True),
    ]


# -- filters ---------------------------------------------------------------------------------


async def test_filters_keep_matches_with_their_ancestors(rt: Runtime, autojump_clock: Any) -> None:
    parallel = Step.parallel(
        "par",
        {
            "a": timed("slow", 100),
            "b": timed("boom", 1, fail="kaput"),
            # Two steps, so the branch is a pipeline with its steps beneath it.
            "c": timed("ok", 0.5) >> timed("ok_too", 0.5),
        },
    )
    result = await rt.run(timed("first", 1) >> parallel, "x")
    trace = await rt.trace(result.run_id)

    def paths(nodes: tuple[TraceNode, ...]) -> list[str]:
        return [node.path for root in nodes for node in root.walk()]

    assert paths(trace.filtered(failed=True)) == [
        "main",
        "main/1:par",
        "main/1:par/a",
        "main/1:par/b",
        "main/1:par/b#1",
        "main/1:par/b#2",
    ]
    assert paths(trace.filtered(path="main/1:par/c")) == [
        "main",
        "main/1:par",
        "main/1:par/c",
        "main/1:par/c/0:ok",
        "main/1:par/c/1:ok_too",
    ]
    assert paths(trace.filtered(failed=True, path="main/1:par/a")) == [
        "main",
        "main/1:par",
        "main/1:par/a",
    ]
    assert paths(filter_nodes(trace.roots, path="main/0:")) == ["main", "main/0:first"]
    assert trace.filtered(path="elsewhere") == ()
    assert trace.filtered() == trace.roots
    [kept] = trace.filtered(path="main/0:")
    assert (kept.status, kept.cost_usd) == (NodeStatus.FAILED, Decimal(0))


# -- errors ----------------------------------------------------------------------------------


async def test_an_unknown_run_and_a_run_without_a_trace(
    rt: Runtime, trioflow_store: InMemoryStore
) -> None:
    with pytest.raises(UnknownRun, match="no run with id 'nope' is stored"):
        await rt.trace("nope")

    await trioflow_store.create_run(RunRecord("quiet", "p", "running", T0, None))
    with pytest.raises(NoTrace, match=r"run 'quiet' has no trace \(status: running\)") as raised:
        await rt.trace("quiet")
    assert (raised.value.run_id, raised.value.status) == ("quiet", "running")


# -- the timeline, from hand-made traces -----------------------------------------------------


def anchor(label: str, time: float, wall: datetime.datetime) -> TraceEvent:
    return TraceEvent(TraceKind.NOTE, "", time, label, detail=wall.isoformat())


def step_events(path: str, start: float, end: float, outcome: str = "ok") -> list[TraceEvent]:
    parent = path.rpartition("/")[0]
    return [
        TraceEvent(TraceKind.SPAWN, path, start, peer=parent),
        TraceEvent(TraceKind.SEND, parent, start, "Execute", path),
        TraceEvent(TraceKind.RECEIVE, path, start, "Execute", parent or None),
        TraceEvent(TraceKind.EXIT, path, end, outcome),
    ]


RUN = RunRecord("r1", "p", "completed", T0, None)


def test_a_later_drive_is_placed_by_its_wall_clock() -> None:
    # Process 1 (monotonic clock near 1000) ran 2 s; process 2 (clock near 5) resumed 60 s later.
    events = [
        anchor("started", 1000.0, T0),
        *step_events("main", 1000.0, 1002.0),
        anchor("resumed", 5.0, T0 + datetime.timedelta(seconds=60)),
        *step_events("main", 5.0, 6.5),
    ]

    trace = build_trace(RUN, events, [])

    assert [(t.offset_s, t.drive) for t in trace.events] == [
        (0.0, 0),
        (0.0, 0),
        (0.0, 0),
        (0.0, 0),
        (2.0, 0),
        (60.0, 1),
        (60.0, 1),
        (60.0, 1),
        (60.0, 1),
        (61.5, 1),
    ]
    assert trace.events[-1].wall == T0 + datetime.timedelta(seconds=61.5)
    [main] = trace.roots
    assert (main.start_s, main.end_s, main.duration_s, main.status) == (
        0.0,
        61.5,
        3.5,
        NodeStatus.OK,
    )


def test_a_drive_never_starts_before_the_previous_one_ended() -> None:
    # The first drive ran on a mock clock: 500 s of its time took 1 s of wall-clock time.
    events = [
        anchor("started", 0.0, T0),
        *step_events("main", 0.0, 500.0),
        anchor("resumed", 0.0, T0 + datetime.timedelta(seconds=1)),
        *step_events("main", 0.0, 2.0),
    ]

    trace = build_trace(RUN, events, [])

    assert [t.offset_s for t in trace.events][4:] == [500.0, 500.0, 500.0, 500.0, 500.0, 502.0]
    assert trace.events[-1].wall == T0 + datetime.timedelta(seconds=3)


def test_a_trace_without_anchors_starts_at_the_runs_start() -> None:
    events = step_events("main", 7.0, 8.25)

    trace = build_trace(RUN, events, [])

    assert trace.started_at == T0
    assert [t.offset_s for t in trace.events] == [0.0, 0.0, 0.0, 1.25]
    assert trace.events[-1].wall == T0 + datetime.timedelta(seconds=1.25)


def test_an_actor_without_an_exit_is_running() -> None:
    events = [anchor("started", 0.0, T0), *step_events("main", 0.0, 1.0)[:3]]
    events.append(TraceEvent(TraceKind.SEND, "main", 4.0, "Reserve", "governor"))

    trace = build_trace(RUN, events, [])

    [main] = trace.roots
    assert (main.status, main.start_s, main.end_s, main.duration_s) == (
        NodeStatus.RUNNING,
        0.0,
        4.0,
        4.0,
    )
    assert main.kind is NodeKind.PIPELINE


def test_a_record_decides_the_status_of_a_step() -> None:
    events = [
        anchor("started", 0.0, T0),
        *step_events("main", 0.0, 1.0, outcome="ok"),
        *step_events("main/0:a", 0.0, 1.0),
    ]
    failed = StepRecord("r1", "main/0:a", "a", False, None, 3, "1.5", 7, 3, feedback="bad output")

    trace = build_trace(RUN, events, [failed])

    node = trace.node("main/0:a")
    assert (node.status, node.reason, node.attempts, node.cost_usd, node.tokens) == (
        NodeStatus.FAILED,
        "bad output",
        3,
        Decimal("1.5"),
        10,
    )


def test_the_governors_commit_notes_take_their_usage_from_the_ledger() -> None:
    def commit(key: str, peer: str | None = "main/0:a") -> TraceEvent:
        return TraceEvent(TraceKind.NOTE, "governor", 0.0, "commit", peer, key)

    events = [
        commit("main/0:a#1#1"),
        commit("main/0:a#1#2", peer=None),
        commit("main/0:a#2#1"),
        commit("main/0:a#9#9"),
    ]
    ledger = [
        LedgerEntry("r1", "main/0:a#1#1", "main/0:a", "1234.50", 10, 20),
        LedgerEntry("r1", "main/0:a#1#2", "main/0:a", "0.10", 5, 0),
        LedgerEntry("r1", "main/0:a#2#1", "main/0:a", "0.00042", 0, 0),
    ]

    trace = build_trace(RUN, events, [], ledger=ledger)

    # A note without a step (peer) or without a ledger entry contributes nothing.
    assert [(path, usage) for _, path, usage in trace.commits()] == [
        ("main/0:a", Usage(Decimal("1234.50"), 10, 20)),
        ("main/0:a", Usage(Decimal("0.00042"), 0, 0)),
    ]
