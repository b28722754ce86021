"""Property proofs: the governor keeps a run's usage exact and, with estimates, within its limit.

Each example draws a parallel step of 1-8 branches, each a sequence of one
or two paid calls with a drawn cost and a drawn delay (under trio's
``MockClock``), and a drawn cost limit. The step functions record when
their call started and whether it returned (and so was paid for); the
governor's decisions come from the run's stored trace, whose events are in
the order they happened.

* Strict mode (every call gives an upper-bound estimate): committed usage
  never exceeds the limit, at the end or at any moment in between (the
  trace is replayed: committed plus reserved stays within the limit).
* Optimistic mode (no estimates): a breach is found at commit; the calls
  committed after it had all started before it, so the overshoot is at
  most what was in flight.
* Both: the run's total is the exact ``Decimal`` sum of the costs of the
  calls that returned.
* Cancellation: a call that returned is committed (and journaled in the
  ledger) whatever cancellation arrives before its commit: the whole run
  cancelled at each await between the call's return and its commit, or the
  siblings cancelled by a breach while many commits wait for the governor.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import attrs
import trio
import trio.testing
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore, LedgerEntry, RunRecord
from trioflow.runtime import (
    AgentStep,
    Completion,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Step,
    StepResult,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)

PARALLEL_PATH = "main/0:par"
DELAYS = st.sampled_from([0, 0.5, 1, 1.5, 2, 3])
COSTS = st.decimals(min_value=0, max_value=3, places=2)
NO_RETRY = RetryPolicy(max_attempts=1)


@attrs.frozen
class Call:
    """One paid call: step ``position`` of branch ``b<branch>``."""

    branch: int
    position: int
    cost: Decimal
    estimate: Decimal | None
    delay: float

    @property
    def name(self) -> str:
        return f"c{self.branch}_{self.position}"


@attrs.frozen
class Plan:
    branches: int
    calls: tuple[Call, ...]
    limit: Decimal

    def of_branch(self, branch: int) -> list[Call]:
        return [call for call in self.calls if call.branch == branch]

    def path(self, call: Call) -> str:
        """Where ``call`` runs: a branch of one call is that call, at the branch's own path."""
        if len(self.of_branch(call.branch)) == 1:
            return f"{PARALLEL_PATH}/b{call.branch}"
        return f"{PARALLEL_PATH}/b{call.branch}/{call.position}:{call.name}"

    def calls_in(self, branch: int, entry: StepResult) -> tuple[StepResult, ...]:
        """The results of the calls of ``branch``, whose result is ``entry``."""
        if len(self.of_branch(branch)) == 1:
            assert entry.step_history == ()
            return (entry,)
        return entry.step_history

    def result_name(self, branch: int) -> str:
        """The name of a branch's result: its call's, if it has only one."""
        calls = self.of_branch(branch)
        return calls[0].name if len(calls) == 1 else f"b{branch}"


@attrs.define
class Log:
    """What the step functions saw, in order: (event, call name, mock time)."""

    events: list[tuple[str, str, float]] = attrs.field(factory=list)
    #: Called with a call's name as it returns (the cancellation proofs arm here).
    on_return: Callable[[str], None] = lambda name: None

    def names(self, event: str) -> list[str]:
        return [name for kind, name, _ in self.events if kind == event]


@attrs.frozen
class Outcome:
    result: PipelineResult
    breach: str | None
    trace: list[TraceEvent]


def paid_call(call: Call, log: Log) -> AgentStep:
    estimate = None if call.estimate is None else Usage(call.estimate)

    @step(name=call.name, usage_estimate=estimate, retry=NO_RETRY)
    async def pay(data: object) -> Completion:
        log.events.append(("start", call.name, trio.current_time()))
        try:
            await trio.sleep(call.delay)
        finally:
            log.events.append(("exit", call.name, trio.current_time()))
        log.events.append(("return", call.name, trio.current_time()))
        log.on_return(call.name)
        return Completion(call.name, Usage(call.cost))

    return pay


def build(plan: Plan, log: Log) -> Pipeline:
    branches: dict[str, Pipeline] = {}
    for branch in range(plan.branches):
        steps = [paid_call(call, log) for call in plan.of_branch(branch)]
        branches[f"b{branch}"] = Pipeline.of(*steps, name=f"b{branch}")
    return Pipeline.of(Step.parallel("par", branches))


