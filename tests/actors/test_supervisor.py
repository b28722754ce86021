"""Supervisors: escalation, restarts, body exceptions, cancellation, no orphans."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trioflow.actors import (
    ESCALATE,
    Actor,
    ActorStopped,
    ChildFailed,
    Escalate,
    MemoryTraceSink,
    Restart,
    TraceKind,
    open_supervisor,
)


class Boom(Exception):
    pass


def task_names() -> list[str]:
    """The names of every task in this run, found by walking the task tree."""
    names: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None  # narrows Optional; exact checks follow
    stack = [root]
    while stack:
        task = stack.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


class Lifecycle:
    """Counts actor incarnations and handlers that are running."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.active = 0
        self.finished = 0
        self.cancel_reasons: dict[str, str | None] = {}


class Worker(Actor[Any]):
    """``"fail"`` raises, ``"hang"`` sleeps forever; other messages are logged."""

    def __init__(self, life: Lifecycle, log: list[Any], errors: list[BaseException]) -> None:
        self.life = life
        self.log = log
        self.errors = errors

    async def receive(self, message: Any) -> Any:
        self.life.active += 1
        try:
            if message == "fail":
                error = Boom(f"kaput {len(self.errors)}")
                self.errors.append(error)
                raise error
            if message == "hang":
                try:
                    await trio.sleep_forever()
                except trio.Cancelled as cancelled:
                    self.life.cancel_reasons[self.path] = cancelled.reason
                    raise
            self.log.append((self.path, message))
            return message
        finally:
            self.life.active -= 1
            self.life.finished += 1


def worker_factory(life: Lifecycle, log: list[Any], errors: list[BaseException], name: str) -> Any:
    def make() -> Worker:
        life.started.append(name)
        return Worker(life, log, errors)

    return make


# --- escalate -------------------------------------------------------------------


async def test_escalate_cancels_siblings_and_raises_child_failed() -> None:
    baseline = list(trio.lowlevel.current_task().child_nurseries)
    life = Lifecycle()
    log: list[Any] = []
    errors: list[BaseException] = []
    sink = MemoryTraceSink()
    body_reason: list[str | None] = []

    async def scenario() -> None:
        async with open_supervisor("app", sink) as sup:
            a = sup.spawn("a", worker_factory(life, log, errors, "a"))
            b = sup.spawn("b", worker_factory(life, log, errors, "b"))
            sup.spawn("idle", worker_factory(life, log, errors, "idle"))
            bad = sup.spawn("bad", worker_factory(life, log, errors, "bad"))
            await a.tell("hang")
            await b.tell("hang")
            await trio.testing.wait_all_tasks_blocked()
            assert life.active == 2
            assert sorted(n for n in task_names() if n.startswith("app/")) == [
                "app/a",
                "app/b",
                "app/bad",
                "app/idle",
            ]
            await bad.tell("fail")
            try:
                await trio.sleep_forever()
            except trio.Cancelled as cancelled:
                body_reason.append(cancelled.reason)
                raise

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()

    error = excinfo.value
    assert not isinstance(error, BaseExceptionGroup)
    assert type(error) is ChildFailed
    assert error.path == "app/bad"
    assert error.cause is errors[0]
    assert error.__cause__ is errors[0]
    assert error.restarts == 0
    assert str(error) == "actor 'app/bad' failed: Boom: kaput 0"

    reason = "app/bad failed: Boom: kaput 0"
    assert life.cancel_reasons == {"app/a": reason, "app/b": reason}
    assert body_reason == [reason]
    cancels = {e.path: e.detail for e in sink.of_kind(TraceKind.CANCEL)}
    assert cancels == {"app/a": reason, "app/b": reason, "app/idle": reason}
    assert [(e.path, e.label, e.detail) for e in sink.of_kind(TraceKind.EXIT)] == [
        ("app/bad", "failed", "Boom: kaput 0")
    ]
    # No orphans: every handler finished, no child task is left.
    assert life.active == 0
    assert life.finished == 3
    assert [n for n in task_names() if n.startswith("app/")] == []
    assert trio.lowlevel.current_task().child_nurseries == baseline
    assert log == []


