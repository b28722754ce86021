"""Agent steps: attempts per RetryPolicy, failure classification, control signals."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trioflow.runtime import (
    AgentStep,
    ControlSignal,
    FailureKind,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    UsageLimitExceeded,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent


def final_only(output: Any, context: Any) -> ValidationResult:
    """Passes only the output ``final``."""
    if output == "final":
        return ValidationResult.ok()
    return ValidationResult.fail(f"{output!r} is not final")


def never_valid(output: Any, context: Any) -> ValidationResult:
    return ValidationResult.fail("never good enough")


class StopNow(ControlSignal):
    """A control signal a step's own code raises to stop on purpose."""


# --- validation failures are retried per RetryPolicy ---------------------------------------------


async def test_validation_failing_twice_then_passing_takes_three_attempts(rt: Runtime) -> None:
    agent = StubAgent(["first", "second", "final"])
    draft = AgentStep("draft", agent, retry=RetryPolicy(max_attempts=3), validators=[final_only])

    result = await rt.run(draft, "topic")

    assert result.status is RunStatus.COMPLETED
    assert result.output == "final"
    only = result.step("draft")
    assert only.path == "main/0:draft"
    assert only.success is True
    assert only.attempts == 3
    assert only.metadata == {"validation_passed": True}
    assert agent.calls == 3


async def test_validation_exhausting_attempts_fails_after_exactly_max_attempts_calls(
    rt: Runtime,
) -> None:
    agent = StubAgent(["one", "two", "three"])
    draft = AgentStep("draft", agent, retry=RetryPolicy(max_attempts=3), validators=[never_valid])

    result = await rt.run(draft, "topic")

    assert result.status is RunStatus.FAILED
    failed = result.step("draft")
    assert failed.success is False
    assert failed.attempts == 3
    assert agent.calls == 3
    assert failed.metadata == {"failure": "validation"}
    assert failed.feedback == (
        "step 'main/0:draft' failed (validation): Validation failed: never_valid: never good enough"
    )
    assert result.error == failed.feedback
    assert result.output is None


async def test_default_policy_is_two_attempts_in_all(rt: Runtime) -> None:
    assert RetryPolicy().max_attempts == 2
    agent = StubAgent([RuntimeError("flaky"), RuntimeError("flaky again"), "never reached"])

    result = await rt.run(AgentStep("flaky", agent), "x")

    assert result.status is RunStatus.FAILED
    assert result.step("flaky").attempts == 2
    assert agent.calls == 2
    assert result.error == "step 'main/0:flaky' failed (agent_error): RuntimeError: flaky again"


async def test_agent_error_is_classified_and_retried(rt: Runtime) -> None:
    agent = StubAgent([ValueError("malformed json"), "parsed"])

    result = await rt.run(AgentStep("parse", agent), "x")

    assert result.status is RunStatus.COMPLETED
    assert result.output == "parsed"
    assert result.step("parse").attempts == 2
    assert agent.calls == 2


# --- control signals are never retried -----------------------------------------------------------


async def test_script_exhausted_is_never_retried_and_names_the_step(rt: Runtime) -> None:
    agent = StubAgent(["only one"])
    checked = AgentStep(
        "checked", agent, retry=RetryPolicy(max_attempts=5), validators=[never_valid]
    )

    result = await rt.run(checked, "x")

    assert result.status is RunStatus.FAILED
    failed = result.step("checked")
    # attempt 1: validation failure (retried); attempt 2: the stub is exhausted (not retried)
    assert failed.attempts == 2
    assert agent.calls == 2
    assert failed.metadata == {"failure": "configuration"}
    assert failed.feedback == (
        "step 'main/0:checked' failed (configuration): "
        "StubAgent ran out of outputs: call 2 but only 1 scripted"
    )


async def test_script_exhausted_on_the_first_call_is_one_attempt(rt: Runtime) -> None:
    agent = StubAgent([])

    result = await rt.run(AgentStep("empty", agent, retry=RetryPolicy(max_attempts=4)), "x")

    assert result.step("empty").attempts == 1
    assert agent.calls == 1
    assert result.step("empty").metadata == {"failure": "configuration"}
    assert result.error == (
        "step 'main/0:empty' failed (configuration): "
        "StubAgent ran out of outputs: call 1 but only 0 scripted"
    )