def run_with_limit(plan: Plan, log: Log) -> Outcome:
    async def main() -> Outcome:
        store = InMemoryStore()
        async with open_runtime(store=store) as rt:
            try:
                result = await rt.run(
                    build(plan, log), "go", limits=UsageLimits(total_cost_usd=plan.limit)
                )
                breach = None
            except UsageLimitExceeded as error:
                assert isinstance(error.result, PipelineResult)  # noqa: PT017 (inside trio.run)
                result, breach = error.result, error.message
            trace = await store.trace_of(result.run_id)
        return Outcome(result, breach, trace)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


#: More branches than the governor's mailbox holds (16): commits queue for room.
CROWDED = st.integers(17, 40)


@st.composite
def plans(draw: st.DrawFn, *, strict: bool) -> Plan:
    branches = draw(st.integers(1, 8) | CROWDED)
    calls: list[Call] = []
    for branch in range(branches):
        for position in range(draw(st.integers(1, 2))):
            cost = draw(COSTS)
            estimate = cost + draw(st.decimals(0, 1, places=2)) if strict else None
            calls.append(Call(branch, position, cost, estimate, draw(DELAYS)))
    ceiling = sum((call.estimate or call.cost for call in calls), Decimal(0))
    # Half below what every call may spend (a breach is possible), half at or above it.
    limit = draw(
        st.one_of(
            st.decimals(min_value=0, max_value=ceiling, places=2),
            st.decimals(min_value=ceiling, max_value=ceiling + 1, places=2),
        )
    )
    return Plan(branches, tuple(calls), limit)


def usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def governor_notes(trace: list[TraceEvent]) -> list[tuple[int, TraceEvent]]:
    return [
        (index, event)
        for index, event in enumerate(trace)
        if event.kind is TraceKind.NOTE and event.path == "governor"
    ]


def assert_total_is_exact_sum_of_returned_calls(plan: Plan, log: Log, outcome: Outcome) -> None:
    by_name = {call.name: call for call in plan.calls}
    returned = log.names("return")
    total = sum((by_name[name].cost for name in returned), Decimal(0))
    assert outcome.result.usage.cost_usd == total
    assert outcome.result.usage == Usage(total)
    parallel: StepResult = outcome.result.step_history[-1]
    assert parallel.path == PARALLEL_PATH
    assert parallel.usage == Usage(total)
    assert sorted(log.names("exit")) == sorted(log.names("start"))  # nothing left running


# --- 3. strict mode -------------------------------------------------------------------------------


@given(plan=plans(strict=True))
@settings(max_examples=200, deadline=None, database=None)
def test_strict_budget_never_commits_above_the_limit(plan: Plan) -> None:
    log = Log()

    outcome = run_with_limit(plan, log)

    note(f"log: {log.events}")
    result, limit = outcome.result, plan.limit
    by_path = {plan.path(call): call for call in plan.calls}
    by_name = {call.name: call for call in plan.calls}
    assert_total_is_exact_sum_of_returned_calls(plan, log, outcome)
    assert result.usage.cost_usd <= limit

    # Replay the governor's ledger: committed plus reserved never goes above the limit.
    committed, reserved = Decimal(0), dict[str, Decimal]()
    granted: list[str] = []
    commits: list[str] = []
    denied: list[tuple[str, str | None]] = []
    for _, decision in governor_notes(outcome.trace):
        assert decision.peer is not None  # narrows Optional; exact checks follow
        call = by_path[decision.peer]
        if decision.label == "grant":
            granted.append(call.name)
            assert call.estimate is not None  # narrows Optional; exact checks follow
            reserved[plan.path(call)] = call.estimate
        elif decision.label == "commit":
            commits.append(call.name)
            del reserved[plan.path(call)]
            committed += call.cost
        elif decision.label == "wait":
            # Told to wait for calls in flight: it would fit with nothing else reserved.
            assert call.estimate is not None  # narrows Optional; exact checks follow
            assert committed + call.estimate <= limit
            assert committed + sum(reserved.values(), Decimal(0)) + call.estimate > limit
        else:
            assert decision.label == "deny", decision
            denied.append((call.name, decision.detail))
        assert committed + sum(reserved.values(), Decimal(0)) <= limit
    assert committed == result.usage.cost_usd
    # Every call that started had its grant; every call that returned was committed.
    assert set(log.names("start")) <= set(granted)
    assert sorted(commits) == sorted(log.names("return"))
    assert not {name for name, _ in denied} & set(log.names("start"))

    estimates = sum((call.estimate or Decimal(0) for call in plan.calls), Decimal(0))
    event("denied" if outcome.breach else "within the limit")
    if outcome.breach is None:
        assert denied == []
        assert result.status is RunStatus.COMPLETED, result.error
        assert sorted(log.names("return")) == sorted(by_name)
        assert result.usage.cost_usd == sum((call.cost for call in plan.calls), Decimal(0))
    else:
        assert estimates > limit  # a denial needs estimates that do not all fit
        assert result.status is RunStatus.USAGE_LIMIT
        assert result.error == outcome.breach
        assert outcome.breach in [detail for _, detail in denied]
        assert outcome.breach.startswith(f"Cost limit of {usd(limit)} would be exceeded: step '")
    if estimates <= limit:
        assert outcome.breach is None


