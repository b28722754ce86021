"""Trace events: every spawn, send, receive, exit, restart and cancel, in order."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trioflow.actors import (
    Actor,
    ActorRef,
    ChildFailed,
    MemoryTraceSink,
    Restart,
    TraceEvent,
    TraceKind,
    TraceSink,
    open_supervisor,
)

SPAWN, SEND, RECEIVE, EXIT, CANCEL, RESTART, NOTE = (
    TraceKind.SPAWN,
    TraceKind.SEND,
    TraceKind.RECEIVE,
    TraceKind.EXIT,
    TraceKind.CANCEL,
    TraceKind.RESTART,
    TraceKind.NOTE,
)


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Forward:
    n: int


class Boom(Exception):
    pass


class Echo(Actor[Any]):
    async def receive(self, message: Any) -> Any:
        await trio.sleep(1.0)
        if message == "fail":
            raise Boom("echo broke")
        return message


class Forwarder(Actor[Any]):
    def __init__(self, target: ActorRef[Any]) -> None:
        self.target = target

    async def receive(self, message: Forward) -> None:
        await self.target.tell(Ping(message.n), sender=self.path)


def rows(events: list[TraceEvent]) -> list[tuple[Any, ...]]:
    return [(e.kind, e.path, e.time, e.label, e.peer, e.detail) for e in events]


def assert_times_non_decreasing(events: list[TraceEvent]) -> None:
    times = [e.time for e in events]
    assert times == sorted(times)


async def test_lifecycle_of_two_actors_is_traced_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = MemoryTraceSink()
    async with open_supervisor("app", sink) as sup:
        echo = sup.spawn("echo", Echo)
        fwd = sup.spawn("fwd", lambda: Forwarder(echo))
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1.0)
        await fwd.tell(Forward(1))  # t=1: fwd -> echo, echo busy until t=2
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(2.0)
        assert await echo.ask(Ping(2), sender="client") == Ping(2)  # t=3..4
        await trio.sleep(1.0)
    # Both mailboxes close at t=5; both actors exit then, in either order.
    head, tail = sink.events[:-2], sink.events[-2:]
    assert rows(head) == [
        (SPAWN, "app/echo", 0.0, "", "app", None),
        (SPAWN, "app/fwd", 0.0, "", "app", None),
        (SEND, "", 1.0, "Forward", "app/fwd", None),
        (RECEIVE, "app/fwd", 1.0, "Forward", None, None),
        (SEND, "app/fwd", 1.0, "Ping", "app/echo", None),
        (RECEIVE, "app/echo", 1.0, "Ping", "app/fwd", None),
        (SEND, "client", 3.0, "Ping", "app/echo", None),
        (RECEIVE, "app/echo", 3.0, "Ping", "client", None),
    ]
    assert sorted(rows(tail)) == sorted(
        [
            (EXIT, "app/echo", 5.0, "ok", None, None),
            (EXIT, "app/fwd", 5.0, "ok", None, None),
        ]
    )
    assert_times_non_decreasing(sink.events)


async def test_restart_and_failure_exits_are_traced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink, strategy=Restart(max_restarts=1, within_s=10)) as sup:
        echo = sup.spawn("echo", Echo)
        await echo.tell("fail")  # handled 0..1, fails at t=1
        await trio.testing.wait_all_tasks_blocked()
        await echo.tell(Ping(1))  # handled by the restarted actor 1..2
    assert rows(sink.events) == [
        (SPAWN, "sup/echo", 0.0, "", "sup", None),
        (SEND, "", 0.0, "str", "sup/echo", None),
        (RECEIVE, "sup/echo", 0.0, "str", None, None),
        (SEND, "", 0.0, "Ping", "sup/echo", None),
        (EXIT, "sup/echo", 1.0, "failed", None, "Boom: echo broke"),
        (RESTART, "sup/echo", 1.0, "", None, "Boom: echo broke"),
        (RECEIVE, "sup/echo", 1.0, "Ping", None, None),
        (EXIT, "sup/echo", 2.0, "ok", None, None),
    ]
    assert_times_non_decreasing(sink.events)


async def test_escalation_is_traced_with_failure_and_cancel_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = MemoryTraceSink()

    async def scenario() -> None:
        async with open_supervisor("sup", sink) as sup:
            echo = sup.spawn("echo", Echo)
            sup.spawn("idle", Echo)
            await trio.testing.wait_all_tasks_blocked()
            await echo.tell("fail", sender="me")
            await trio.sleep_forever()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    assert excinfo.value.path == "sup/echo"
    reason = "sup/echo failed: Boom: echo broke"
    assert rows(sink.events) == [
        (SPAWN, "sup/echo", 0.0, "", "sup", None),
        (SPAWN, "sup/idle", 0.0, "", "sup", None),
        (SEND, "me", 0.0, "str", "sup/echo", None),
        (RECEIVE, "sup/echo", 0.0, "str", "me", None),
        (EXIT, "sup/echo", 1.0, "failed", None, "Boom: echo broke"),
        (CANCEL, "sup/idle", 1.0, "", None, reason),
    ]


async def test_cancel_event_carries_the_supervisors_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink) as sup:
        busy = sup.spawn("busy", Echo)
        sup.spawn("idle", Echo)
        await busy.tell(Ping(1))
        await trio.sleep(0.5)
        sup.cancel("some reason")
    cancels = sink.of_kind(CANCEL)
    assert sorted(rows(cancels)) == [
        (CANCEL, "sup/busy", 0.5, "", None, "some reason"),
        (CANCEL, "sup/idle", 0.5, "", None, "some reason"),
    ]
    assert sink.of_kind(EXIT) == []


async def test_of_kind_filters_in_order(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink) as sup:
        echo = sup.spawn("a", Echo)
        sup.spawn("b", Echo)
        for n in range(3):
            await echo.tell(Ping(n), sender=f"s{n}")
    assert [e.path for e in sink.of_kind(SPAWN)] == ["sup/a", "sup/b"]
    assert [(e.path, e.peer) for e in sink.of_kind(SEND)] == [
        ("s0", "sup/a"),
        ("s1", "sup/a"),
        ("s2", "sup/a"),
    ]
    assert [(e.path, e.peer) for e in sink.of_kind(RECEIVE)] == [
        ("sup/a", "s0"),
        ("sup/a", "s1"),
        ("sup/a", "s2"),
    ]
    assert sorted(e.path for e in sink.of_kind(EXIT)) == ["sup/a", "sup/b"]
    assert sink.of_kind(RESTART) == []
    assert sink.of_kind(CANCEL) == []
    assert sink.of_kind(NOTE) == []
    # of_kind partitions the events and keeps their order.
    by_kind = [e for kind in TraceKind for e in sink.of_kind(kind)]
    assert sorted(map(id, by_kind)) == sorted(map(id, sink.events))
    for kind in TraceKind:
        assert sink.of_kind(kind) == [e for e in sink.events if e.kind is kind]


def test_memory_sink_records_and_filters_by_hand() -> None:
    sink = MemoryTraceSink()
    note = TraceEvent(NOTE, "x", 1.0, "governor")
    send = TraceEvent(SEND, "x", 2.0, "Ping", "y")
    other_note = TraceEvent(NOTE, "y", 3.0, "retry", detail="attempt 2")
    for event in (note, send, other_note):
        sink.record(event)
    assert sink.events == [note, send, other_note]
    assert sink.of_kind(NOTE) == [note, other_note]
    assert sink.of_kind(SEND) == [send]
    assert sink.of_kind(EXIT) == []
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        note.path = "z"  # type: ignore[misc]


async def test_any_object_with_record_is_a_sink(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class CountingSink:
        def __init__(self) -> None:
            self.kinds: list[TraceKind] = []

        def record(self, event: TraceEvent) -> None:
            self.kinds.append(event.kind)

    counting = CountingSink()
    sink: TraceSink = counting
    async with open_supervisor("sup", sink) as sup:
        ref = sup.spawn("a", Echo)
        await ref.tell(Ping(1))
    assert counting.kinds == [SPAWN, SEND, RECEIVE, EXIT]