async def test_control_signal_raised_by_a_step_is_not_retried(rt: Runtime) -> None:
    """ControlSignal subclasses stop a step on purpose and are never retried."""
    agent = StubAgent([StopNow("stop here"), "retried anyway", "retried again"])
    fallback = StubAgent(["unused"])
    halting = AgentStep(
        "halting", agent, retry=RetryPolicy(max_attempts=3), fallback=AgentStep("backup", fallback)
    )

    result = await rt.run(halting, "x")

    assert agent.calls == 1
    assert fallback.calls == 0
    assert result.status is RunStatus.FAILED
    assert result.step("halting").attempts == 1
    assert result.step("halting").metadata == {"failure": "control"}
    assert result.error == "step 'main/0:halting' failed (control): StopNow: stop here"


async def test_usage_limit_raised_inside_a_step_is_not_retried(rt: Runtime) -> None:
    """An agent that itself hits a budget (e.g. a nested run) is a usage-limit failure."""
    agent = StubAgent([UsageLimitExceeded("Cost limit of $1.00 exceeded"), "again", "again"])

    result = await rt.run(AgentStep("nested", agent, retry=RetryPolicy(max_attempts=3)), "x")

    assert agent.calls == 1
    assert result.step("nested").attempts == 1
    assert result.step("nested").metadata == {"failure": "usage_limit"}
    assert result.error == "step 'main/0:nested' failed (usage_limit): Cost limit of $1.00 exceeded"


async def test_configuration_error_from_a_validator_is_not_retried(rt: Runtime) -> None:
    def sloppy(output: Any, context: Any) -> Any:
        return True  # not a ValidationResult

    agent = StubAgent(["a", "b", "c"])
    result = await rt.run(
        AgentStep("sloppy", agent, retry=RetryPolicy(max_attempts=3), validators=[sloppy]), "x"
    )

    assert result.status is RunStatus.FAILED
    assert result.step("sloppy").attempts == 1
    assert agent.calls == 1
    assert result.step("sloppy").metadata == {"failure": "configuration"}
    assert result.error == (
        "step 'main/0:sloppy' failed (configuration): "
        "validator sloppy returned True, not a ValidationResult"
    )


# --- timeouts ------------------------------------------------------------------------------------


async def test_timeout_is_classified_and_retried_per_policy(
    rt: Runtime, autojump_clock: Any
) -> None:
    calls = 0

    async def slow(topic: str) -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(5)
        return topic

    started = trio.current_time()
    result = await rt.run(
        Step.from_callable(slow, timeout_s=1, retry=RetryPolicy(max_attempts=3)), "x"
    )

    assert trio.current_time() - started == 3.0
    assert result.status is RunStatus.FAILED
    failed = result.step("slow")
    assert failed.attempts == 3
    assert calls == 3
    assert failed.latency_s == 3.0
    assert failed.metadata == {"failure": "timeout"}
    assert failed.feedback == "step 'main/0:slow' failed (timeout): timed out after 1s"


async def test_timeout_then_fast_attempt_succeeds(rt: Runtime, autojump_clock: Any) -> None:
    delays = [10.0, 0.25]

    async def sometimes_slow(topic: str) -> str:
        await trio.sleep(delays.pop(0))
        return "on time"

    started = trio.current_time()
    result = await rt.run(Step.from_callable(sometimes_slow, timeout_s=2), "late")

    assert trio.current_time() - started == 2.25
    assert result.output == "on time"
    assert result.step("sometimes_slow").attempts == 2


async def test_timeout_not_in_retry_on_is_not_retried(rt: Runtime, autojump_clock: Any) -> None:
    calls = 0

    async def slow(topic: str) -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(5)
        return topic

    policy = RetryPolicy(max_attempts=3, retry_on={FailureKind.AGENT_ERROR})
    result = await rt.run(Step.from_callable(slow, timeout_s=0.5, retry=policy), "x")

    assert calls == 1
    assert result.step("slow").attempts == 1
    assert result.error == "step 'main/0:slow' failed (timeout): timed out after 0.5s"


