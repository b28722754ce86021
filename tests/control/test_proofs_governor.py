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
"""

from __future__ import annotations

from decimal import Decimal

import attrs
import trio
import trio.testing
from hypothesis import given, note, settings
from hypothesis import strategies as st
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
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

    @property
    def path(self) -> str:
        return f"{PARALLEL_PATH}/b{self.branch}/{self.position}:{self.name}"


@attrs.frozen
class Plan:
    branches: int
    calls: tuple[Call, ...]
    limit: Decimal

    def of_branch(self, branch: int) -> list[Call]:
        return [call for call in self.calls if call.branch == branch]


@attrs.define
class Log:
    """What the step functions saw, in order: (event, call name, mock time)."""

    events: list[tuple[str, str, float]] = attrs.field(factory=list)

    def names(self, event: str) -> list[str]:
        return [name for kind, name, _ in self.events if kind == event]


@attrs.frozen
class Outcome:
    result: PipelineResult
    breach: str | None
    trace: list[TraceEvent]


def paid_call(call: Call, log: Log) -> Step:
    estimate = None if call.estimate is None else Usage(call.estimate)

    @step(name=call.name, usage_estimate=estimate, retry=NO_RETRY)
    async def pay(data: object) -> Completion:
        log.events.append(("start", call.name, trio.current_time()))
        try:
            await trio.sleep(call.delay)
        finally:
            log.events.append(("exit", call.name, trio.current_time()))
        log.events.append(("return", call.name, trio.current_time()))
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
                assert isinstance(error.result, PipelineResult)
                result, breach = error.result, error.message
            trace = await store.trace_of(result.run_id)
        return Outcome(result, breach, trace)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@st.composite
def plans(draw: st.DrawFn, *, strict: bool) -> Plan:
    branches = draw(st.integers(1, 8))
    calls: list[Call] = []
    for branch in range(branches):
        for position in range(draw(st.integers(1, 2))):
            cost = draw(COSTS)
            estimate = cost + draw(st.decimals(0, 1, places=2)) if strict else None
            calls.append(Call(branch, position, cost, estimate, draw(DELAYS)))
    ceiling = sum((call.estimate or call.cost for call in calls), Decimal(0))
    limit = draw(st.decimals(min_value=0, max_value=ceiling + 1, places=2))
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


# --- 3. strict mode ---------------------------------------------------------------------------------


@given(plan=plans(strict=True))
@settings(max_examples=200, deadline=None, database=None)
def test_strict_budget_never_commits_above_the_limit(plan: Plan) -> None:
    log = Log()

    outcome = run_with_limit(plan, log)

    note(f"log: {log.events}")
    result, limit = outcome.result, plan.limit
    by_path = {call.path: call for call in plan.calls}
    by_name = {call.name: call for call in plan.calls}
    assert_total_is_exact_sum_of_returned_calls(plan, log, outcome)
    assert result.usage.cost_usd <= limit

    # Replay the governor's ledger: committed plus reserved never goes above the limit.
    committed, reserved = Decimal(0), dict[str, Decimal]()
    granted: list[str] = []
    commits: list[str] = []
    denied: list[tuple[str, str | None]] = []
    for _, event in governor_notes(outcome.trace):
        assert event.peer is not None
        call = by_path[event.peer]
        if event.label == "grant":
            granted.append(call.name)
            assert call.estimate is not None
            reserved[call.path] = call.estimate
        elif event.label == "commit":
            commits.append(call.name)
            del reserved[call.path]
            committed += call.cost
        else:
            assert event.label == "deny", event
            denied.append((call.name, event.detail))
        assert committed + sum(reserved.values(), Decimal(0)) <= limit
    assert committed == result.usage.cost_usd
    # Every call that started had its grant; every call that returned was committed.
    assert set(log.names("start")) <= set(granted)
    assert sorted(commits) == sorted(log.names("return"))
    assert not {name for name, _ in denied} & set(log.names("start"))

    estimates = sum((call.estimate or Decimal(0) for call in plan.calls), Decimal(0))
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


# --- 4. optimistic mode -----------------------------------------------------------------------------


@given(plan=plans(strict=False))
@settings(max_examples=200, deadline=None, database=None)
def test_optimistic_budget_overshoots_only_by_calls_in_flight_at_the_breach(plan: Plan) -> None:
    log = Log()

    outcome = run_with_limit(plan, log)

    note(f"log: {log.events}")
    result, limit, trace = outcome.result, plan.limit, outcome.trace
    by_path = {call.path: call for call in plan.calls}
    by_name = {call.name: call for call in plan.calls}
    assert_total_is_exact_sum_of_returned_calls(plan, log, outcome)
    returned = log.names("return")
    # A call reports its usage when it paid something; a free call has nothing to commit.
    notes = governor_notes(trace)
    commit_at = {event.peer: index for index, event in notes if event.label == "commit"}
    assert sorted(commit_at) == sorted(by_name[name].path for name in returned if by_name[name].cost)
    assert [event.label for _, event in notes if event.label not in ("commit", "breach")] == []

    everything = sum((call.cost for call in plan.calls), Decimal(0))
    if everything <= limit:
        assert outcome.breach is None
        assert result.status is RunStatus.COMPLETED, result.error
        assert result.usage.cost_usd == everything
        return
    assert outcome.breach == f"Cost limit of {usd(limit)} exceeded"
    assert result.status is RunStatus.USAGE_LIMIT
    assert result.error == outcome.breach

    # Positions in the trace: a call starts when its step actor receives Execute
    # (the step runs straight into the call, with no checkpoint in between).
    started_at = {
        event.path: index
        for index, event in enumerate(trace)
        if event.kind is TraceKind.RECEIVE and event.label == "Execute" and event.path in by_path
    }
    assert sorted(started_at) == sorted(by_name[name].path for name in log.names("start"))
    breach_at = next(index for index, event in notes if event.label == "breach")
    breaching_event = trace[breach_at - 1]
    assert breaching_event.kind is TraceKind.NOTE and breaching_event.label == "commit"
    assert breaching_event.peer is not None
    breaching = by_path[breaching_event.peer]
    at_breach = sum(
        (by_path[path].cost for path, index in commit_at.items() if index < breach_at), Decimal(0)
    )
    assert at_breach - breaching.cost <= limit < at_breach

    after = [by_path[path] for path, index in commit_at.items() if index > breach_at]
    for call in after:  # every call committed after the breach was in flight at the breach
        assert started_at[call.path] < breach_at - 1, f"{call} started after the breach"
    assert result.usage.cost_usd == at_breach + sum((call.cost for call in after), Decimal(0))
    in_flight = [
        by_path[path]
        for path, index in started_at.items()
        if index < breach_at and commit_at.get(path, breach_at) >= breach_at - 1
    ]
    assert breaching in in_flight
    assert result.usage.cost_usd - limit <= sum((call.cost for call in in_flight), Decimal(0))
    late_starts = [by_path[path] for path, index in started_at.items() if index > breach_at]
    assert late_starts == [], "no new call starts after the breach"

    # The history holds exactly the branches that finished, the breaching one included.
    parallel: StepResult = result.step_history[-1]
    names = [f"b{branch}" for branch in range(plan.branches)]
    ended = {event.path for event in trace if event.kind is TraceKind.EXIT and event.label == "ok"}
    cancelled = {event.path for event in trace if event.kind is TraceKind.CANCEL}
    finished = [name for name in names if f"{PARALLEL_PATH}/{name}" in ended]
    stopped = [name for name in names if f"{PARALLEL_PATH}/{name}" in cancelled]
    assert sorted(finished + stopped) == names
    assert [branch.name for branch in parallel.step_history] == finished
    assert parallel.metadata.get("cancelled_branches", []) == stopped
    assert f"b{breaching.branch}" in finished
    completed: list[str] = []
    for branch in range(plan.branches):
        # A branch runs its calls until one's commit is answered with the breach.
        ran: list[Call] = []
        for call in plan.of_branch(branch):
            ran.append(call)
            if commit_at.get(call.path, -1) >= breach_at - 1:
                break
        if all(call.name in returned for call in ran):
            completed.append(f"b{branch}")
        if f"b{branch}" not in finished:
            continue
        history = next(entry for entry in parallel.step_history if entry.name == f"b{branch}")
        assert [entry.path for entry in history.step_history] == [call.path for call in ran]
        assert history.usage == Usage(sum((call.cost for call in ran), Decimal(0)))
        last, paid_last = history.step_history[-1], ran[-1]
        assert (last.output, last.usage) == (paid_last.name, Usage(paid_last.cost))
        if commit_at.get(paid_last.path, -1) >= breach_at - 1:
            assert (last.success, last.feedback) == (True, outcome.breach)
    assert finished == completed
