"""Property tests over random schedules, run on trio's MockClock.

Each example draws senders, gaps between sends and handler delays, then
runs one ``trio.run`` with ``MockClock(autojump_threshold=0)``: virtual time
jumps as soon as every task sleeps, so a schedule of many seconds runs in
microseconds and every timestamp is exact. Delays are whole seconds; the
only fractional delays are the failing handlers' (k/64 s, exact in binary
floating point), so no failure ever ties with another event and the
expected outcome can be computed exactly.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trioflow.actors import (
    Actor,
    ChildFailed,
    MemoryTraceSink,
    Restart,
    TraceKind,
    open_supervisor,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def run_mocked(main: Any) -> Any:
    """Run ``main`` on a MockClock; a deadlock fails (virtual time runs out)."""

    async def guarded() -> Any:
        with trio.fail_after(1e6):
            return await main()

    return trio.run(guarded, clock=trio.testing.MockClock(autojump_threshold=0))


def task_names() -> list[str]:
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


class Boom(Exception):
    pass


# --- ordering and exactly-once delivery ------------------------------------------


@attrs.frozen
class Msg:
    sender: str
    seq: int
    delay: float


@attrs.frozen
class Send:
    target: int
    gap: float
    delay: float
    ask: bool


@attrs.frozen
class DeliverySchedule:
    mailbox_size: int
    receivers: int
    senders: list[list[Send]]


@st.composite
def delivery_schedules(draw: st.DrawFn) -> DeliverySchedule:
    receivers = draw(st.integers(1, 3))
    send = st.builds(
        Send,
        target=st.integers(0, receivers - 1),
        gap=st.sampled_from([0.0, 0.0, 0.25, 1.0, 2.5]),
        delay=st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]),
        ask=st.booleans(),
    )
    senders = draw(st.lists(st.lists(send, max_size=12), min_size=1, max_size=4))
    return DeliverySchedule(draw(st.integers(0, 4)), receivers, senders)


class Logger(Actor[Msg]):
    def __init__(self, log: list[tuple[str, str, int]]) -> None:
        self.log = log

    async def receive(self, message: Msg) -> tuple[str, str, int]:
        await trio.sleep(message.delay)
        entry = (self.path, message.sender, message.seq)
        self.log.append(entry)
        return entry


@PROPERTY_SETTINGS
@given(delivery_schedules())
def test_random_schedules_keep_per_sender_order_and_deliver_once(
    schedule: DeliverySchedule,
) -> None:
    log: list[tuple[str, str, int]] = []
    replies: dict[tuple[str, int], Any] = {}
    sink = MemoryTraceSink()

    async def sender(refs: list[Any], name: str, sends: list[Send]) -> None:
        for seq, send in enumerate(sends):
            await trio.sleep(send.gap)
            message = Msg(name, seq, send.delay)
            if send.ask:
                replies[(name, seq)] = await refs[send.target].ask(message, sender=name)
            else:
                await refs[send.target].tell(message, sender=name)

    async def main() -> list[str]:
        async with open_supervisor("sup", sink) as sup:
            refs = [
                sup.spawn(f"r{i}", lambda: Logger(log), mailbox_size=schedule.mailbox_size)
                for i in range(schedule.receivers)
            ]
            async with trio.open_nursery() as nursery:
                for index, sends in enumerate(schedule.senders):
                    nursery.start_soon(sender, refs, f"s{index}", sends)
        return task_names()

    names_after = run_mocked(main)

    expected = [
        (f"sup/r{send.target}", f"s{index}", seq)
        for index, sends in enumerate(schedule.senders)
        for seq, send in enumerate(sends)
    ]
    # Every message received exactly once...
    assert sorted(log) == sorted(expected)
    # ...and, per sender and receiver, in the order it was sent.
    for index in range(len(schedule.senders)):
        for receiver in range(schedule.receivers):
            path, name = f"sup/r{receiver}", f"s{index}"
            assert [s for p, n, s in log if p == path and n == name] == [
                s for p, n, s in expected if p == path and n == name
            ]
    assert replies == {
        (f"s{index}", seq): (f"sup/r{send.target}", f"s{index}", seq)
        for index, sends in enumerate(schedule.senders)
        for seq, send in enumerate(sends)
        if send.ask
    }
    total = len(expected)
    assert len(sink.of_kind(TraceKind.SEND)) == total
    assert len(sink.of_kind(TraceKind.RECEIVE)) == total
    assert sorted((e.path, e.label) for e in sink.of_kind(TraceKind.EXIT)) == [
        (f"sup/r{i}", "ok") for i in range(schedule.receivers)
    ]
    assert sink.of_kind(TraceKind.CANCEL) == []
    times = [e.time for e in sink.events]
    assert times == sorted(times)
    assert [n for n in names_after if n.startswith("sup/")] == []


# --- escalation ------------------------------------------------------------------


@attrs.frozen
class AgentStep:
    gap: int
    delay: int


@attrs.frozen
class ChildPlan:
    steps: list[AgentStep]
    poison: int | None  # index of the step that fails, if any


@attrs.frozen
class Work:
    seq: int
    delay: float
    poison: bool


@st.composite
def escalation_plans(draw: st.DrawFn) -> list[ChildPlan]:
    step = st.builds(AgentStep, gap=st.integers(0, 3), delay=st.integers(0, 3))
    plans = []
    for _ in range(draw(st.integers(2, 5))):
        steps = draw(st.lists(step, max_size=6))
        poison = draw(st.none() | st.integers(0, len(steps) - 1)) if steps else None
        plans.append(ChildPlan(steps, poison))
    # At least one child fails.
    if all(plan.poison is None for plan in plans):
        index = draw(st.integers(0, len(plans) - 1))
        steps = plans[index].steps or [draw(step)]
        plans[index] = ChildPlan(steps, draw(st.integers(0, len(steps) - 1)))
    return plans


def poison_extra(child: int) -> float:
    """A per-child fraction of a second so that no two failures coincide."""
    return (child + 1) / 64


@attrs.frozen
class Timeline:
    send_times: list[int]
    end_times: list[float]  # when each message's handler finishes (or fails)


def timeline(child: int, plan: ChildPlan) -> Timeline:
    """When each message is sent and handled: the mailbox never blocks, the
    actor handles one message at a time, as soon as it is free."""
    send_times: list[int] = []
    end_times: list[float] = []
    now, free = 0, 0.0
    for index, step in enumerate(plan.steps):
        now += step.gap
        start = max(float(now), free)
        free = start + step.delay + (poison_extra(child) if index == plan.poison else 0.0)
        send_times.append(now)
        end_times.append(free)
    return Timeline(send_times, end_times)


class Scripted(Actor[Work]):
    def __init__(self, log: list[tuple[str, int]], life: dict[str, int]) -> None:
        self.log = log
        self.life = life

    async def receive(self, message: Work) -> None:
        self.life["active"] += 1
        try:
            await trio.sleep(message.delay)
            if message.poison:
                raise Boom(f"{self.path} failed on #{message.seq}")
            self.log.append((self.path, message.seq))
        finally:
            self.life["active"] -= 1


@PROPERTY_SETTINGS
@given(escalation_plans())
def test_escalation_fails_the_first_failing_child_and_leaves_no_children(
    plans: list[ChildPlan],
) -> None:
    log: list[tuple[str, int]] = []
    life = {"active": 0}
    sink = MemoryTraceSink()
    paths = [f"sup/c{i}" for i in range(len(plans))]
    baseline: list[Any] = []

    async def feed(ref: Any, child: int, plan: ChildPlan) -> None:
        for seq, step in enumerate(plan.steps):
            await trio.sleep(step.gap)
            delay = step.delay + (poison_extra(child) if seq == plan.poison else 0.0)
            await ref.tell(Work(seq, delay, seq == plan.poison))

    async def main() -> tuple[ChildFailed, float, list[str], int]:
        baseline.extend(trio.lowlevel.current_task().child_nurseries)

        async def scenario() -> None:
            async with open_supervisor("sup", sink) as sup:
                refs = [
                    sup.spawn(f"c{i}", lambda: Scripted(log, life), mailbox_size=len(p.steps) + 1)
                    for i, p in enumerate(plans)
                ]
                async with trio.open_nursery() as nursery:
                    for i, plan in enumerate(plans):
                        nursery.start_soon(feed, refs[i], i, plan)

        with pytest.raises(ChildFailed) as excinfo:
            await scenario()
        nurseries = len(trio.lowlevel.current_task().child_nurseries)
        return excinfo.value, trio.current_time(), task_names(), nurseries

    error, failed_at, names_after, nurseries_after = run_mocked(main)

    # The model: who fails first, and when.
    lines = [timeline(i, plan) for i, plan in enumerate(plans)]
    failures = {
        i: lines[i].end_times[plan.poison]
        for i, plan in enumerate(plans)
        if plan.poison is not None
    }
    first = min(failures, key=failures.__getitem__)
    t_fail = failures[first]
    last_send = max((line.send_times[-1] for line in lines if line.send_times), default=0)
    body_done = last_send if last_send < t_fail else None

    assert type(error) is ChildFailed
    assert error.path == paths[first]
    assert isinstance(error.cause, Boom)
    assert str(error.cause) == f"{paths[first]} failed on #{plans[first].poison}"
    assert error.__cause__ is error.cause
    assert error.restarts == 0
    assert failed_at == t_fail

    # Exactly the messages whose handlers finished before the failure ran.
    assert sorted(log) == sorted(
        (paths[i], seq)
        for i, plan in enumerate(plans)
        for seq, end in enumerate(lines[i].end_times)
        if end < t_fail and (plan.poison is None or seq < plan.poison)
    )

    # Each child ended once: the first failed, those drained before it
    # exited ok, every other one was cancelled with a reason naming it.
    reason = f"{paths[first]} failed: Boom: {error.cause}"
    expected_ends: set[tuple[TraceKind, str, float, str, str | None]] = set()
    for i, plan in enumerate(plans):
        if i == first:
            expected_ends.add((TraceKind.EXIT, paths[i], t_fail, "failed", f"Boom: {error.cause}"))
            continue
        drained = max(lines[i].end_times, default=0.0)
        if plan.poison is None and body_done is not None and max(drained, body_done) < t_fail:
            expected_ends.add((TraceKind.EXIT, paths[i], max(drained, body_done), "ok", None))
        else:
            expected_ends.add((TraceKind.CANCEL, paths[i], t_fail, "", reason))
    ends = [
        (e.kind, e.path, e.time, e.label, e.detail)
        for e in sink.events
        if e.kind in (TraceKind.EXIT, TraceKind.CANCEL)
    ]
    assert len(ends) == len(plans)
    assert set(ends) == expected_ends

    # Zero running children.
    assert life["active"] == 0
    assert [n for n in names_after if n.startswith("sup/")] == []
    assert nurseries_after == len(baseline)
    times = [e.time for e in sink.events]
    assert times == sorted(times)


# --- restarts --------------------------------------------------------------------


@attrs.frozen
class Job:
    seq: int
    delay: int
    fail: bool


@attrs.frozen
class RestartPlan:
    max_restarts: int
    within_s: float
    jobs: list[tuple[int, Job]]  # (gap before sending, job)


@st.composite
def restart_plans(draw: st.DrawFn) -> RestartPlan:
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, 4), st.integers(0, 2), st.booleans()),
            min_size=1,
            max_size=15,
        )
    )
    jobs = [(gap, Job(seq, delay, fail)) for seq, (gap, delay, fail) in enumerate(raw)]
    # A half-second window: no failure is ever exactly ``within_s`` after a restart.
    return RestartPlan(draw(st.integers(0, 3)), draw(st.integers(0, 6)) + 0.5, jobs)


@attrs.frozen
class RestartOutcome:
    handled: list[tuple[int, int]]  # (incarnation, seq)
    restart_times: list[int]
    failure_times: list[int]
    escalation: tuple[int, int, int] | None  # (time, seq, restarts counted)
    end_time: int


def expected_restarts(plan: RestartPlan) -> RestartOutcome:
    """Erlang's rule: a failure is restarted unless ``max_restarts`` restarts
    already happened within the last ``within_s`` seconds."""
    handled: list[tuple[int, int]] = []
    restarts: list[int] = []
    failures: list[int] = []
    now = free = 0
    for gap, job in plan.jobs:
        now += gap
        free = max(now, free) + job.delay
        if not job.fail:
            handled.append((len(restarts), job.seq))
            continue
        failures.append(free)
        recent = [t for t in restarts if free - t < plan.within_s]
        if len(recent) >= plan.max_restarts:
            return RestartOutcome(handled, restarts, failures, (free, job.seq, len(recent)), free)
        restarts.append(free)
    return RestartOutcome(handled, restarts, failures, None, max(now, free))


class Flaky(Actor[Job]):
    def __init__(self, incarnation: int, log: list[tuple[int, int]]) -> None:
        self.incarnation = incarnation
        self.log = log

    async def receive(self, message: Job) -> None:
        await trio.sleep(message.delay)
        if message.fail:
            raise Boom(f"job {message.seq}")
        self.log.append((self.incarnation, message.seq))


@PROPERTY_SETTINGS
@given(restart_plans())
def test_restart_counts_are_exact(plan: RestartPlan) -> None:
    log: list[tuple[int, int]] = []
    made: list[int] = []
    sink = MemoryTraceSink()
    strategy = Restart(max_restarts=plan.max_restarts, within_s=plan.within_s)

    def make() -> Flaky:
        made.append(len(made))
        return Flaky(made[-1], log)

    async def body() -> None:
        async with open_supervisor("sup", sink, strategy=strategy) as sup:
            ref = sup.spawn("flaky", make, mailbox_size=len(plan.jobs))
            for gap, job in plan.jobs:
                await trio.sleep(gap)
                await ref.tell(job)

    async def main() -> tuple[ChildFailed | None, float, list[str]]:
        error: ChildFailed | None = None
        expect = expected_restarts(plan)
        if expect.escalation is None:
            await body()
        else:
            with pytest.raises(ChildFailed) as excinfo:
                await body()
            error = excinfo.value
        return error, trio.current_time(), task_names()

    error, finished_at, names_after = run_mocked(main)
    expect = expected_restarts(plan)

    assert log == expect.handled
    assert made == list(range(len(expect.restart_times) + 1))
    assert [e.time for e in sink.of_kind(TraceKind.RESTART)] == expect.restart_times
    exits = [(e.time, e.label) for e in sink.of_kind(TraceKind.EXIT)]
    if expect.escalation is None:
        assert error is None
        assert exits == [(t, "failed") for t in expect.failure_times] + [(expect.end_time, "ok")]
    else:
        time, seq, restarts = expect.escalation
        assert error is not None  # narrows Optional; exact checks follow
        assert error.path == "sup/flaky"
        assert error.restarts == restarts
        assert restarts == plan.max_restarts
        assert isinstance(error.cause, Boom)
        assert str(error.cause) == f"job {seq}"
        assert exits == [(t, "failed") for t in expect.failure_times]
        assert exits[-1] == (time, "failed")
    assert finished_at == expect.end_time
    assert sink.of_kind(TraceKind.CANCEL) == []
    assert [n for n in names_after if n.startswith("sup/")] == []