async def test_agent_raising_its_own_too_slow_error_without_step_timeout(
    rt: Runtime, autojump_clock: Any
) -> None:
    """An agent's own trio deadline (no step timeout set) is a retryable failure, not a crash."""
    calls = 0

    async def own_deadline(topic: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            with trio.fail_after(1):
                await trio.sleep(5)
        return topic

    result = await rt.run(Step.from_callable(own_deadline), "x")

    assert result.status is RunStatus.COMPLETED
    assert result.output == "x"
    assert result.step("own_deadline").attempts == 2
    assert calls == 2


# --- which kinds a policy retries ----------------------------------------------------------------


async def test_retry_on_validation_only_does_not_retry_agent_errors(rt: Runtime) -> None:
    agent = StubAgent([RuntimeError("boom"), "never reached"])
    policy = RetryPolicy(max_attempts=3, retry_on={FailureKind.VALIDATION})

    result = await rt.run(AgentStep("picky", agent, retry=policy), "x")

    assert result.status is RunStatus.FAILED
    assert result.step("picky").attempts == 1
    assert agent.calls == 1
    assert result.step("picky").metadata == {"failure": "agent_error"}
    assert result.error == "step 'main/0:picky' failed (agent_error): RuntimeError: boom"


async def test_retry_on_validation_only_still_retries_validation(rt: Runtime) -> None:
    agent = StubAgent(["draft", "final"])
    policy = RetryPolicy(max_attempts=3, retry_on={FailureKind.VALIDATION})

    result = await rt.run(AgentStep("picky", agent, retry=policy, validators=[final_only]), "x")

    assert result.output == "final"
    assert result.step("picky").attempts == 2
    assert agent.calls == 2


RETRYABLE_KINDS = {
    FailureKind.AGENT_ERROR,
    FailureKind.TIMEOUT,
    FailureKind.VALIDATION,
    FailureKind.PLUGIN,
}
CONTROL_KINDS = [kind for kind in FailureKind if kind not in RETRYABLE_KINDS]


def test_control_kinds_include_configuration_usage_limit_and_redirect_loop() -> None:
    assert {FailureKind.CONFIGURATION, FailureKind.USAGE_LIMIT, FailureKind.REDIRECT_LOOP} <= set(
        CONTROL_KINDS
    )


@pytest.mark.parametrize("kind", CONTROL_KINDS, ids=lambda kind: kind.value)
def test_retry_policy_rejects_control_kinds(kind: FailureKind) -> None:
    with pytest.raises(ValueError, match=f"control signals and are never retried: {kind.value}"):
        RetryPolicy(retry_on={FailureKind.VALIDATION, kind})


def test_retry_policy_defaults_and_bounds() -> None:
    policy = RetryPolicy()
    assert policy.retry_on == frozenset(RETRYABLE_KINDS)
    assert policy.retries(FailureKind.VALIDATION, 1) is True
    assert policy.retries(FailureKind.VALIDATION, 2) is False
    assert policy.retries(FailureKind.CONFIGURATION, 1) is False
    with pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_s=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_multiplier=0.5)


def test_backoff_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_s=1.0, backoff_multiplier=3.0, max_backoff_s=5.0)
    assert [policy.delay_before(n) for n in (2, 3, 4, 5)] == [1.0, 3.0, 5.0, 5.0]


async def test_backoff_waits_between_attempts(rt: Runtime, autojump_clock: Any) -> None:
    agent = StubAgent([RuntimeError("one"), RuntimeError("two"), "three"])
    policy = RetryPolicy(max_attempts=3, backoff_s=1.5)

    started = trio.current_time()
    result = await rt.run(AgentStep("patient", agent, retry=policy), "x")

    # 1.5s before attempt 2, 3.0s before attempt 3
    assert trio.current_time() - started == 4.5
    assert result.output == "three"
    assert result.step("patient").attempts == 3
    assert agent.calls == 3
