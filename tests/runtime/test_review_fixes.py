"""Failures around the steps: the journal failing, cancellations, watchers, branch keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.testing
from trioflow.actors import TraceEvent
from trioflow.persistence import InMemoryStore, LedgerEntry, StoreError
from trioflow.runtime import (
    AgentOutputInvalid,
    AgentStep,
    Completion,
    ConfigurationError,
    RunStatus,
    Runtime,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime.agents import StubAgent


class LedgerFailsOnce(InMemoryStore):
    """A store whose first ledger write fails, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("disk full")
        await super().record_usage(entry, epoch=epoch)


async def test_a_journal_failure_ends_the_run_as_interrupted_and_is_never_retried() -> None:
    store = LedgerFailsOnce()
    model = StubAgent([Completion("a", Usage("0.25")), Completion("b", Usage("0.25"))])
    async with open_runtime(store=store) as rt:
        with pytest.raises(StoreError, match=r"^disk full$"):
            await rt.run(AgentStep("ask", model), "q")
        [record] = await store.list_runs()
        assert model.calls == 1  # not retried as if the model had failed
        assert record.status == RunStatus.INTERRUPTED.value

        resumed = await rt.resume(record.run_id)  # the disk has room again

    assert resumed.status is RunStatus.COMPLETED
    assert resumed.output == "b"
    assert model.calls == 2


async def test_a_cancelled_run_keeps_what_it_spent(autojump_clock: Any) -> None:
    @step
    async def paid(text: str) -> Completion:
        return Completion(text, Usage("0.25", 3, 4))

    @step
    async def forever(text: str) -> str:
        await trio.sleep(100)
        return text

    store = InMemoryStore()
    async with open_runtime(store=store) as rt:
        with trio.move_on_after(10):
            await rt.run(paid >> forever, "x")

    [record] = await store.list_runs()
    assert record.status == RunStatus.CANCELLED.value
    assert (record.total_cost_usd, record.input_tokens, record.output_tokens) == ("0.25", 3, 4)


async def test_a_cancelled_branch_gives_its_reservation_back(
    rt: Runtime, autojump_clock: Any
) -> None:
    @step
    async def slow(text: str) -> Completion:
        await trio.sleep(10)
        return Completion(text, Usage("0.60"))

    @step
    async def boom(text: str) -> str:
        await trio.sleep(1)
        raise RuntimeError("boom")

    @step
    async def wait_a_while(text: str) -> str:
        await trio.sleep(5)  # until the inner parallel has cancelled `slow`
        return text

    @step
    async def later(text: str) -> Completion:
        return Completion("later", Usage("0.60"))

    estimate = Usage("0.60")
    inner = Step.parallel(
        "inner",
        {
            "slow": Step.from_callable(slow.agent.fn, name="slow", usage_estimate=estimate),
            "boom": boom,
        },
    )
    outer = Step.parallel(
        "outer",
        {
            "x": inner,
            "y": wait_a_while
            >> Step.from_callable(later.agent.fn, name="later", usage_estimate=estimate),
        },
        on_branch_failure="ignore",
    )
    with trio.fail_after(60):  # a leaked reservation would make `later` wait for ever
        result = await rt.run(outer, "x", limits=UsageLimits(total_cost_usd="1.00"))

    assert result.status is RunStatus.COMPLETED
    assert result.output == {"y": "later"}
    assert result.usage == Usage(Decimal("0.60"))


async def test_a_rejected_reply_that_breaches_is_not_a_success(rt: Runtime) -> None:
    rejected = StubAgent([AgentOutputInvalid("not JSON", usage=Usage("2.00"))])

    with pytest.raises(UsageLimitExceeded) as caught:
        await rt.run(AgentStep("ask", rejected), "q", limits=UsageLimits(total_cost_usd=1))

    assert caught.value.result is not None  # narrows Optional; exact checks follow
    asked = caught.value.result.step("ask")
    assert (asked.success, asked.output, asked.attempts) == (False, None, 1)
    assert asked.usage == Usage(Decimal("2.00"))


async def test_a_watcher_that_raises_is_dropped_and_the_run_goes_on(rt: Runtime) -> None:
    class Broken:
        def record(self, event: TraceEvent) -> None:
            raise ValueError("display crashed")

    @step
    async def shout(text: str) -> str:
        return text.upper()

    with pytest.warns(UserWarning, match="trace watcher dropped after it raised ValueError"):
        result = await rt.run(shout, "hi", watch=Broken())

    assert result.output == "HI"


def test_conditional_branch_keys_may_not_share_a_path() -> None:
    with pytest.raises(ConfigurationError, match="branch keys \\[1, '1'\\] share a path"):
        Step.branch_on(
            "pick", lambda data, context: data, {1: StubAgentStep(), "1": StubAgentStep()}
        )
    with pytest.raises(ConfigurationError, match="a key named 'default' would share its path"):
        Step.branch_on(
            "pick",
            lambda data, context: data,
            {"default": StubAgentStep()},
            default=StubAgentStep(),
        )


def StubAgentStep() -> AgentStep:
    return AgentStep("s", StubAgent(["x"]))
