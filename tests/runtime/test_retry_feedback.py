"""Feedback from a failed validator or plugin reaches the next attempt's input."""

from __future__ import annotations

from typing import Any

import attrs
import trio
from trioflow.runtime import (
    AgentStep,
    PluginOutcome,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import append_feedback

TOPIC = "Write about trio"


def min_length(output: Any, context: Any) -> ValidationResult:
    if len(output) >= 6:
        return ValidationResult.ok()
    return ValidationResult.fail("needs at least 6 characters")


@attrs.frozen
class NoShouting:
    priority: int = 0

    async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
        if output.isupper():
            return PluginOutcome(success=False, feedback="stop shouting")
        return PluginOutcome()


def test_append_feedback_format() -> None:
    assert append_feedback("draft it", "too short") == (
        "draft it\n\nFeedback on the previous attempt: too short"
    )
    structured = {"topic": "trio"}
    assert append_feedback(structured, "too short") is structured


async def test_validator_feedback_reaches_the_next_attempt(rt: Runtime) -> None:
    agent = StubAgent(["tiny", "long enough"])

    result = await rt.run(AgentStep("draft", agent, validators=[min_length]), TOPIC)

    assert result.output == "long enough"
    assert result.step("draft").attempts == 2
    assert agent.calls == 2
    feedback = "Validation failed: min_length: needs at least 6 characters"
    assert agent.inputs[0] == TOPIC
    assert agent.inputs[1] == append_feedback(TOPIC, feedback)
    assert agent.inputs[1] == (
        "Write about trio\n\nFeedback on the previous attempt: "
        "Validation failed: min_length: needs at least 6 characters"
    )


async def test_plugin_feedback_reaches_the_next_attempt(rt: Runtime) -> None:
    agent = StubAgent(["LOUD", "calm"])

    result = await rt.run(AgentStep("draft", agent, plugins=[NoShouting()]), TOPIC)

    assert result.output == "calm"
    assert result.step("draft").attempts == 2
    assert agent.calls == 2
    assert agent.inputs == [TOPIC, append_feedback(TOPIC, "NoShouting: stop shouting")]


async def test_plugin_failure_without_feedback_says_it_rejected(rt: Runtime) -> None:
    @attrs.frozen
    class Silent:
        priority: int = 0

        async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
            return PluginOutcome(success=False)

    agent = StubAgent(["a", "b"])
    result = await rt.run(AgentStep("draft", agent, plugins=[Silent()]), TOPIC)

    assert result.status is RunStatus.FAILED
    assert agent.inputs[1] == append_feedback(TOPIC, "Silent: rejected the output")
    assert result.step("draft").metadata == {"failure": "plugin"}
    assert result.error == "step 'main/0:draft' failed (plugin): Silent: rejected the output"


async def test_feedback_is_added_to_the_original_input_each_time(rt: Runtime) -> None:
    agent = StubAgent(["x", "xy", "long enough"])

    def exact_feedback(output: Any, context: Any) -> ValidationResult:
        if len(output) >= 6:
            return ValidationResult.ok()
        return ValidationResult.fail(f"{output!r} is {len(output)} characters")

    result = await rt.run(
        AgentStep("draft", agent, retry=RetryPolicy(max_attempts=3), validators=[exact_feedback]),
        TOPIC,
    )

    assert result.output == "long enough"
    assert agent.inputs == [
        TOPIC,
        append_feedback(TOPIC, "Validation failed: exact_feedback: 'x' is 1 characters"),
        append_feedback(TOPIC, "Validation failed: exact_feedback: 'xy' is 2 characters"),
    ]


async def test_every_failed_validator_contributes_feedback(rt: Runtime) -> None:
    def has_period(output: Any, context: Any) -> ValidationResult:
        return ValidationResult.ok() if output.endswith(".") else ValidationResult.fail("no period")

    agent = StubAgent(["bad", "A good sentence."])
    result = await rt.run(AgentStep("draft", agent, validators=[min_length, has_period]), TOPIC)

    assert result.output == "A good sentence."
    assert agent.inputs[1] == append_feedback(
        TOPIC,
        "Validation failed: min_length: needs at least 6 characters; has_period: no period",
    )


async def test_custom_add_feedback_for_structured_input(rt: Runtime) -> None:
    def add_note(data: Any, feedback: str) -> Any:
        return {**data, "feedback": feedback}

    agent = StubAgent(["no", "yes, long"])
    policy = RetryPolicy(add_feedback=add_note)
    question = {"topic": "trio"}

    result = await rt.run(
        AgentStep("draft", agent, retry=policy, validators=[min_length]), question
    )

    assert result.output == "yes, long"
    assert agent.inputs == [
        {"topic": "trio"},
        {"topic": "trio", "feedback": "Validation failed: min_length: needs at least 6 characters"},
    ]
    assert question == {"topic": "trio"}


async def test_agent_error_retry_sends_the_original_input(rt: Runtime) -> None:
    """Only validation and plugin failures add feedback to the next attempt's input."""
    agent = StubAgent([RuntimeError("connection reset"), "recovered"])

    result = await rt.run(AgentStep("draft", agent), TOPIC)

    assert result.output == "recovered"
    assert agent.inputs == [TOPIC, TOPIC]


async def test_timeout_retry_sends_the_original_input(rt: Runtime, autojump_clock: Any) -> None:
    """Only validation and plugin failures add feedback to the next attempt's input."""
    seen: list[str] = []

    async def slow_once(topic: str) -> str:
        seen.append(topic)
        if len(seen) == 1:
            await trio.sleep(10)
        return "done"

    result = await rt.run(Step.from_callable(slow_once, timeout_s=1), TOPIC)

    assert result.output == "done"
    assert seen == [TOPIC, TOPIC]


async def test_a_rejected_reply_is_paid_for_and_counted(rt: Runtime) -> None:
    from decimal import Decimal

    from trioflow.runtime import AgentOutputInvalid, Completion, RetryPolicy, Usage

    agent = StubAgent(
        [
            AgentOutputInvalid("reply is not JSON", usage=Usage("0.10", 5, 7)),
            Completion("fine", Usage("0.25", 5, 3)),
        ]
    )
    result = await rt.run(AgentStep("ask", agent, retry=RetryPolicy(max_attempts=2)), "q")

    answered = result.step("ask")
    assert (answered.success, answered.attempts) == (True, 2)
    assert answered.usage == Usage(Decimal("0.35"), 10, 10)
    assert result.usage == Usage(Decimal("0.35"), 10, 10)
    assert agent.inputs[1] == "q\n\nFeedback on the previous attempt: reply is not JSON"