async def test_escalate_is_the_default_strategy() -> None:
    assert Escalate() == ESCALATE
    errors: list[BaseException] = []

    async def scenario() -> None:
        async with open_supervisor("", MemoryTraceSink(), strategy=ESCALATE) as sup:
            ref = sup.spawn("x", worker_factory(Lifecycle(), [], errors, "x"))
            await ref.tell("fail")
            await trio.sleep_forever()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    assert excinfo.value.path == "x"  # a root supervisor adds no prefix
    assert excinfo.value.cause is errors[0]


async def test_simultaneous_failures_report_the_first_one() -> None:
    """Three children fail in the same scheduling batch: the first one to
    fail (the first EXIT event) is the one reported, and its siblings'
    failures do not replace it."""
    gate = trio.Event()
    errors: dict[str, BaseException] = {}
    sink = MemoryTraceSink()

    class FailsAtGate(Actor[Any]):
        async def receive(self, message: Any) -> None:
            await gate.wait()
            errors[self.path] = Boom(f"{self.path} down")
            raise errors[self.path]

    async def scenario() -> None:
        async with open_supervisor("sup", sink) as sup:
            refs = [sup.spawn(f"f{i}", FailsAtGate) for i in range(3)]
            sup.spawn("idle", FailsAtGate)
            for ref in refs:
                await ref.tell("go")
            await trio.testing.wait_all_tasks_blocked()
            gate.set()  # wakes all three with a value: none of them sees the cancel
            await trio.sleep_forever()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    failed = [e for e in sink.of_kind(TraceKind.EXIT) if e.label == "failed"]
    assert sorted(e.path for e in failed) == ["sup/f0", "sup/f1", "sup/f2"]
    first = failed[0].path
    assert excinfo.value.path == first
    assert excinfo.value.cause is errors[first]
    assert [(e.path, e.detail) for e in sink.of_kind(TraceKind.CANCEL)] == [
        ("sup/idle", f"{first} failed: Boom: {first} down")
    ]


async def test_child_failing_while_mailboxes_drain_escalates() -> None:
    """The body finished normally; a child fails on a queued message."""
    life = Lifecycle()
    log: list[Any] = []
    errors: list[BaseException] = []
    sink = MemoryTraceSink()
    gate = trio.Event()

    class GatedWorker(Worker):
        async def receive(self, message: Any) -> Any:
            await gate.wait()
            return await super().receive(message)

    async def scenario() -> None:
        async with open_supervisor("sup", sink) as sup:
            ref = sup.spawn("w", lambda: GatedWorker(life, log, errors))
            other = sup.spawn("other", lambda: Worker(life, log, errors))
            await other.tell("hang")
            for message in (1, 2, "fail", 3):
                await ref.tell(message)
            gate.set()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    assert excinfo.value.path == "sup/w"
    assert excinfo.value.cause is errors[0]
    assert log == [("sup/w", 1), ("sup/w", 2)]
    assert life.cancel_reasons == {"sup/other": "sup/w failed: Boom: kaput 0"}
    assert life.active == 0
    assert [n for n in task_names() if n.startswith("sup/")] == []


async def test_duplicate_running_name_is_rejected() -> None:
    async with open_supervisor("sup", MemoryTraceSink()) as sup:
        sup.spawn("dup", worker_factory(Lifecycle(), [], [], "dup"))
        with pytest.raises(ValueError, match=r"^an actor named 'sup/dup' is already running$"):
            sup.spawn("dup", worker_factory(Lifecycle(), [], [], "dup"))