# --- 4. optimistic mode ---------------------------------------------------------------------------


@attrs.frozen
class Breach:
    """An optimistic run that breached, read from its trace (indices into the trace)."""

    plan: Plan
    log: Log
    outcome: Outcome
    #: Where each call started: see :func:`run_optimistic`.
    started_at: dict[str, int]
    committed_at: dict[str, int]
    #: Calls refused by the governor (never started), with the reason it gave.
    denied: dict[str, str | None]
    #: The governor's first breach note; the breaching commit is just before it.
    breach_at: int
    breaching: Call
    message: str

    def committed_before(self, index: int) -> Decimal:
        by_path = {self.plan.path(call): call for call in self.plan.calls}
        return sum(
            (by_path[path].cost for path, at in self.committed_at.items() if at < index),
            Decimal(0),
        )


def run_optimistic(plan: Plan) -> Breach | None:
    """Run ``plan`` and check what holds for every optimistic run; the breach, if any."""
    log = Log()
    outcome = run_with_limit(plan, log)
    note(f"log: {log.events}")
    result, limit, trace = outcome.result, plan.limit, outcome.trace
    by_path = {plan.path(call): call for call in plan.calls}
    by_name = {call.name: call for call in plan.calls}
    assert_total_is_exact_sum_of_returned_calls(plan, log, outcome)
    notes = governor_notes(trace)
    assert {event.label for _, event in notes} <= {"grant", "deny", "commit", "breach"}
    granted_at = {event.peer: index for index, event in notes if event.label == "grant"}
    denied = {event.peer: event.detail for _, event in notes if event.label == "deny"}
    committed_at = {event.peer: index for index, event in notes if event.label == "commit"}
    assert all(isinstance(path, str) for path in [*granted_at, *denied, *committed_at])
    returned = log.names("return")
    entered = {plan.path(by_name[name]) for name in log.names("start")}
    # A call commits what it spent; one that reserved nothing and spent nothing has
    # nothing to commit. A refused call never starts.
    assert sorted(committed_at) == sorted(
        plan.path(by_name[name])
        for name in returned
        if by_name[name].cost or plan.path(by_name[name]) in granted_at
    )
    assert not entered & set(denied)

    everything = sum((call.cost for call in plan.calls), Decimal(0))
    event("within the limit" if everything <= limit else "breached")
    if everything <= limit:
        assert outcome.breach is None
        assert denied == {}
        assert result.status is RunStatus.COMPLETED, result.error
        assert result.usage.cost_usd == everything
        return None
    message = f"Cost limit of {usd(limit)} exceeded"
    # The run reports the breach itself, or a call refused because of it.
    assert outcome.breach in (message, f"{message}: no more calls are granted")
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.error == outcome.breach
    assert set(denied.values()) <= {f"{message}: no more calls are granted"}
    # Where each call started, in trace order. When the runtime asks the governor
    # before every call under a limit, a call starts with its grant; when it does
    # not, with its step actor's Execute, which the step runs straight into the
    # call from (no checkpoint in between).
    if granted_at or denied:
        started_at = dict(granted_at)
    else:
        started_at = {
            event.path: index
            for index, event in enumerate(trace)
            if event.kind is TraceKind.RECEIVE
            and event.label == "Execute"
            and event.path in by_path
        }
    assert entered <= set(started_at)
    breach_at = next(index for index, event in notes if event.label == "breach")
    breaching_commit = trace[breach_at - 1]
    assert (breaching_commit.kind, breaching_commit.label) == (TraceKind.NOTE, "commit")
    assert breaching_commit.peer is not None  # narrows Optional; exact checks follow
    breaching = by_path[breaching_commit.peer]
    breach = Breach(
        plan, log, outcome, started_at, committed_at, denied, breach_at, breaching, message
    )
    # The breach is found at the first commit that goes above the limit.
    at_breach = breach.committed_before(breach_at)
    assert at_breach - breaching.cost <= limit < at_breach
    later = sum(
        (by_path[path].cost for path, at in committed_at.items() if at > breach_at), Decimal(0)
    )
    assert result.usage.cost_usd == at_breach + later
    return breach


