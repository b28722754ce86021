"""The Perfetto export as third-party viewers read it: Chrome DevTools and TracerBench.

Chrome DevTools' trace engine (``@paulirish/trace_engine``) and
TracerBench's trace model (``@tracerbench/trace-model``), pinned in
``tests/traces/node``, are installed by ``npm ci`` the first time this
module runs and loaded by ``node/parse_trace.mjs``, which prints the
threads, slices and flow arrows each found. TracerBench failed on an event
without a category (every trioflow trace had some). DevTools binds a flow
event only to an event of the same category, thread and exact timestamp;
every arrow must bind at both ends, to the ``message`` markers at the send
and at the receipt, on the sender's and the receiver's tracks. Node is
required: CI has it, and a machine without it fails here rather than
skipping the check.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from node_packages import node_with
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, RunRecord
from trioflow.runtime import AgentStep, Step, UsageLimitExceeded, UsageLimits, open_runtime
from trioflow.runtime.agents import FakeModel
from trioflow.runtime.traces import perfetto_trace
from trioflow.runtime.traces._tree import build_trace

NODE_DIR = Path(__file__).parent / "node"
PARSERS = ("@paulirish/trace_engine", "@tracerbench/trace-model")

Parsed = dict[str, Any]


@pytest.fixture(scope="session")
def devtools() -> Callable[[dict[str, Any], Path], Parsed]:
    """Parse a trace document with DevTools' trace engine (installed on first use)."""
    node = node_with(PARSERS, NODE_DIR, needed_for="to check traces in a third-party viewer")

    def parse(document: dict[str, Any], tmp_path: Path) -> Parsed:
        path = tmp_path / "trace.json"
        path.write_text(json.dumps(document))
        done = subprocess.run(
            [node, str(NODE_DIR / "parse_trace.mjs"), str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        parsed: Parsed = json.loads(done.stdout)
        return parsed

    return parse


def as_exported(document: dict[str, Any]) -> tuple[dict[int, str], list[Any], list[Any]]:
    """The threads, slices and arrows the document itself says, in the parser's terms."""
    events = document["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    slices = sorted(
        (e["tid"], e["name"], e["cat"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"
    )
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    arrows = sorted(
        (
            (starts[e["id"]]["tid"], f"send {e['name']}", starts[e["id"]]["ts"]),
            (e["tid"], f"receive {e['name']}", e["ts"]),
        )
        for e in events
        if e["ph"] == "f"
    )
    return threads, slices, arrows


def tracks(threads: list[dict[str, Any]]) -> tuple[dict[int, str], list[Any]]:
    """The threads of process 1 by id, and every slice on them."""
    assert {thread["pid"] for thread in threads} == {1}
    names = {thread["tid"]: thread["name"] for thread in threads}
    slices = sorted(
        (thread["tid"], s["name"], s["cat"], s["ts"], s["dur"])
        for thread in threads
        for s in thread["slices"]
    )
    return names, slices


def as_parsed(parsed: Parsed) -> tuple[dict[int, str], list[Any], list[Any]]:
    """The threads, slices and bound arrows DevTools found.

    TracerBench must find the same threads and slices (it draws no arrows).
    """
    threads, slices = tracks(parsed["devtools"]["threads"])
    assert tracks(parsed["tracerbench"]["threads"]) == (threads, slices)
    arrows = []
    for flow in parsed["devtools"]["flows"]:
        assert [(e["ph"], e["cat"]) for e in flow] == [("i", "message"), ("i", "message")]
        start, end = flow
        # A marker names every message end at its time and track: pick this arrow's.
        label = next(
            part.removeprefix("receive ")
            for part in end["name"].split(", ")
            if part.startswith("receive ")
        )
        assert f"send {label}" in start["name"].split(", ")
        arrows.append(
            (
                (start["tid"], f"send {label}", start["ts"]),
                (end["tid"], f"receive {label}", end["ts"]),
            )
        )
    return threads, slices, sorted(arrows)


def two_steps_and_a_governor_wait() -> dict[str, Any]:
    """A hand-made run: ``main`` starts ``a`` and ``b``; ``b`` waits for the governor.

    The governor's ``wait`` is an instant on ``b``'s track just before
    ``b`` sends its reservation: Perfetto's stack binding took that arrow to
    the ``wait`` instant before markers; ``a`` sends two messages at one time.
    """
    t0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    send, receive, note = TraceKind.SEND, TraceKind.RECEIVE, TraceKind.NOTE
    events = [
        TraceEvent(note, "", 10.0, "started", detail=t0.isoformat()),
        TraceEvent(TraceKind.SPAWN, "governor", 10.0, peer=""),
        TraceEvent(TraceKind.SPAWN, "main", 10.0, peer=""),
        TraceEvent(receive, "main", 10.0, "Execute"),
        TraceEvent(TraceKind.SPAWN, "main/a", 10.1, peer="main"),
        TraceEvent(TraceKind.SPAWN, "main/b", 10.1, peer="main"),
        TraceEvent(send, "main", 10.1, "Execute", "main/a"),
        TraceEvent(send, "main", 10.1, "Execute", "main/b"),
        TraceEvent(receive, "main/a", 10.2, "Execute", "main"),
        TraceEvent(receive, "main/b", 10.25, "Execute", "main"),
        TraceEvent(send, "main/a", 10.3, "Reserve", "governor"),
        TraceEvent(send, "main/a", 10.3, "Commit", "governor"),
        TraceEvent(receive, "governor", 10.35, "Reserve", "main/a"),
        TraceEvent(receive, "governor", 10.4, "Commit", "main/a"),
        TraceEvent(note, "governor", 10.45, "wait", "main/b", "waits for room"),
        TraceEvent(send, "main/b", 10.5, "Reserve", "governor"),
        TraceEvent(receive, "governor", 10.6, "Reserve", "main/b"),
        TraceEvent(TraceKind.EXIT, "main/a", 11.0, "ok"),
        TraceEvent(TraceKind.EXIT, "main/b", 11.5, "ok"),
        TraceEvent(TraceKind.EXIT, "main", 12.0, "ok"),
        TraceEvent(TraceKind.EXIT, "governor", 12.0, "ok"),
    ]
    run = RunRecord("r1", "p", "completed", t0, None)
    return perfetto_trace(build_trace(run, events, []))


def test_devtools_binds_every_arrow_to_the_markers_of_its_sender_and_receiver(
    devtools: Any, tmp_path: Path
) -> None:
    document = two_steps_and_a_governor_wait()

    threads, slices, arrows = as_parsed(devtools(document, tmp_path))

    assert threads == {1: "governor", 2: "main", 3: "main/a", 4: "main/b"}
    assert slices == [
        (1, "governor", "actor", 350_000, 1_650_000),
        (2, "main", "actor", 0, 2_000_000),
        (3, "a", "actor", 200_000, 800_000),
        (4, "b", "actor", 250_000, 1_250_000),
    ]
    assert arrows == [
        ((2, "send Execute", 100_000), (3, "receive Execute", 200_000)),
        ((2, "send Execute", 100_000), (4, "receive Execute", 250_000)),
        ((3, "send Commit", 300_000), (1, "receive Commit", 400_000)),
        ((3, "send Reserve", 300_000), (1, "receive Reserve", 350_000)),
        ((4, "send Reserve", 500_000), (1, "receive Reserve", 600_000)),
    ]
    assert (threads, slices, arrows) == as_exported(document)


async def test_devtools_reads_a_budgeted_map_as_exported(devtools: Any, tmp_path: Path) -> None:
    """A real run (the wall clock: a send and its receipt are microseconds apart)."""
    tagger = FakeModel(
        "tagger",
        respond=lambda text: f"tags for {text}",
        seed=5,
        input_price_per_mtok="10",
        output_price_per_mtok="30",
        max_output_tokens=100,
        latency_s=(0.01, 0.05),
    )
    items = Step.map_over("tag_all", AgentStep("tag", tagger), max_concurrency=4)
    async with open_runtime(store=InMemoryStore()) as rt:
        with pytest.raises(UsageLimitExceeded) as raised:
            await rt.run(items, [f"doc {n}" for n in range(20)], limits=UsageLimits("0.005"))
        document = perfetto_trace(await rt.trace(raised.value.result.run_id))
    threads, slices, arrows = as_exported(document)
    # DevTools keys a flow's events by timestamp: an arrow whose send and receipt
    # round to one microsecond cannot be drawn there (it is in the file all the same).
    drawable = [arrow for arrow in arrows if arrow[0][2] != arrow[1][2]]

    parsed = as_parsed(devtools(document, tmp_path))

    assert parsed == (threads, slices, drawable)