# --- restart --------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 1, 2, 3])
async def test_restart_keeps_serving_with_queued_messages(failures: int) -> None:
    life = Lifecycle()
    log: list[Any] = []
    errors: list[BaseException] = []
    sink = MemoryTraceSink()
    gate = trio.Event()

    class GatedWorker(Worker):
        async def receive(self, message: Any) -> Any:
            await gate.wait()
            return await super().receive(message)

    def make() -> GatedWorker:
        life.started.append("w")
        return GatedWorker(life, log, errors)

    messages: list[Any] = []
    for i in range(failures):
        messages += [f"m{i}", "fail"]
    messages += ["last"]

    async with open_supervisor("sup", sink, strategy=Restart(max_restarts=3)) as sup:
        ref = sup.spawn("w", make, mailbox_size=len(messages))
        for message in messages:
            await ref.tell(message)  # all queued: the actor waits at the gate
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        # Every queued message except the failing ones was handled, in order.
        assert log == [("sup/w", m) for m in messages if m != "fail"]
        assert await ref.ask("after") == "after"

    assert len(life.started) == failures + 1
    assert len(errors) == failures
    restarts = sink.of_kind(TraceKind.RESTART)
    assert [(e.path, e.detail) for e in restarts] == [
        ("sup/w", f"Boom: kaput {i}") for i in range(failures)
    ]
    assert [(e.label, e.detail) for e in sink.of_kind(TraceKind.EXIT)] == [
        ("failed", f"Boom: kaput {i}") for i in range(failures)
    ] + [("ok", None)]
    assert log[-1] == ("sup/w", "after")


async def test_restart_keeps_queued_asks_for_the_next_incarnation() -> None:
    incarnations: list[int] = []
    gate = trio.Event()

    class Counting(Actor[Any]):
        def __init__(self) -> None:
            incarnations.append(len(incarnations))
            self.number = incarnations[-1]

        async def receive(self, message: Any) -> Any:
            await gate.wait()
            if message == "fail":
                raise Boom("down")
            return (self.number, message)

    results: dict[int, Any] = {}
    async with open_supervisor("sup", MemoryTraceSink(), strategy=Restart(2, 10.0)) as sup:
        ref = sup.spawn("c", Counting)

        async def ask(n: int) -> None:
            results[n] = await ref.ask(n)

        async with trio.open_nursery() as nursery:
            await ref.tell("fail")  # taken by incarnation 0, which waits at the gate
            for n in range(3):
                nursery.start_soon(ask, n)
                await trio.testing.wait_all_tasks_blocked()
            assert results == {}
            gate.set()
    assert results == {0: (1, 0), 1: (1, 1), 2: (1, 2)}
    assert incarnations == [0, 1]


async def test_too_many_restarts_within_period_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    life = Lifecycle()
    log: list[Any] = []
    errors: list[BaseException] = []
    sink = MemoryTraceSink()

    async def scenario() -> None:
        async with open_supervisor(
            "sup", sink, strategy=Restart(max_restarts=2, within_s=5.0)
        ) as sup:
            ref = sup.spawn("w", worker_factory(life, log, errors, "w"))
            sibling = sup.spawn("s", worker_factory(life, log, errors, "s"))
            await sibling.tell("hang")
            for _ in range(3):
                await ref.tell("fail")
                await ref.tell("ok")
                await trio.sleep(1.0)
            await trio.sleep_forever()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    error = excinfo.value
    assert type(error) is ChildFailed
    assert error.path == "sup/w"
    assert error.restarts == 2
    assert error.cause is errors[2]
    assert str(error) == "actor 'sup/w' failed after 2 restart(s): Boom: kaput 2"
    assert trio.current_time() == 2.0
    assert sorted(life.started) == ["s", "w", "w", "w"]
    assert log == [("sup/w", "ok"), ("sup/w", "ok")]
    assert [e.time for e in sink.of_kind(TraceKind.RESTART)] == [0.0, 1.0]
    assert life.cancel_reasons == {"sup/s": "sup/w failed: Boom: kaput 2"}
    assert [n for n in task_names() if n.startswith("sup/")] == []


async def test_failures_spread_beyond_the_period_do_not_accumulate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    life = Lifecycle()
    errors: list[BaseException] = []
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink, strategy=Restart(max_restarts=1, within_s=5.0)) as sup:
        ref = sup.spawn("w", worker_factory(life, [], errors, "w"))
        for _ in range(6):
            await ref.tell("fail")
            await trio.sleep(5.5)
    assert len(errors) == 6
    assert len(life.started) == 7
    assert [e.time for e in sink.of_kind(TraceKind.RESTART)] == [0.0, 5.5, 11.0, 16.5, 22.0, 27.5]


