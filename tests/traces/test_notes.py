"""The trace's notes: one enum of kinds, typed payloads, and a tree that never reads wording."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import attrs
import pytest
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, LedgerEntry, RunRecord, StepRecord
from trioflow.runtime import AgentStep, RetryPolicy, Step, Usage, open_runtime
from trioflow.runtime._notes import Committed, NoteKind, RetryNote
from trioflow.runtime._results import StepResult
from trioflow.runtime._steps._fallback_history import (
    FALLBACK_TRIGGERED,
    FallbackHistory,
    fallback_history,
)
from trioflow.runtime.agents import FakeModel
from trioflow.runtime.traces import NodeStatus
from trioflow.runtime.traces._tree import build_trace


async def test_a_retry_note_reads_back_what_it_wrote() -> None:
    written = RetryNote(12, "agent_error: RuntimeError: attempt 3 failed")
    event = written.event("main/0:s")

    assert (event.kind, event.path, event.label, event.detail) == (
        TraceKind.NOTE,
        "main/0:s",
        "retry",
        "attempt 12 agent_error: RuntimeError: attempt 3 failed",
    )
    assert RetryNote.of(event) == written
    with pytest.raises(ValueError, match="not a retry note"):
        RetryNote.of(TraceEvent(TraceKind.NOTE, "main/0:s", 0.0, "fallback", detail="attempt 1 x"))


def test_a_fallback_is_named_by_its_flag_not_by_the_length_of_a_history() -> None:
    own, ran = StepResult("s", "main/0:s#1"), StepResult("b", "main/0:s/fallback:b")

    assert fallback_history({FALLBACK_TRIGGERED: True}, (own, ran)) == FallbackHistory(own, ran)
    assert fallback_history({}, (own, ran)) is None
    assert fallback_history({FALLBACK_TRIGGERED: True}, (own,)) is None


def flaky(failures: int, name: str) -> AgentStep:
    model = FakeModel(name, latency_s=(0.0, 0.0))
    calls = {"n": 0}

    async def run(data: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise RuntimeError(f"try {calls['n']}")
        return await model.run(data)

    backup = AgentStep("backup", FakeModel("backup", latency_s=(0.0, 0.0)))
    return Step.from_callable(run, name=name, retry=RetryPolicy(max_attempts=2), fallback=backup)


async def test_every_note_a_run_writes_is_a_note_kind_and_commits_carry_their_usage() -> None:
    store = InMemoryStore()
    async with open_runtime(store=store) as rt:
        result = await rt.run(flaky(5, "s") >> Step.human_in_the_loop("ask", "ok?"), "in")
        events = await store.trace_of(result.run_id)
        ledger = {entry.key: entry for entry in await store.ledger_of(result.run_id)}

    notes = [event for event in events if event.kind is TraceKind.NOTE]
    assert all(isinstance(event.label, NoteKind) for event in notes)
    assert [(event.label, event.path) for event in notes if event.path != "governor"] == [
        (NoteKind.STARTED, ""),
        (NoteKind.RETRY, "main/0:s"),
        (NoteKind.FALLBACK, "main/0:s"),
        (NoteKind.OUTCOME, "main/0:s"),  # a fallback runs in its step's actor
        (NoteKind.PAUSE, "main/1:ask"),
        (NoteKind.OUTCOME, "main/1:ask"),
        (NoteKind.OUTCOME, "main"),
    ]
    commits = [event for event in notes if event.label == NoteKind.COMMIT]
    assert [(event.peer, event.detail) for event in commits] == [
        ("main/0:s/fallback:backup", "main/0:s/fallback:backup#1#1")
    ]
    [commit] = commits
    entry = ledger["main/0:s/fallback:backup#1#1"]
    usage = Usage(Decimal(entry.cost_usd), entry.input_tokens, entry.output_tokens)
    assert commit.data == Committed("main/0:s/fallback:backup#1#1", usage)


async def test_attempts_take_their_number_reason_and_usage_from_notes_and_ledger() -> None:
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    path = "main/0:s"
    events = [
        TraceEvent(TraceKind.NOTE, "", 0.0, "started", detail=t0.isoformat()),
        TraceEvent(TraceKind.SPAWN, path, 0.0, peer="main"),
        TraceEvent(TraceKind.RECEIVE, path, 0.0, "Execute", "main"),
        RetryNote(1, "validation: too short").event(path),
        TraceEvent(TraceKind.EXIT, path, 3.0, "ok"),
    ]
    events[3] = attrs.evolve(events[3], time=1.0)
    ledger = [
        LedgerEntry("r1", f"{path}#1#1", path, "0.25", 3, 4),
        LedgerEntry("r1", f"{path}#1#2", path, "0.50", 1, 0),
        LedgerEntry("r1", f"{path}#2#1", path, "1.00", 10, 10),
        LedgerEntry("r1", "main/1:t#1#1", "main/1:t", "9.00", 0, 0),
    ]
    record = StepRecord("r1", path, "s", True, "out", 2, "1.75", 14, 14)
    run = RunRecord("r1", "p", "completed", t0, None)

    trace = build_trace(run, events, [record], ledger=ledger)

    step = trace.node(path)
    assert [
        (node.path, node.name, node.status, node.reason, node.cost_usd, node.tokens)
        for node in step.children
    ] == [
        ("main/0:s#1", "attempt 1", NodeStatus.FAILED, "validation: too short", Decimal("0.75"), 8),
        ("main/0:s#2", "attempt 2", NodeStatus.OK, None, Decimal("1.00"), 20),
    ]
