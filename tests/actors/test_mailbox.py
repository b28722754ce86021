"""Mailboxes, tell and ask: ordering, backpressure, replies, timeouts, stopping."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing
from trioflow.actors import (
    DEFAULT_MAILBOX_SIZE,
    Actor,
    ActorError,
    ActorStopped,
    AskTimeout,
    MemoryTraceSink,
    TraceKind,
    open_supervisor,
)


@attrs.frozen
class Numbered:
    sender: str
    seq: int


@attrs.frozen
class Ping:
    value: int


class Boom(Exception):
    pass


class Recorder(Actor[Any]):
    """Appends every message it handles to a shared list; replies with it."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def receive(self, message: Any) -> Any:
        self.log.append(message)
        return message


class Gated(Actor[Any]):
    """Takes one permit from ``permits`` before handling each message."""

    def __init__(self, permits: trio.MemoryReceiveChannel[None], log: list[Any]) -> None:
        self.permits = permits
        self.log = log

    async def receive(self, message: Any) -> Any:
        await self.permits.receive()
        self.log.append(message)
        return message


# --- ordering -----------------------------------------------------------------


async def test_each_senders_sequence_arrives_in_order() -> None:
    log: list[Numbered] = []
    senders = [f"s{i}" for i in range(5)]
    count = 30

    async def send_all(ref: Any, name: str) -> None:
        for seq in range(count):
            await ref.tell(Numbered(name, seq), sender=name)
            if seq % 7 == 0:
                await trio.lowlevel.checkpoint()

    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("rec", lambda: Recorder(log), mailbox_size=2)
        async with trio.open_nursery() as nursery:
            for name in senders:
                nursery.start_soon(send_all, ref, name)

    assert len(log) == len(senders) * count
    for name in senders:
        assert [m.seq for m in log if m.sender == name] == list(range(count))
    # Exactly once: the multiset of messages is the multiset sent.
    assert sorted((m.sender, m.seq) for m in log) == sorted(
        (name, seq) for name in senders for seq in range(count)
    )


async def test_asks_from_several_senders_keep_per_sender_order() -> None:
    log: list[Numbered] = []
    replies: dict[str, list[int]] = {}

    async def ask_all(ref: Any, name: str) -> None:
        got = replies.setdefault(name, [])
        for seq in range(10):
            reply = await ref.ask(Numbered(name, seq), sender=name)
            got.append(reply.seq)

    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("rec", lambda: Recorder(log), mailbox_size=1)
        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(ask_all, ref, name)

    assert replies == {"a": list(range(10)), "b": list(range(10)), "c": list(range(10))}
    for name in ("a", "b", "c"):
        assert [m.seq for m in log if m.sender == name] == list(range(10))
    assert len(log) == 30


# --- backpressure -------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 5])
async def test_tell_beyond_mailbox_size_blocks_until_actor_takes_one(size: int) -> None:
    log: list[int] = []
    sent = 0
    total = size + 4
    permit_send, permit_receive = trio.open_memory_channel[None](total)

    async def producer(ref: Any) -> None:
        nonlocal sent
        for i in range(total):
            await ref.tell(i)
            sent += 1

    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("slow", lambda: Gated(permit_receive, log), mailbox_size=size)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer, ref)
            await trio.testing.wait_all_tasks_blocked()
            # The actor holds message 0 (waiting for a permit), the mailbox
            # holds ``size`` more, and the next tell waits for room.
            assert sent == size + 1
            assert log == []

            permit_send.send_nowait(None)
            await trio.testing.wait_all_tasks_blocked()
            # Message 0 handled, message 1 taken: exactly one more tell fits.
            assert log == [0]
            assert sent == size + 2

            permit_send.send_nowait(None)
            await trio.testing.wait_all_tasks_blocked()
            assert log == [0, 1]
            assert sent == size + 3

            for _ in range(total - 2):
                permit_send.send_nowait(None)
        assert sent == total
    assert log == list(range(total))