@given(plan=plans(strict=False))
@settings(max_examples=150, deadline=None, database=None)
def test_optimistic_totals_are_exact_and_the_breach_is_found_at_its_commit(plan: Plan) -> None:
    breach = run_optimistic(plan)
    if breach is None:
        return
    # The run's result holds the breaching step, paid for and recorded as such.
    parallel: StepResult = breach.outcome.result.step_history[-1]
    breaching = breach.breaching
    at = f"{PARALLEL_PATH}/b{breaching.branch}"
    holder = [entry for entry in parallel.step_history if entry.path == at]
    assert len(holder) == 1
    assert holder[0].name == plan.result_name(breaching.branch)
    last = plan.calls_in(breaching.branch, holder[0])[-1]
    assert last.path == plan.path(breaching)
    assert (last.success, last.feedback) == (True, breach.message)
    assert (last.output, last.usage) == (breaching.name, Usage(breaching.cost))
    assert parallel.metadata["stop_reason"] == f"usage limit: {breach.outcome.breach}"


def optimistic(limit: str, *branches: list[tuple[str, float]]) -> Plan:
    """A plan written out: each branch a list of (cost, delay) calls."""
    calls = tuple(
        Call(branch, position, Decimal(cost), None, delay)
        for branch, calls in enumerate(branches)
        for position, (cost, delay) in enumerate(calls)
    )
    return Plan(len(branches), calls, Decimal(limit))


@given(plan=plans(strict=False))
# b0's call breaches at t=1 while b1's first (free) call ends at t=1: b1's second call
# starts after the breach and is paid for.
@example(plan=optimistic("0.50", [("1.00", 1)], [("0", 1), ("1.00", 0)]))
@example(plan=optimistic("0.50", [("1.00", 1)], [("0", 1), ("1.00", 0.5)]))
@example(plan=optimistic("0", [("0.01", 0)], [("0", 0)], [("0", 0)], [("0.01", 0)]))
@settings(max_examples=150, deadline=None, database=None)
def test_optimistic_overshoot_is_at_most_the_calls_in_flight_at_the_breach(plan: Plan) -> None:
    breach = run_optimistic(plan)
    if breach is None:
        return
    by_path = {plan.path(call): call for call in plan.calls}
    breaching_commit_at = breach.breach_at - 1
    # No new call starts after the breach...
    late = [path for path, at in breach.started_at.items() if at > breach.breach_at]
    assert late == [], f"calls started after the breach: {late}"
    # ...so every call committed after it was already in flight at the breaching commit.
    for path, at in breach.committed_at.items():
        if at > breach.breach_at:
            assert breach.started_at[path] < breaching_commit_at, f"{path} started after the breach"
    in_flight = [
        by_path[path]
        for path, at in breach.started_at.items()
        if at < breaching_commit_at
        and breach.committed_at.get(path, breaching_commit_at) >= breaching_commit_at
    ]
    assert breach.breaching in in_flight
    overshoot = breach.outcome.result.usage.cost_usd - plan.limit
    assert overshoot <= sum((call.cost for call in in_flight), Decimal(0))


