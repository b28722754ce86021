"""Fallbacks: run after the last attempt, keep the original error, sum everything that ran."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from trioflow.runtime import (
    AgentStep,
    Completion,
    ConfigurationError,
    FallbackLoopError,
    PipelineResult,
    PluginOutcome,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import MAX_FALLBACK_DEPTH


def reject_drafts(output: Any, context: Any) -> ValidationResult:
    if output == "draft":
        return ValidationResult.fail("drafts are not accepted")
    return ValidationResult.ok()


async def test_fallback_runs_after_primary_exhausts_its_attempts(rt: Runtime) -> None:
    primary_agent = StubAgent(
        [Completion("draft", Usage("0.10", 100, 20)), Completion("draft", Usage("0.10", 100, 20))]
    )
    fallback_agent = StubAgent([Completion("solid answer", Usage("0.05", 50, 10))])
    fallback = AgentStep("backup", fallback_agent)
    primary = AgentStep(
        "primary",
        primary_agent,
        retry=RetryPolicy(max_attempts=2),
        validators=[reject_drafts],
        fallback=fallback,
    )

    result = await rt.run(primary, "question")

    assert result.status is RunStatus.COMPLETED
    assert result.output == "solid answer"
    step = result.step("primary")
    assert step.success is True
    assert step.path == "main/0:primary"
    assert step.attempts == 3
    assert primary_agent.calls == 2
    assert fallback_agent.calls == 1
    assert fallback_agent.inputs == ["question"]
    assert step.usage == Usage(Decimal("0.25"), 250, 50)
    assert step.cost_usd == Decimal("0.25")
    assert step.total_tokens == 300
    assert step.metadata["fallback_triggered"] is True
    assert step.metadata["fallback_step"] == "backup"
    assert step.metadata["original_error"] == (
        "step 'main/0:primary' failed (validation): "
        "Validation failed: reject_drafts: drafts are not accepted"
    )
    # the run's totals (the governor's ledger) agree with the step's
    assert result.usage == Usage(Decimal("0.25"), 250, 50)
    # The step's own two attempts, then its fallback: nothing is nested in itself.
    assert [inner.path for inner in step.step_history] == [
        "main/0:primary#1-2",
        "main/0:primary/fallback:backup",
    ]
    assert [inner.attempts for inner in step.step_history] == [2, 1]
    assert [inner.success for inner in step.step_history] == [False, True]


async def test_fallback_after_agent_errors_keeps_the_last_primary_error(rt: Runtime) -> None:
    primary_agent = StubAgent([RuntimeError("rate limited"), RuntimeError("rate limited again")])
    fallback_agent = StubAgent([Completion("cheap answer", Usage("0.01", 5, 5))])
    primary = AgentStep("primary", primary_agent, fallback=AgentStep("cheap", fallback_agent))

    result = await rt.run(primary, "q")

    step = result.step("primary")
    assert result.output == "cheap answer"
    assert step.attempts == 3
    assert step.usage == Usage(Decimal("0.01"), 5, 5)
    assert step.metadata["fallback_triggered"] is True
    assert "RuntimeError: rate limited again" in step.metadata["original_error"]
    assert step.metadata["original_error"] == (
        "step 'main/0:primary' failed (agent_error): RuntimeError: rate limited again"
    )


async def test_fallback_retries_count_too(rt: Runtime) -> None:
    primary_agent = StubAgent([RuntimeError("down"), RuntimeError("down"), RuntimeError("down")])
    fallback_agent = StubAgent(
        [
            Completion("draft", Usage("0.02", 2, 2)),
            Completion("draft", Usage("0.02", 2, 2)),
            Completion("final", Usage("0.02", 2, 2)),
        ]
    )
    fallback = AgentStep(
        "backup", fallback_agent, retry=RetryPolicy(max_attempts=3), validators=[reject_drafts]
    )
    primary = AgentStep(
        "primary", primary_agent, retry=RetryPolicy(max_attempts=3), fallback=fallback
    )

    result = await rt.run(primary, "q")

    step = result.step("primary")
    assert result.output == "final"
    assert step.attempts == 6
    assert primary_agent.calls == 3
    assert fallback_agent.calls == 3
    assert step.usage == Usage(Decimal("0.06"), 6, 6)
    assert result.total_cost_usd == Decimal("0.06")


async def test_fallback_chain_runs_in_order(rt: Runtime) -> None:
    a = StubAgent([RuntimeError("a broke")])
    b = StubAgent([RuntimeError("b broke")])
    c = StubAgent([Completion("from c", Usage("0.30", 1, 1))])
    once = RetryPolicy(max_attempts=1)
    chain = AgentStep(
        "a",
        a,
        retry=once,
        fallback=AgentStep("b", b, retry=once, fallback=AgentStep("c", c, retry=once)),
    )

    result = await rt.run(chain, "q")

    step = result.step("a")
    assert result.output == "from c"
    assert step.attempts == 3
    assert (a.calls, b.calls, c.calls) == (1, 1, 1)
    assert step.usage == Usage(Decimal("0.30"), 1, 1)
    assert step.metadata["fallback_step"] == "b"
    assert step.metadata["original_error"] == (
        "step 'main/0:a' failed (agent_error): RuntimeError: a broke"
    )
    via_b = step.step_history[1]
    assert via_b.path == "main/0:a/fallback:b"
    assert [inner.path for inner in step.step_history] == ["main/0:a#1", "main/0:a/fallback:b"]
    assert [inner.path for inner in via_b.step_history] == [
        "main/0:a/fallback:b#1",
        "main/0:a/fallback:b/fallback:c",
    ]


async def test_failing_fallback_fails_the_step_and_keeps_both_errors(rt: Runtime) -> None:
    primary_agent = StubAgent([RuntimeError("primary down")])
    fallback_agent = StubAgent([RuntimeError("backup down")])
    once = RetryPolicy(max_attempts=1)
    primary = AgentStep(
        "primary",
        primary_agent,
        retry=once,
        fallback=AgentStep("backup", fallback_agent, retry=once),
    )

    result = await rt.run(primary, "q")

    assert result.status is RunStatus.FAILED
    step = result.step("primary")
    assert step.success is False
    assert step.attempts == 2
    assert step.metadata["fallback_triggered"] is True
    assert step.metadata["original_error"] == (
        "step 'main/0:primary' failed (agent_error): RuntimeError: primary down"
    )
    assert step.feedback == (
        "step 'main/0:primary/fallback:backup' failed (agent_error): RuntimeError: backup down"
    )


async def test_no_fallback_after_a_control_signal(rt: Runtime) -> None:
    primary_agent = StubAgent([])  # exhausted at once: a configuration error
    fallback_agent = StubAgent(["unused"])
    primary = AgentStep("primary", primary_agent, fallback=AgentStep("backup", fallback_agent))

    result = await rt.run(primary, "q")

    assert result.status is RunStatus.FAILED
    assert fallback_agent.calls == 0
    assert result.step("primary").attempts == 1
    assert "fallback_triggered" not in result.step("primary").metadata


async def test_no_fallback_after_a_redirect_loop(rt: Runtime) -> None:
    a = StubAgent(["from a"])
    b = StubAgent(["from b"])

    class PingPong:
        priority = 0

        async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
            return PluginOutcome(redirect_to=b if output == "from a" else a)

    fallback_agent = StubAgent(["unused"])
    primary = AgentStep(
        "primary", a, plugins=[PingPong()], fallback=AgentStep("backup", fallback_agent)
    )

    result = await rt.run(primary, "q")

    assert result.status is RunStatus.FAILED
    assert result.step("primary").metadata == {"failure": "redirect_loop"}
    assert fallback_agent.calls == 0


async def test_spending_by_the_failed_primary_counts_toward_the_run_limit(rt: Runtime) -> None:
    primary_agent = StubAgent(
        [Completion("draft", Usage("0.60")), Completion("draft", Usage("0.60"))]
    )
    fallback_agent = StubAgent([Completion("answer", Usage("0.10"))])
    primary = AgentStep(
        "primary",
        primary_agent,
        validators=[reject_drafts],
        fallback=AgentStep("fb", fallback_agent),
    )

    with pytest.raises(UsageLimitExceeded, match=r"^Cost limit of \$1\.00 exceeded$") as caught:
        await rt.run(primary, "q", limits=UsageLimits(total_cost_usd=1))

    assert primary_agent.calls == 2
    assert fallback_agent.calls == 0
    result = caught.value.result
    assert isinstance(result, PipelineResult)
    assert result.usage == Usage(Decimal("1.20"))
    assert result.step("primary").attempts == 2


# --- construction-time checks --------------------------------------------------------------------


def test_fallback_loop_is_detected_at_construction() -> None:
    agent = StubAgent([])
    b = AgentStep("B", agent, fallback=AgentStep("A", agent))

    with pytest.raises(FallbackLoopError, match="Fallback loop detected: A -> B -> A"):
        AgentStep("A", agent, fallback=b)


def test_fallback_to_a_step_of_the_same_name_is_a_loop() -> None:
    agent = StubAgent([])
    with pytest.raises(FallbackLoopError, match="Fallback loop detected: A -> A"):
        AgentStep("A", agent, fallback=AgentStep("A", agent))


def test_fallback_loop_is_a_configuration_error() -> None:
    assert issubclass(FallbackLoopError, ConfigurationError)


def _chain(length: int) -> AgentStep | None:
    """A fallback chain of ``length`` steps named f1..f<length>, f1 first."""
    agent = StubAgent([])
    chain: AgentStep | None = None
    for index in range(length, 0, -1):
        chain = AgentStep(f"f{index}", agent, fallback=chain)
    return chain


def test_fallback_depth_is_bounded() -> None:
    assert MAX_FALLBACK_DEPTH == 10
    agent = StubAgent([])

    deepest_allowed = AgentStep("top", agent, fallback=_chain(MAX_FALLBACK_DEPTH))
    assert isinstance(deepest_allowed.fallback, AgentStep)
    assert deepest_allowed.fallback.name == "f1"

    with pytest.raises(FallbackLoopError, match="fallback chain longer than 10"):
        AgentStep("top", agent, fallback=_chain(MAX_FALLBACK_DEPTH + 1))