async def test_restart_window_slides(autojump_clock: trio.testing.MockClock) -> None:
    """Old restarts leave the window; two recent ones still escalate."""
    errors: list[BaseException] = []
    sink = MemoryTraceSink()

    async def scenario() -> None:
        async with open_supervisor("sup", sink, strategy=Restart(2, within_s=10.0)) as sup:
            ref = sup.spawn("w", worker_factory(Lifecycle(), [], errors, "w"))
            for delay in (0.0, 4.0, 7.0, 2.0, 1.0):
                await trio.sleep(delay)
                await ref.tell("fail")
            raise AssertionError("not reached")  # pragma: no cover

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    # Failures at 0, 4, 11 and 13: at 11 the restart at 0 has left the window
    # (it holds {4}), at 13 it holds {4, 11}, so that failure escalates.
    assert [e.time for e in sink.of_kind(TraceKind.RESTART)] == [0.0, 4.0, 11.0]
    assert excinfo.value.restarts == 2
    assert excinfo.value.cause is errors[3]
    assert len(errors) == 4
    assert trio.current_time() == 13.0


async def test_zero_max_restarts_escalates_on_first_failure() -> None:
    errors: list[BaseException] = []

    async def scenario() -> None:
        async with open_supervisor("sup", MemoryTraceSink(), strategy=Restart(0)) as sup:
            ref = sup.spawn("w", worker_factory(Lifecycle(), [], errors, "w"))
            await ref.tell("fail")
            await trio.sleep_forever()

    with pytest.raises(ChildFailed) as excinfo:
        await scenario()
    assert excinfo.value.restarts == 0
    assert excinfo.value.cause is errors[0]
    assert str(excinfo.value) == "actor 'sup/w' failed: Boom: kaput 0"


def test_restart_validates_its_limits() -> None:
    with pytest.raises(ValueError, match=r"^max_restarts must be >= 0, got -1$"):
        Restart(max_restarts=-1)
    with pytest.raises(ValueError, match=r"^within_s must be > 0, got 0$"):
        Restart(within_s=0)
    assert Restart() == Restart(max_restarts=3, within_s=5.0)


# --- body exceptions and cancellation ---------------------------------------------


async def test_body_exception_propagates_unwrapped_and_cancels_children() -> None:
    baseline = list(trio.lowlevel.current_task().child_nurseries)
    life = Lifecycle()
    sink = MemoryTraceSink()
    raised = KeyError("body went wrong")

    async def scenario() -> None:
        async with open_supervisor("sup", sink) as sup:
            a = sup.spawn("a", worker_factory(life, [], [], "a"))
            sup.spawn("b", worker_factory(life, [], [], "b"))
            await a.tell("hang")
            await trio.testing.wait_all_tasks_blocked()
            raise raised

    with pytest.raises(KeyError) as excinfo:
        await scenario()
    assert excinfo.value is raised
    assert type(excinfo.value) is KeyError
    assert set(life.cancel_reasons) == {"sup/a"}
    assert {e.path for e in sink.of_kind(TraceKind.CANCEL)} == {"sup/a", "sup/b"}
    assert sink.of_kind(TraceKind.EXIT) == []
    assert life.active == 0
    assert [n for n in task_names() if n.startswith("sup/")] == []
    assert trio.lowlevel.current_task().child_nurseries == baseline


