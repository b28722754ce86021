"""What happens to messages and spawns once a supervisor starts closing."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trioflow.actors import Actor, ActorStopped, MemoryTraceSink, TraceKind, open_supervisor


class Gate(Actor[str]):
    """Handles one message after ``release`` is set, then stops."""

    def __init__(self, release: trio.Event, handled: list[str]) -> None:
        self._release = release
        self._handled = handled

    async def receive(self, message: str) -> Any:
        await self._release.wait()
        self._handled.append(message)
        self.stop()


async def test_a_tell_queued_behind_a_stop_is_reported_as_dropped() -> None:
    trace = MemoryTraceSink()
    release = trio.Event()
    handled: list[str] = []
    async with open_supervisor("sup", trace) as supervisor:
        gate = supervisor.spawn("gate", lambda: Gate(release, handled), mailbox_size=4)
        await gate.tell("first", sender="me")
        await gate.tell("second", sender="me")
        await trio.testing.wait_all_tasks_blocked()
        release.set()

    assert handled == ["first"]
    dropped = [event for event in trace.of_kind(TraceKind.NOTE) if event.label == "dropped"]
    assert [(event.path, event.peer, event.detail) for event in dropped] == [
        ("sup/gate", "me", "str")
    ]


class Spawner(Actor[str]):
    """Tries to spawn a sibling while its supervisor is closing."""

    def __init__(self, spawn: Any, errors: list[str]) -> None:
        self._spawn = spawn
        self._errors = errors

    async def receive(self, message: str) -> Any:
        await trio.lowlevel.checkpoint()
        try:
            self._spawn()
        except RuntimeError as error:
            self._errors.append(str(error))


async def test_spawning_while_closing_is_refused_instead_of_hanging() -> None:
    errors: list[str] = []
    with trio.fail_after(5):
        async with open_supervisor("sup", MemoryTraceSink()) as supervisor:

            def late_spawn() -> None:
                supervisor.spawn("late", lambda: Gate(trio.Event(), []))

            spawner = supervisor.spawn("spawner", lambda: Spawner(late_spawn, errors))
            await spawner.tell("go")

    assert errors == [
        "supervisor 'sup' is closing: cannot spawn 'late' (its mailbox would never be closed)"
    ]


@pytest.mark.parametrize("size", [1, 4])
async def test_an_ask_queued_behind_a_stop_gets_actor_stopped(size: int) -> None:
    release = trio.Event()
    outcomes: list[str] = []
    async with open_supervisor("sup", MemoryTraceSink()) as supervisor:
        gate = supervisor.spawn("gate", lambda: Gate(release, []), mailbox_size=size)
        await gate.tell("first")

        async def ask_second() -> None:
            with pytest.raises(ActorStopped, match="actor 'sup/gate' has stopped"):
                await gate.ask("second")
            outcomes.append("stopped")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_second)
            await trio.testing.wait_all_tasks_blocked()
            release.set()

    assert outcomes == ["stopped"]


class Vanished(BaseException):
    """Not an ``Exception``: what ends an actor from outside its code (a kill, Ctrl-C)."""


class Vanishes(Actor[str]):
    async def receive(self, message: str) -> Any:
        raise Vanished


async def test_an_asker_waiting_shielded_hears_when_the_actor_ends_by_a_base_exception() -> None:
    """An ask whose handler ends by a ``BaseException`` fails for its asker, never hangs.

    A shielded asker (a step committing a returned call's cost to its
    governor) cannot be rescued by the cancellation that follows: the
    failed reply is the only way it learns that the actor is gone.
    """
    outcomes: list[str] = []
    with pytest.raises(Vanished):  # noqa: PT012 - the block is the actor's whole life
        async with open_supervisor("sup", MemoryTraceSink()) as supervisor:
            doomed = supervisor.spawn("doomed", Vanishes)
            with trio.CancelScope(shield=True), pytest.raises(ActorStopped) as stopped:
                await doomed.ask("commit")
            outcomes.append(str(stopped.value))
    assert outcomes == ["actor 'sup/doomed' has stopped and takes no more messages"]


async def test_an_unshielded_asker_is_cancelled_when_the_actor_ends_by_a_base_exception() -> None:
    """Without a shield the asker hears the cancellation, and only the actor's error goes up."""
    with pytest.raises(Vanished):
        async with open_supervisor("sup", MemoryTraceSink()) as supervisor:
            await supervisor.spawn("doomed", Vanishes).ask("commit")
