"""Validators and processors: what they see, strict and lenient validation, paid failures."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trioflow.runtime import (
    AgentStep,
    BaseContext,
    Completion,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent


class Rules(BaseContext):
    banned: str = ""


def not_banned(output: Any, context: Rules) -> ValidationResult:
    if context.banned and context.banned in output:
        return ValidationResult.fail(f"mentions {context.banned!r}")
    return ValidationResult.ok()


def test_validation_result_constructors() -> None:
    assert ValidationResult.ok() == ValidationResult(True, None)
    assert ValidationResult.fail("why") == ValidationResult(False, "why")


async def test_validators_see_the_context(rt: Runtime) -> None:
    agent = StubAgent(["about asyncio", "about trio"])
    step = AgentStep("s", agent, validators=[not_banned])

    result = await rt.run(step, "x", context=Rules(banned="asyncio"))

    assert result.output == "about trio"
    assert result.step("s").attempts == 2


async def test_async_validators_are_awaited(rt: Runtime) -> None:
    async def is_even(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.ok() if output % 2 == 0 else ValidationResult.fail("odd")

    agent = StubAgent([3, 4])
    result = await rt.run(AgentStep("s", agent, validators=[is_even]), 0)

    assert result.output == 4
    assert result.step("s").attempts == 2
    assert result.step("s").metadata == {"validation_passed": True}


async def test_no_validators_means_no_validation_metadata(rt: Runtime) -> None:
    result = await rt.run(AgentStep("s", StubAgent(["a"])), "x")

    assert result.step("s").metadata == {}


async def test_lenient_validation_keeps_the_output_and_reports(rt: Runtime) -> None:
    def short(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.fail("too long") if len(output) > 3 else ValidationResult.ok()

    agent = StubAgent(["lengthy"])
    step = AgentStep("s", agent, validators=[short], strict_validation=False)

    result = await rt.run(step, "x")

    assert result.status is RunStatus.COMPLETED
    assert result.output == "lengthy"
    assert result.step("s").attempts == 1
    assert agent.calls == 1
    assert result.step("s").metadata == {
        "validation_passed": False,
        "validation_feedback": "Validation failed: short: too long",
    }


async def test_validator_failure_without_feedback_says_invalid(rt: Runtime) -> None:
    def silent(output: Any, context: Any) -> ValidationResult:
        return ValidationResult(False)

    result = await rt.run(
        AgentStep("s", StubAgent(["a"]), validators=[silent], retry=RetryPolicy(max_attempts=1)),
        "x",
    )

    assert result.error == "step 'main/0:s' failed (validation): Validation failed: silent: invalid"


async def test_failed_validations_are_paid_for(rt: Runtime) -> None:
    def final_only(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.ok() if output == "final" else ValidationResult.fail("not final")

    agent = StubAgent(
        [
            Completion("one", Usage("0.10", 100, 10)),
            Completion("two", Usage("0.10", 100, 10)),
            Completion("final", Usage("0.10", 100, 10)),
        ]
    )
    step = AgentStep("s", agent, validators=[final_only], retry=RetryPolicy(max_attempts=3))

    result = await rt.run(step, "x")

    assert result.output == "final"
    assert result.step("s").usage == Usage(Decimal("0.30"), 300, 30)
    assert result.usage == Usage(Decimal("0.30"), 300, 30)
    assert result.total_cost_usd == Decimal("0.30")
    assert result.total_tokens == 330


async def test_processors_run_around_the_call_and_validators_see_processed_output(
    rt: Runtime,
) -> None:
    validated: list[Any] = []

    def record(output: Any, context: Any) -> ValidationResult:
        validated.append(output)
        return ValidationResult.ok()

    async def add_prefix(data: Any, context: Any) -> Any:
        return f"prompt: {data}"

    agent = StubAgent(["  answer  "])
    step = AgentStep(
        "s",
        agent,
        input_processors=[add_prefix],
        output_processors=[lambda output, context: output.strip(), lambda o, c: o.upper()],
        validators=[record],
    )

    result = await rt.run(step, "question")

    assert agent.inputs == ["prompt: question"]
    assert validated == ["ANSWER"]
    assert result.output == "ANSWER"


async def test_a_raising_validator_is_an_agent_error(rt: Runtime) -> None:
    def broken(output: Any, context: Any) -> ValidationResult:
        raise KeyError("missing")

    agent = StubAgent(["a", "b"])
    result = await rt.run(AgentStep("s", agent, validators=[broken]), "x")

    assert result.status is RunStatus.FAILED
    assert result.step("s").attempts == 2
    assert agent.calls == 2
    assert result.error == "step 'main/0:s' failed (agent_error): KeyError: 'missing'"
