"""The Perfetto export: a well-formed trace-event file, with exact slices, flows and counters.

``check_perfetto`` is what ui.perfetto.dev needs to open a file without
import warnings: every event has its phase, timestamp (integer
microseconds) and process, and a thread where it needs one; every thread
used is named; complete slices never overlap partially on one track and
start in order; every flow start has exactly one end with the same id,
category and name. Every event has a category (TracerBench's importer
fails on one without). It also replays how Perfetto's importer binds a flow
event (to the slice on top of its track's stack when the event is read) and
checks that this is the ``message`` marker at the flow's exact time on its
track, the event Chrome DevTools binds it to (same category, thread and
timestamp): see ``test_third_party_viewers.py`` for DevTools itself.
"""

from __future__ import annotations

import datetime
import itertools
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
import trio
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, RunRecord, StepRecord
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
from trioflow.runtime.traces import RunTrace, perfetto_json, perfetto_trace
from trioflow.runtime.traces._tree import build_trace

Event = dict[str, Any]

NEEDS_THREAD = {"X", "i", "s", "f", "C"}


def check_perfetto(document: dict[str, Any]) -> list[Event]:
    """Fail unless ``document`` opens cleanly in Perfetto (see the module docstring)."""
    events: list[Event] = json.loads(json.dumps(document))["traceEvents"]
    named = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert [e["args"]["name"] for e in events if e["name"] == "process_name"] != []
    for event in events:
        assert {"ph", "ts", "pid", "name", "cat"} <= event.keys(), event
        assert isinstance(event["ts"], int), event
        assert event["ts"] >= 0, event  # Perfetto's rule for every event; tests assert exact ts
        assert event["pid"] == 1, event
        if event["ph"] in NEEDS_THREAD:
            assert event["tid"] in named, event
        if event["ph"] == "X":
            assert isinstance(event["dur"], int), event
            assert event["dur"] >= 0, event  # (the same rule; exact durations per test)
        if event["ph"] == "i":
            assert event["s"] == "t", event
        if event["ph"] == "C":
            assert event["args"], event
            assert all(isinstance(v, int | float) for v in event["args"].values()), event
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    _check_nesting(events)
    _check_flows(events)
    _check_binding(events)
    return events