@given(plan=plans(strict=False))
# Every branch's only call returns at t=0.5 and is paid for; the first commit breaches.
@example(plan=optimistic("0", *[[("0.01", 0.5)]] * 4))
@example(plan=optimistic("0", *[[("0.01", 0.5)]] * 8))
@example(plan=optimistic("0.02", *[[("0.01", 1)]] * 6))
# More commits at once than the governor's mailbox holds: the breach cancels the
# siblings while their commits wait for room.
@example(plan=optimistic("0.10", *[[("0.01", 0.5)]] * 40))
@settings(max_examples=150, deadline=None, database=None)
def test_optimistic_breach_history_holds_exactly_the_completed_branches(plan: Plan) -> None:
    breach = run_optimistic(plan)
    if breach is None:
        return
    trace, returned = breach.outcome.trace, breach.log.names("return")
    parallel: StepResult = breach.outcome.result.step_history[-1]
    names = [f"b{branch}" for branch in range(plan.branches)]
    ended = {event.path for event in trace if event.kind is TraceKind.EXIT and event.label == "ok"}
    cancelled = {event.path for event in trace if event.kind is TraceKind.CANCEL}
    finished = [name for name in names if f"{PARALLEL_PATH}/{name}" in ended]
    stopped = [name for name in names if f"{PARALLEL_PATH}/{name}" in cancelled]
    assert sorted(finished + stopped) == sorted(names)
    assert [(entry.name, entry.path) for entry in parallel.step_history] == [
        (plan.result_name(int(name[1:])), f"{PARALLEL_PATH}/{name}") for name in finished
    ]
    assert parallel.metadata.get("cancelled_branches", []) == stopped
    completed: list[str] = []
    for branch in range(plan.branches):
        # A branch runs its calls until one is refused, or one's commit is answered
        # with the breach; it completed if every call it ran returned (was paid for).
        ran: list[Call] = []
        for call in plan.of_branch(branch):
            ran.append(call)
            path = plan.path(call)
            if path in breach.denied or breach.committed_at.get(path, -1) >= breach.breach_at - 1:
                break
        paid = [call for call in ran if plan.path(call) not in breach.denied]
        if all(call.name in returned for call in paid):
            completed.append(f"b{branch}")
        if f"b{branch}" not in finished:
            continue
        at = f"{PARALLEL_PATH}/b{branch}"
        history = next(entry for entry in parallel.step_history if entry.path == at)
        calls = plan.calls_in(branch, history)
        assert [entry.path for entry in calls] == [plan.path(call) for call in ran]
        assert history.usage == Usage(sum((call.cost for call in paid), Decimal(0)))
        last, stopped_at = calls[-1], ran[-1]
        if plan.path(stopped_at) in breach.denied:
            assert (last.success, last.attempts, last.usage) == (False, 0, Usage(0))
            assert last.feedback == breach.denied[plan.path(stopped_at)]
        else:
            assert (last.output, last.usage) == (stopped_at.name, Usage(stopped_at.cost))
            if breach.committed_at.get(plan.path(stopped_at), -1) >= breach.breach_at - 1:
                assert (last.success, last.feedback) == (True, breach.message)
    # Every branch that finished had all its paid calls return. The converse does
    # not hold: a branch whose last call returned but whose reply was still on
    # its way up when the siblings were cancelled was running at the cancel, so
    # it is reported as cancelled (its calls still count in the exact totals,
    # which the tests above check).
    assert set(finished) <= set(completed)
    late = sorted(set(completed) - set(finished))
    assert all(name in stopped for name in late)
    paid_total = sum(
        (
            call.cost
            for call in plan.calls
            if plan.path(call) not in breach.denied and call.name in returned
        ),
        Decimal(0),
    )
    assert breach.outcome.result.usage.cost_usd == paid_total


# --- 5. cancellation between a call's return and its commit --------------------------------------

#: The proof below cancels at each of the first ``CANCEL_POINTS`` awaits after a call
#: returns; test_the_cancellation_points_cover_the_step_after_its_call checks that the
#: step's task has ended by then, so every await between return and commit is covered.
CANCEL_POINTS = 24


class CancelAfterReturn(trio.abc.Instrument):
    """Cancels ``scope`` at the ``steps``-th await of ``victim``'s task after its call returned.

    ``steps=0`` cancels before the first await (as the call returns). A trio
    instrument sees every time a task suspends (``after_task_step``), so the
    cancellation is pending exactly at that await, whatever it is.
    """

    def __init__(self, victim: str, steps: int, scope: trio.CancelScope) -> None:
        self.victim = victim
        self.steps = steps
        self.scope = scope
        self.task: trio.lowlevel.Task | None = None
        self.seen = 0
        #: How many times the victim's task suspended after its call returned.
        self.suspended = 0

    def returned(self, name: str) -> None:
        if name != self.victim:
            return
        self.task = trio.lowlevel.current_task()
        if self.steps == 0:
            self.scope.cancel(f"proof: as {name} returned")

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.task:
            return
        self.suspended += 1
        if self.suspended == self.steps:
            self.scope.cancel(f"proof: at await {self.steps} after {self.victim} returned")