async def test_default_mailbox_holds_default_size() -> None:
    log: list[int] = []
    sent = 0
    permit_send, permit_receive = trio.open_memory_channel[None](100)

    async def producer(ref: Any) -> None:
        nonlocal sent
        for i in range(40):
            await ref.tell(i)
            sent += 1

    assert DEFAULT_MAILBOX_SIZE == 16
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("slow", lambda: Gated(permit_receive, log))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer, ref)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == DEFAULT_MAILBOX_SIZE + 1
            for _ in range(40):
                permit_send.send_nowait(None)
    assert sent == 40
    assert log == list(range(40))


async def test_ask_waits_for_mailbox_room_and_timeout_counts_that_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    permit_send, permit_receive = trio.open_memory_channel[None](10)
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("full", lambda: Gated(permit_receive, log), mailbox_size=1)
        await ref.tell("held")  # taken by the actor, which waits for a permit
        await ref.tell("queued")  # fills the mailbox
        start = trio.current_time()
        with pytest.raises(AskTimeout) as excinfo:
            await ref.ask(Ping(1), timeout=4.0)
        assert trio.current_time() - start == 4.0
        assert excinfo.value.path == "sup/full"
        assert excinfo.value.timeout == 4.0
        for _ in range(2):
            permit_send.send_nowait(None)
    # The ask never got into the mailbox.
    assert log == ["held", "queued"]


# --- ask ------------------------------------------------------------------------


class Calculator(Actor[Any]):
    def __init__(self, raised: list[BaseException]) -> None:
        self.raised = raised
        self.handled = 0

    async def receive(self, message: Any) -> Any:
        self.handled += 1
        if isinstance(message, Ping):
            return message.value * 2
        if message == "explode":
            error = Boom(f"bad request #{self.handled}")
            self.raised.append(error)
            raise error
        if message == "count":
            return self.handled
        return None


async def test_ask_returns_the_handlers_return_value() -> None:
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("calc", lambda: Calculator([]))
        assert await ref.ask(Ping(21)) == 42
        assert await ref.ask(Ping(-4)) == -8
        assert await ref.ask("other") is None
        assert await ref.ask("count") == 4


async def test_ask_handler_exception_goes_to_asker_and_actor_keeps_serving() -> None:
    raised: list[BaseException] = []
    instances: list[Calculator] = []
    sink = MemoryTraceSink()

    def make() -> Calculator:
        actor = Calculator(raised)
        instances.append(actor)
        return actor

    async with open_supervisor("sup", sink) as sup:
        ref = sup.spawn("calc", make)
        assert await ref.ask(Ping(1)) == 2
        with pytest.raises(Boom, match=r"^bad request #2$") as excinfo:
            await ref.ask("explode")
        assert excinfo.value is raised[0]
        assert await ref.ask(Ping(5)) == 10
        with pytest.raises(Boom, match=r"^bad request #4$"):
            await ref.ask("explode")
        assert await ref.ask("count") == 5

    # One actor instance served everything; it exited normally only at the end.
    assert len(instances) == 1
    assert [(e.label, e.detail) for e in sink.of_kind(TraceKind.EXIT)] == [("ok", None)]
    assert sink.of_kind(TraceKind.RESTART) == []


class Slow(Actor[Any]):
    def __init__(self, delay: float, log: list[Any]) -> None:
        self.delay = delay
        self.log = log

    async def receive(self, message: Any) -> Any:
        await trio.sleep(self.delay)
        self.log.append(message)
        return message