def _check_nesting(events: list[Event]) -> None:
    by_tid: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
    for event in events:
        if event["ph"] == "X":
            by_tid[event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
    for tid, slices in by_tid.items():
        starts = [start for start, _ in slices]
        assert starts == sorted(starts), f"X starts out of order on tid {tid}"
        for (a0, a1), (b0, b1) in itertools.combinations(slices, 2):
            disjoint = a1 <= b0 or b1 <= a0
            nested = (a0 <= b0 and b1 <= a1) or (b0 <= a0 and a1 <= b1)
            assert disjoint or nested, f"tid {tid}: [{a0}, {a1}] and [{b0}, {b1}] overlap"


def _check_flows(events: list[Event]) -> None:
    starts = [e for e in events if e["ph"] == "s"]
    ends = [e for e in events if e["ph"] == "f"]
    assert len({e["id"] for e in starts}) == len(starts)
    for start in starts:
        matching = [e for e in ends if (e["id"], e["cat"]) == (start["id"], start["cat"])]
        assert len(matching) == 1, start
        [end] = matching
        assert end["name"] == start["name"]
        assert end["bp"] == "e"
        assert end["ts"] >= start["ts"]
    assert {e["id"] for e in ends} == {e["id"] for e in starts}


def _check_binding(events: list[Event]) -> None:
    """Replay Perfetto's slice stacks: each flow event must land on its message marker."""
    stacks: defaultdict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for event in events:
        phase = event["ph"]
        if phase in ("X", "i"):
            ts, dur = event["ts"], event.get("dur", 0)
            stack = stacks[event["tid"]]
            while stack:
                top_ts, top_dur, _, _ = stack[-1]
                end = top_ts + top_dur
                if end < ts or (end == ts and not (top_dur == 0 and dur == 0)):
                    stack.pop()
                    continue
                break
            for top_ts, top_dur, _, _ in stack:
                assert not (ts < top_ts + top_dur < ts + dur), event
            stack.append((ts, dur, phase, event["cat"]))
        elif phase in ("s", "f"):
            stack = stacks[event["tid"]]
            assert stack, f"no enclosing slice for {event}"
            top_ts, _, top_phase, top_cat = stack[-1]
            assert (top_phase, top_cat) == ("i", "message"), f"{event} binds to no marker"
            assert top_ts == event["ts"], f"{event} binds to an earlier marker"
            # The marker is within a slice of its track (the sender's or the receiver's).
            assert any(
                other["ph"] == "X"
                and other["tid"] == event["tid"]
                and other["ts"] <= top_ts <= other["ts"] + other["dur"]
                for other in events
            ), f"{event}: its marker is outside every slice of its track"


# -- runs to export --------------------------------------------------------------------------


def timed(
    name: str, delay: float, *, cost: str | None = None, fail: str | None = None
) -> AgentStep:
    """A step that takes ``delay`` seconds, then fails with ``fail`` or returns (at ``cost``)."""

    async def run(data: Any) -> Any:
        await trio.sleep(delay)
        if fail is not None:
            raise RuntimeError(fail)
        return f"{name}" if cost is None else Completion(name, Usage(cost, 10, 5))

    return Step.from_callable(run, name=name)


def by_phase(events: list[Event], phase: str) -> list[Event]:
    return [event for event in events if event["ph"] == phase]


def notes(events: list[Event]) -> list[Event]:
    """The instants that are notes (retries, pauses, ...), not message markers."""
    return [event for event in by_phase(events, "i") if event["cat"] == "note"]


def thread_names(events: list[Event]) -> dict[int, str]:
    return {
        e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
    }


def slices(events: list[Event], cat: str | None = None) -> list[tuple[str, str, int, int]]:
    """``(track, name, ts, dur)`` of each X slice (of category ``cat``)."""
    names = thread_names(events)
    return [
        (names[e["tid"]], e["name"], e["ts"], e["dur"])
        for e in by_phase(events, "X")
        if cat is None or e["cat"] == cat
    ]


async def test_a_sequence_exports_tracks_slices_flows_and_counters(
    rt: Runtime, autojump_clock: Any
) -> None:
    result = await rt.run(timed("a", 1, cost="0.25") >> timed("b", 2, cost="0.50"), "x")

    trace = await rt.trace(result.run_id)
    events = check_perfetto(perfetto_trace(trace))

    [process] = [e for e in events if e["name"] == "process_name"]
    assert process["args"]["name"] == f"pipeline (run {result.run_id})"
    assert thread_names(events) == {1: "governor", 2: "main", 3: "main/0:a", 4: "main/1:b"}
    assert slices(events) == [
        ("main", "main", 0, 3_000_000),
        ("main/0:a", "0:a", 0, 1_000_000),
        ("governor", "governor", 1_000_000, 2_000_000),
        ("main/1:b", "1:b", 1_000_000, 2_000_000),
    ]
    [a_slice] = [e for e in by_phase(events, "X") if e["name"] == "0:a"]
    assert a_slice["args"] == {
        "path": "main/0:a",
        "end": "ok",
        "status": "ok",
        "attempts": 1,
        "cost_usd": "0.25",
        "tokens": 15,
    }
    flows = [
        (thread_names(events)[s["tid"]], thread_names(events)[f["tid"]], s["name"], s["ts"])
        for s in by_phase(events, "s")
        for f in by_phase(events, "f")
        if s["id"] == f["id"]
    ]
    assert flows == [
        ("main", "main/0:a", "Execute", 0),
        ("main/0:a", "governor", "Commit", 1_000_000),
        ("main", "main/1:b", "Execute", 1_000_000),
        ("main/1:b", "governor", "Commit", 3_000_000),
    ]
    # Each end of an arrow binds to a marker at that message's time on its actor's track.
    markers = [
        (thread_names(events)[e["tid"]], e["name"], e["ts"])
        for e in by_phase(events, "i")
        if e["cat"] == "message"
    ]
    assert markers == [
        ("main", "send Execute", 0),
        ("main/0:a", "receive Execute", 0),
        ("main/0:a", "send Commit", 1_000_000),
        ("governor", "receive Commit", 1_000_000),
        ("main", "send Execute", 1_000_000),
        ("main/1:b", "receive Execute", 1_000_000),
        ("main/1:b", "send Commit", 3_000_000),
        ("governor", "receive Commit", 3_000_000),
    ]
    usage = [(e["ts"], e["args"]) for e in by_phase(events, "C") if e["name"] == "usage"]
    assert usage == [
        (0, {"cost_usd": 0, "tokens": 0}),
        (1_000_000, {"cost_usd": 0.25, "tokens": 15}),
        (3_000_000, {"cost_usd": 0.75, "tokens": 30}),
    ]
    governor_mailbox = [
        (e["ts"], e["args"]["depth"])
        for e in by_phase(events, "C")
        if e["name"] == "mailbox governor"
    ]
    assert governor_mailbox == [
        (1_000_000, 1),
        (1_000_000, 0),
        (3_000_000, 1),
        (3_000_000, 0),
        (3_000_000, 1),  # Totals, asked by the runtime itself after the pipeline
        (3_000_000, 0),
    ]


async def test_retries_and_a_fallback_are_slices_inside_the_step(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def flaky(data: Any) -> Completion:
        await trio.sleep(1)
        return Completion("weak", Usage("0.10", 4, 1))

    def strong(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("too weak")

    fallback = AgentStep("fb", StubAgent([Completion("F", Usage("0.05", 2, 2))]))
    step = Step.from_callable(flaky, name="s", validators=[strong], fallback=fallback)

    result = await rt.run(step, "x")

    events = check_perfetto(perfetto_trace(await rt.trace(result.run_id)))
    on_step = [s for s in slices(events) if s[0] == "main/0:s"]
    assert on_step == [
        ("main/0:s", "0:s", 0, 2_000_000),
        ("main/0:s", "attempt 1", 0, 1_000_000),
        ("main/0:s", "attempt 2", 1_000_000, 1_000_000),
        ("main/0:s", "fallback:fb", 2_000_000, 0),
    ]
    assert slices(events, "attempt") + slices(events, "fallback") == [
        ("main/0:s", "attempt 1", 0, 1_000_000),
        ("main/0:s", "attempt 2", 1_000_000, 1_000_000),
        ("main/0:s", "fallback:fb", 2_000_000, 0),
    ]
    instants = [(e["name"], e["ts"], e["args"]) for e in notes(events)]
    assert instants == [
        (
            "retry",
            1_000_000,
            {
                "detail": "attempt 1 validation: Validation failed: strong: too weak",
                "path": "main/0:s",
            },
        ),
        ("fallback", 2_000_000, {"detail": "fb", "path": "main/0:s"}),
    ]
    commits = [
        (thread_names(events)[e["tid"]], e["ts"])
        for e in by_phase(events, "s")
        if e["name"] == "Commit"
    ]
    # The fallback's commit is sent from the step actor's track (the fallback runs in its task).
    assert commits == [("main/0:s", 1_000_000), ("main/0:s", 2_000_000), ("main/0:s", 2_000_000)]


async def test_cancellations_are_instants_with_their_reason(
    rt: Runtime, autojump_clock: Any
) -> None:
    parallel = Step.parallel(
        "par",
        {"a": timed("slow", 100), "b": timed("boom", 1, fail="kaput")},
    )

    result = await rt.run(parallel, "x")

    events = check_perfetto(perfetto_trace(await rt.trace(result.run_id)))
    names = thread_names(events)
    cancels = sorted(
        (names[e["tid"]], e["ts"], e["args"]["reason"])
        for e in by_phase(events, "i")
        if e["name"] == "cancel"
    )
    # Branch a is one step: it runs as that step at the branch's path, on one track.
    assert cancels == [("main/0:par/a", 2_000_000, "branch 'b' failed")]
    cancelled = [s for s in slices(events, "actor") if s[0].startswith("main/0:par/a")]
    assert cancelled == [("main/0:par/a", "a", 0, 2_000_000)]
    [slow] = [e for e in by_phase(events, "X") if e["name"] == "a"]
    assert (slow["args"]["end"], slow["args"]["reason"]) == ("cancelled", "branch 'b' failed")


async def test_a_breach_is_an_instant_on_the_breaching_steps_track(
    rt: Runtime, autojump_clock: Any
) -> None:
    pipeline = timed("a", 1, cost="0.60") >> timed("b", 1, cost="0.60") >> timed("c", 1)

    with pytest.raises(UsageLimitExceeded) as raised:
        await rt.run(pipeline, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert raised.value.result.status is RunStatus.USAGE_LIMIT
    trace = await rt.trace(raised.value.result.run_id)
    events = check_perfetto(perfetto_trace(trace))
    names = thread_names(events)
    breaches = [
        (names[e["tid"]], e["ts"], e["args"])
        for e in by_phase(events, "i")
        if e["name"] in ("breach", "deny")
    ]
    assert breaches == [
        (
            "main/1:b",
            2_000_000,
            {"by": "governor", "detail": "Cost limit of $1.00 exceeded", "path": "main/1:b"},
        )
    ]
    usage = [e["args"] for e in by_phase(events, "C") if e["name"] == "usage"]
    assert usage[-1] == {"cost_usd": 1.2, "tokens": 30}


async def test_governor_denials_and_waits_are_on_the_refused_steps_track(
    rt: Runtime, autojump_clock: Any
) -> None:
    async def call(data: Any) -> Completion:
        await trio.sleep(1)
        return Completion("done", Usage("0.40"))

    branches = {
        name: Step.from_callable(call, name=name, usage_estimate=Usage("0.40")) for name in "abc"
    }

    with pytest.raises(UsageLimitExceeded) as raised:
        await rt.run(Step.parallel("p", branches), "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert raised.value.result.status is RunStatus.USAGE_LIMIT
    events = check_perfetto(perfetto_trace(await rt.trace(raised.value.result.run_id)))
    names = thread_names(events)
    decisions = [e for e in by_phase(events, "i") if e["name"] in ("deny", "wait")]
    assert [e["name"] for e in decisions] == ["wait", "deny"]
    for decision in decisions:
        refused = decision["args"]["path"]
        assert refused in {f"main/0:p/{name}" for name in "abc"}
        assert names[decision["tid"]] == refused
        assert decision["args"]["by"] == "governor"
    [deny] = decisions[1:]
    assert deny["ts"] == 1_000_000
    assert deny["args"]["detail"] == (
        f"Cost limit of $1.00 would be exceeded: step {deny['args']['path']!r} needs up to "
        "$0.40, 0 tokens with $0.80 committed and $0.00 reserved"
    )


async def test_loops_maps_and_a_pause_then_resume_export_cleanly(
    trioflow_store: InMemoryStore, rt: Runtime, autojump_clock: Any
) -> None:
    body = timed("draft", 1, cost="0.10")
    loop = Step.loop_until("loop", body, lambda output, context: True, max_loops=2)
    items = Step.map_over("each", timed("item", 2, cost="0.01"), max_concurrency=2)
    ask = Step.human_in_the_loop("approve", "Publish?", bool)

    async def listing(data: Any) -> list[int]:
        return [1, 2, 3]

    pipeline = loop >> Step.from_callable(listing, name="list") >> items >> ask >> timed("end", 1)
    paused = await rt.run(pipeline, "x")
    await trio.sleep(50)
    done = await rt.resume(paused.run_id, True)

    assert done.status == "completed"
    events = check_perfetto(perfetto_trace(await rt.trace(done.run_id)))
    names = thread_names(events)
    found = [(names[e["tid"]], e["name"], e["ts"]) for e in notes(events)]
    # The first drive ends at 5 s (loop 1 s, items 2 + 2 s); the resume starts there. At one
    # timestamp an instant where a slice starts on its track comes first (see _perfetto).
    assert found == [
        ("main", "resumed", 5_000_000),
        ("main/3:approve", "pause", 5_000_000),
        ("main/0:loop", "restored", 5_000_000),
        ("main/1:list", "restored", 5_000_000),
        ("main/2:each", "restored", 5_000_000),
    ]
    main_slices = [s for s in slices(events, "actor") if s[0] == "main"]
    assert main_slices == [("main", "main", 0, 5_000_000), ("main", "main", 5_000_000, 1_000_000)]


def test_flows_pair_sends_and_receipts_in_order_per_sender_receiver_and_type() -> None:
    t0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    events = [
        TraceEvent(TraceKind.NOTE, "", 10.0, "started", detail=t0.isoformat()),
        TraceEvent(TraceKind.SPAWN, "gov", 10.0, peer=""),
        TraceEvent(TraceKind.SPAWN, "main", 10.0, peer=""),
        TraceEvent(TraceKind.RECEIVE, "main", 10.0, "Execute"),
        TraceEvent(TraceKind.SEND, "main", 10.5, "Ask", "gov"),
        TraceEvent(TraceKind.SEND, "main", 10.75, "Ask", "gov"),
        TraceEvent(TraceKind.RECEIVE, "gov", 11.0, "Ask", "main"),
        TraceEvent(TraceKind.RECEIVE, "gov", 12.0, "Ask", "main"),
        TraceEvent(TraceKind.SEND, "main", 12.5, "Ask", "gov"),  # never received
        TraceEvent(TraceKind.EXIT, "main", 13.0, "ok"),
        TraceEvent(TraceKind.EXIT, "gov", 13.0, "ok"),
    ]
    run = RunRecord("r1", "p", "completed", t0, None)

    document = perfetto_trace(build_trace(run, events, []))

    found = check_perfetto(document)
    flows = [
        (s["ts"], f["ts"], s["tid"], f["tid"])
        for s in by_phase(found, "s")
        for f in by_phase(found, "f")
        if s["id"] == f["id"]
    ]
    assert flows == [(500_000, 1_000_000, 2, 1), (750_000, 2_000_000, 2, 1)]
    mailbox = [
        (e["ts"], e["args"]["depth"]) for e in by_phase(found, "C") if e["name"] == "mailbox gov"
    ]
    assert mailbox == [
        (500_000, 1),
        (750_000, 2),
        (1_000_000, 1),
        (2_000_000, 0),
        (2_500_000, 1),
        (3_000_000, 0),  # emptied when the actor exits
    ]


def test_the_json_text_is_the_document() -> None:
    t0 = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    events = [
        TraceEvent(TraceKind.NOTE, "", 0.0, "started", detail=t0.isoformat()),
        TraceEvent(TraceKind.SPAWN, "main", 0.0, peer=""),
        TraceEvent(TraceKind.RECEIVE, "main", 0.0, "Execute"),
        TraceEvent(TraceKind.EXIT, "main", 0.25, "ok"),
    ]
    record = StepRecord("r1", "main", "p", True, "out", 1, "0", 0, 0)
    trace: RunTrace = build_trace(RunRecord("r1", "p", "completed", t0, None), events, [record])

    assert json.loads(perfetto_json(trace)) == perfetto_trace(trace)
    [main] = by_phase(check_perfetto(perfetto_trace(trace)), "X")
    assert (main["ts"], main["dur"], main["args"]["cost_usd"]) == (0, 250_000, "0")
    assert Decimal(main["args"]["cost_usd"]) == Decimal(0)


def test_a_governor_wait_just_before_a_send_does_not_catch_its_arrow() -> None:
    t0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    events = [
        TraceEvent(TraceKind.NOTE, "", 10.0, "started", detail=t0.isoformat()),
        TraceEvent(TraceKind.SPAWN, "gov", 10.0, peer=""),
        TraceEvent(TraceKind.SPAWN, "item", 10.0, peer=""),
        TraceEvent(TraceKind.RECEIVE, "item", 10.0, "Execute"),
        TraceEvent(TraceKind.NOTE, "gov", 10.25, "wait", "item", "waits for room"),
        TraceEvent(TraceKind.SEND, "item", 10.5, "Reserve", "gov"),
        TraceEvent(TraceKind.RECEIVE, "gov", 10.5, "Reserve", "item"),
        TraceEvent(TraceKind.EXIT, "item", 11.0, "ok"),
        TraceEvent(TraceKind.EXIT, "gov", 11.0, "ok"),
    ]
    run = RunRecord("r1", "p", "completed", t0, None)

    found = check_perfetto(perfetto_trace(build_trace(run, events, [])))

    on_item = [(e["ph"], e["name"], e["cat"], e["ts"]) for e in found if e.get("tid") == 2]
    assert on_item == [
        ("M", "thread_name", "__metadata", 0),
        ("M", "thread_sort_index", "__metadata", 0),
        ("X", "item", "actor", 0),
        ("i", "wait", "note", 250_000),
        ("i", "send Reserve", "message", 500_000),
        ("s", "Reserve", "message", 500_000),
    ]
    [end] = by_phase(found, "f")
    assert (end["tid"], end["ts"], end["bp"]) == (1, 500_000, "e")
    [counter] = [e for e in by_phase(found, "C") if e["name"] == "usage"]
    assert counter["cat"] == "counter"