@attrs.frozen
class Cancelled:
    """A run cancelled from outside, as the store holds it."""

    record: RunRecord
    ledger: list[LedgerEntry]
    #: Whether the cancellation reached the run (it may have ended first).
    cut_short: bool


def run_cancelled(plan: Plan, log: Log, victim: str, steps: int) -> tuple[Cancelled, int]:
    """Run ``plan`` in a scope cancelled at await ``steps`` after ``victim`` returns."""

    async def main() -> tuple[Cancelled, int]:
        store = InMemoryStore()
        canceller = CancelAfterReturn(victim, steps, trio.CancelScope())
        log.on_return = canceller.returned
        trio.lowlevel.add_instrument(canceller)
        cut_short = True
        async with open_runtime(store=store) as rt:
            with canceller.scope:
                try:
                    await rt.run(
                        build(plan, log), "go", limits=UsageLimits(total_cost_usd=plan.limit)
                    )
                except UsageLimitExceeded as breach:  # a plan over its limit
                    assert isinstance(breach.result, PipelineResult)  # noqa: PT017 (in trio.run)
                    assert breach.result.status is RunStatus.USAGE_LIMIT  # noqa: PT017
                cut_short = False
        trio.lowlevel.remove_instrument(canceller)
        [record] = await store.list_runs()
        ledger = await store.ledger_of(record.run_id)
        return Cancelled(record, ledger, cut_short), canceller.suspended

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@given(
    plan=st.booleans().flatmap(lambda strict: plans(strict=strict)),
    victim=st.integers(0, 79),
    # Mostly the first few awaits, where an uncrowded commit is.
    steps=st.integers(0, 3) | st.integers(0, CANCEL_POINTS),
)
# One call, cancelled before its first await and at each of the next ones.
@example(plan=optimistic("1.00", [("0.01", 0)]), victim=0, steps=0)
@example(plan=optimistic("1.00", [("0.01", 0)]), victim=0, steps=1)
@example(plan=optimistic("1.00", [("0.01", 0)]), victim=0, steps=2)
@example(plan=optimistic("0", *[[("0.01", 0.5)]] * 20), victim=7, steps=1)
@settings(max_examples=300, deadline=None, database=None)
def test_a_returned_call_is_committed_whatever_cancels_the_run(
    plan: Plan, victim: int, steps: int
) -> None:
    log = Log()
    name = plan.calls[victim % len(plan.calls)].name

    ended, _ = run_cancelled(plan, log, name, steps)

    note(f"log: {log.events}")
    by_name = {call.name: call for call in plan.calls}
    returned = [by_name[returned] for returned in log.names("return")]
    event("cancelled" if ended.cut_short else "ended before the cancellation")
    # Every call that returned has its ledger entry, with what it cost; nothing else has one.
    assert sorted((entry.path, Decimal(entry.cost_usd)) for entry in ended.ledger) == sorted(
        (plan.path(call), call.cost) for call in returned
    )
    total = sum((call.cost for call in returned), Decimal(0))
    assert Decimal(ended.record.total_cost_usd) == total
    assert sorted(log.names("exit")) == sorted(log.names("start"))  # nothing left running
    if ended.cut_short:
        assert ended.record.status == RunStatus.CANCELLED.value
    else:
        assert ended.record.status in (RunStatus.COMPLETED.value, RunStatus.USAGE_LIMIT.value)
    if all(call.estimate is not None for call in plan.calls):  # strict: still no overshoot
        assert total <= plan.limit


def test_the_cancellation_points_cover_the_step_after_its_call() -> None:
    # Uncancelled (the cancellation is never reached), a call's task suspends this
    # many times from its return until the step actor has exited; the proof above
    # cancels at each of these points.
    plan = optimistic("1.00", [("0.01", 0)])
    ended, suspended = run_cancelled(plan, Log(), "c0_0", CANCEL_POINTS + 1_000)

    assert ended.cut_short is False
    assert ended.record.status == RunStatus.COMPLETED.value
    assert suspended < CANCEL_POINTS, suspended