async def test_body_exception_keeps_its_cause_and_context() -> None:
    """The body's exception propagates unchanged: its chain is not rewritten."""
    original = OSError("disk")

    async def raise_with_cause() -> None:
        async with open_supervisor("sup", MemoryTraceSink()) as sup:
            sup.spawn("a", worker_factory(Lifecycle(), [], [], "a"))
            raise RuntimeError("wrapped") from original

    with pytest.raises(RuntimeError) as excinfo:
        await raise_with_cause()
    assert excinfo.value.__cause__ is original
    assert excinfo.value.__suppress_context__ is True

    async def raise_while_handling() -> None:
        async with open_supervisor("sup", MemoryTraceSink()) as sup:
            sup.spawn("a", worker_factory(Lifecycle(), [], [], "a"))
            try:
                raise original
            except OSError:
                raise RuntimeError("while handling") from None

    with pytest.raises(RuntimeError) as excinfo:
        await raise_while_handling()
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is original
    assert excinfo.value.__suppress_context__ is True

    async def raise_plain() -> None:
        async with open_supervisor("sup", MemoryTraceSink()) as sup:
            sup.spawn("a", worker_factory(Lifecycle(), [], [], "a"))
            raise RuntimeError("plain")

    with pytest.raises(RuntimeError) as excinfo:
        await raise_plain()
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None
    assert excinfo.value.__suppress_context__ is False


async def test_body_raising_actor_stopped_is_not_wrapped() -> None:
    async def scenario() -> None:
        async with open_supervisor("sup", MemoryTraceSink()) as sup:
            ref = sup.spawn("a", worker_factory(Lifecycle(), [], [], "a"))
            ref.close()
            await ref.tell("x")

    with pytest.raises(ActorStopped) as excinfo:
        await scenario()
    assert excinfo.value.path == "sup/a"


async def test_cancel_reason_reaches_every_child() -> None:
    baseline = list(trio.lowlevel.current_task().child_nurseries)
    life = Lifecycle()
    sink = MemoryTraceSink()
    body_went_on = False
    async with open_supervisor("sup", sink) as sup:
        busy = sup.spawn("busy", worker_factory(life, [], [], "busy"))
        sup.spawn("idle", worker_factory(life, [], [], "idle"))
        await busy.tell("hang")
        await trio.testing.wait_all_tasks_blocked()
        sup.cancel("some reason")
        await trio.lowlevel.checkpoint()  # the body is cancelled too
        body_went_on = True
    assert body_went_on is False
    cancels = sink.of_kind(TraceKind.CANCEL)
    assert sorted((e.path, e.detail) for e in cancels) == [
        ("sup/busy", "some reason"),
        ("sup/idle", "some reason"),
    ]
    assert life.cancel_reasons == {"sup/busy": "some reason"}
    assert sink.of_kind(TraceKind.EXIT) == []
    assert [n for n in task_names() if n.startswith("sup/")] == []
    assert trio.lowlevel.current_task().child_nurseries == baseline


async def test_outer_cancellation_leaves_no_orphans(
    autojump_clock: trio.testing.MockClock,
) -> None:
    baseline = list(trio.lowlevel.current_task().child_nurseries)
    life = Lifecycle()
    sink = MemoryTraceSink()
    with trio.move_on_after(3.0) as outer:
        async with open_supervisor("sup", sink) as sup:
            a = sup.spawn("a", worker_factory(life, [], [], "a"))
            sup.spawn("b", worker_factory(life, [], [], "b"))
            await a.tell("hang")
            await trio.sleep_forever()
    assert outer.cancelled_caught is True
    assert trio.current_time() == 3.0
    assert sorted(e.path for e in sink.of_kind(TraceKind.CANCEL)) == ["sup/a", "sup/b"]
    assert life.cancel_reasons == {"sup/a": None}
    assert life.active == 0
    assert [n for n in task_names() if n.startswith("sup/")] == []
    assert trio.lowlevel.current_task().child_nurseries == baseline


async def test_normal_exit_drains_mailboxes_and_leaves_no_orphans() -> None:
    baseline = list(trio.lowlevel.current_task().child_nurseries)
    life = Lifecycle()
    log: list[Any] = []
    sink = MemoryTraceSink()
    async with open_supervisor("sup", sink) as sup:
        refs = [sup.spawn(name, worker_factory(life, log, [], name)) for name in "xyz"]
        for i in range(3):
            for ref in refs:
                await ref.tell(i)
    assert sorted(log) == sorted((f"sup/{n}", i) for n in "xyz" for i in range(3))
    for name in "xyz":
        assert [m for p, m in log if p == f"sup/{name}"] == [0, 1, 2]
    assert sorted((e.path, e.label) for e in sink.of_kind(TraceKind.EXIT)) == [
        ("sup/x", "ok"),
        ("sup/y", "ok"),
        ("sup/z", "ok"),
    ]
    assert sink.of_kind(TraceKind.CANCEL) == []
    assert life.finished == 9
    assert [n for n in task_names() if n.startswith("sup/")] == []
    assert trio.lowlevel.current_task().child_nurseries == baseline