async def test_ask_timeout_names_actor_and_timeout(autojump_clock: trio.testing.MockClock) -> None:
    log: list[Any] = []
    async with open_supervisor("root/sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("slow", lambda: Slow(10.0, log))
        start = trio.current_time()
        with pytest.raises(AskTimeout) as excinfo:
            await ref.ask(Ping(3), timeout=2.5)
        assert trio.current_time() - start == 2.5
        error = excinfo.value
        assert isinstance(error, ActorError)
        assert error.path == "root/sup/slow"
        assert error.timeout == 2.5
        assert str(error) == "actor 'root/sup/slow' did not reply to Ping within 2.5s"
        # The actor still handles the message (late) and serves the next ask.
        assert await ref.ask(Ping(4), timeout=30) == Ping(4)
        assert trio.current_time() - start == 20.0
    assert log == [Ping(3), Ping(4)]


async def test_ask_within_timeout_returns(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("slow", lambda: Slow(2.0, []))
        assert await ref.ask(Ping(7), timeout=2.5) == Ping(7)
        assert trio.current_time() == 2.0


# --- stopped actors -------------------------------------------------------------


class Stopper(Actor[Any]):
    """Stops itself on "stop" after waiting for ``release``."""

    def __init__(self, release: trio.Event, log: list[Any]) -> None:
        self.release = release
        self.log = log

    async def receive(self, message: Any) -> Any:
        self.log.append(message)
        if message == "stop":
            await self.release.wait()
            self.stop()
            return "stopping"
        return message


async def test_tell_and_ask_to_a_stopped_actor_raise_actor_stopped() -> None:
    log: list[Any] = []
    release = trio.Event()
    release.set()
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink) as sup:
        ref = sup.spawn("stopper", lambda: Stopper(release, log))
        assert await ref.ask("stop") == "stopping"
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ActorStopped) as told:
            await ref.tell("late tell")
        assert told.value.path == "sup/stopper"
        assert str(told.value) == "actor 'sup/stopper' has stopped and takes no more messages"
        with pytest.raises(ActorStopped) as asked:
            await ref.ask("late ask")
        assert asked.value.path == "sup/stopper"
        # The name is free again once its actor has exited.
        again = sup.spawn("stopper", lambda: Recorder(log))
        assert await again.ask("hello") == "hello"
    assert log == ["stop", "hello"]
    assert [(e.path, e.label) for e in sink.of_kind(TraceKind.EXIT)] == [
        ("sup/stopper", "ok"),
        ("sup/stopper", "ok"),
    ]


async def test_tell_after_supervisor_exit_raises_actor_stopped() -> None:
    log: list[Any] = []
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        ref = sup.spawn("rec", lambda: Recorder(log))
        await ref.tell(1)
    with pytest.raises(ActorStopped) as excinfo:
        await ref.tell(2)
    assert excinfo.value.path == "sup/rec"
    with pytest.raises(ActorStopped):
        await ref.ask(3)
    assert log == [1]


async def test_asks_queued_when_actor_stops_get_actor_stopped() -> None:
    log: list[Any] = []
    release = trio.Event()
    outcomes: dict[int, str] = {}

    async def late_asker(ref: Any, n: int) -> None:
        with pytest.raises(ActorStopped) as excinfo:
            await ref.ask(f"queued ask {n}")
        outcomes[n] = excinfo.value.path

    async def stop_asker(ref: Any) -> None:
        outcomes[-1] = await ref.ask("stop")

    async def run_stop_scenario(ref: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_asker, ref)
            await trio.testing.wait_all_tasks_blocked()
            assert log == ["stop"]  # handling "stop", waiting for release
            await ref.tell("queued tell")
            for n in range(3):
                nursery.start_soon(late_asker, ref, n)
            await trio.testing.wait_all_tasks_blocked()
            release.set()

    with trio.fail_after(10):  # a kernel that forgets queued asks hangs here
        async with open_supervisor("sup", MemoryTraceSink()) as sup:
            ref = sup.spawn("stopper", lambda: Stopper(release, log), mailbox_size=8)
            await run_stop_scenario(ref)

    assert outcomes == {-1: "stopping", 0: "sup/stopper", 1: "sup/stopper", 2: "sup/stopper"}
    # Nothing queued behind "stop" was handled.
    assert log == ["stop"]


async def test_ask_being_handled_when_actor_is_cancelled_gets_actor_stopped() -> None:
    log: list[Any] = []
    outcome: list[str] = []
    sink = MemoryTraceSink()

    async def outside_asker(ref: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with pytest.raises(ActorStopped) as excinfo:
            await ref.ask("forever")
        outcome.append(excinfo.value.path)

    with trio.fail_after(10):  # a kernel that leaves the asker waiting hangs here
        async with trio.open_nursery() as outer, open_supervisor("sup", sink) as sup:
            ref = sup.spawn("slow", lambda: Slow(1e9, log))
            await outer.start(outside_asker, ref)
            await trio.testing.wait_all_tasks_blocked()
            sup.cancel("shutting down")
    assert outcome == ["sup/slow"]
    assert log == []
    assert [(e.path, e.detail) for e in sink.of_kind(TraceKind.CANCEL)] == [
        ("sup/slow", "shutting down")
    ]