# --- shielded children ----------------------------------------------------------------------------


class Ledger(Actor[Any]):
    """Counts what it is told, after a checkpoint (as a journal write would take)."""

    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries

    async def receive(self, message: Any) -> Any:
        await trio.sleep(1)
        self.entries.append(message)
        return len(self.entries)


class Payer(Actor[Any]):
    """On ``"pay"``: waits to be cancelled, then commits to the ledger under a shield."""

    def __init__(self, ledger: Any, answers: list[Any]) -> None:
        self.ledger = ledger
        self.answers = answers

    async def receive(self, message: Any) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                self.answers.append(await self.ledger.ask(f"{self.path} paid"))


async def _pay_then_cancel(
    cancelled_by: str, trace: MemoryTraceSink, entries: list[Any], answers: list[Any]
) -> None:
    """Three payers start paying; then the supervisor is cancelled ``cancelled_by``."""
    with trio.CancelScope() as outer:
        async with open_supervisor("sup", trace) as sup:
            ledger = sup.spawn("ledger", lambda: Ledger(entries), shielded=True)
            payers = [sup.spawn(f"p{i}", lambda: Payer(ledger, answers)) for i in range(3)]
            for payer in payers:
                await payer.tell("pay")
            await trio.sleep(1)
            if cancelled_by == "outer scope":
                outer.cancel()
            elif cancelled_by == "failed sibling":
                failing = sup.spawn("failing", lambda: Worker(Lifecycle(), [], []))
                await failing.tell("fail")
            else:
                raise Boom("body")
            await trio.sleep_forever()


@pytest.mark.parametrize(
    ("cancelled_by", "raised"),
    [("outer scope", None), ("failed sibling", ChildFailed), ("body error", Boom)],
)
async def test_a_shielded_child_answers_siblings_while_they_are_cancelled(
    autojump_clock: trio.testing.MockClock, cancelled_by: str, raised: type[Exception] | None
) -> None:
    trace = MemoryTraceSink()
    entries: list[Any] = []
    answers: list[Any] = []
    if raised is None:  # the outer scope absorbs its own cancellation
        await _pay_then_cancel(cancelled_by, trace, entries, answers)
    else:
        with pytest.raises(raised):
            await _pay_then_cancel(cancelled_by, trace, entries, answers)

    # Every payer, cancelled, still got its commit answered, and the ledger holds each.
    assert sorted(entries) == ["sup/p0 paid", "sup/p1 paid", "sup/p2 paid"]
    assert sorted(answers) == [1, 2, 3]
    exits = [
        event.path for event in trace.events if event.kind in (TraceKind.EXIT, TraceKind.CANCEL)
    ]
    assert exits[-1] == "sup/ledger"  # the shielded child exits last, never cancelled
    ended = (TraceKind.EXIT, TraceKind.CANCEL)
    ledger_ends = [(e.kind, e.label) for e in trace.events if e.path == "sup/ledger"]
    assert [end for end in ledger_ends if end[0] in ended] == [(TraceKind.EXIT, "ok")]
    assert "sup/ledger" not in task_names()


async def test_a_shielded_child_alone_exits_when_the_body_ends() -> None:
    trace = MemoryTraceSink()
    entries: list[Any] = []
    async with open_supervisor("sup", trace) as sup:
        sup.spawn("ledger", lambda: Ledger(entries), shielded=True)

    assert [(e.kind, e.label) for e in trace.events if e.kind is TraceKind.EXIT] == [
        (TraceKind.EXIT, "ok")
    ]
