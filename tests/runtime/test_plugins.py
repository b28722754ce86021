"""Plugins: priority order, replacing the output, redirects and redirect loops."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
from trioflow.runtime import (
    AgentStep,
    BaseContext,
    Completion,
    Plugin,
    PluginOutcome,
    RetryPolicy,
    RunStatus,
    Runtime,
    Usage,
    ValidationResult,
)
from trioflow.runtime.agents import StubAgent


@attrs.define
class Recorder:
    """Records (name, output) in a shared log, then passes."""

    name: str
    priority: int
    log: list[tuple[str, Any]]

    async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
        self.log.append((self.name, output))
        return PluginOutcome()


@attrs.define
class Replace:
    priority: int
    old: Any
    new: Any

    async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
        if output == self.old:
            return PluginOutcome(new_solution=self.new)
        return PluginOutcome()


@attrs.define
class RedirectWhen:
    """Redirects the call to ``agent`` when the output equals ``when``."""

    when: Any
    agent: Any
    priority: int = 0

    async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
        if output == self.when:
            return PluginOutcome(redirect_to=self.agent)
        return PluginOutcome()


def test_plugins_satisfy_the_protocol() -> None:
    assert isinstance(Recorder("r", 1, []), Plugin)
    assert isinstance(Replace(1, "a", "b"), Plugin)


async def test_plugins_run_highest_priority_first(rt: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    plugins = [
        Recorder("low", 1, log),
        Recorder("high", 10, log),
        Recorder("middle", 5, log),
        Recorder("negative", -3, log),
    ]
    step = AgentStep("s", StubAgent(["out"]), plugins=plugins)

    assert [plugin.priority for plugin in step.plugins] == [10, 5, 1, -3]
    result = await rt.run(step, "x")

    assert result.output == "out"
    assert log == [("high", "out"), ("middle", "out"), ("low", "out"), ("negative", "out")]


async def test_equal_priorities_keep_declaration_order(rt: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    plugins = [Recorder("first", 2, log), Recorder("second", 2, log), Recorder("third", 2, log)]

    await rt.run(AgentStep("s", StubAgent(["out"]), plugins=plugins), "x")

    assert [name for name, _ in log] == ["first", "second", "third"]


async def test_new_solution_replaces_the_output_for_later_plugins_and_validators(
    rt: Runtime,
) -> None:
    log: list[tuple[str, Any]] = []
    validated: list[Any] = []

    def record(output: Any, context: Any) -> ValidationResult:
        validated.append(output)
        return ValidationResult.ok()

    step = AgentStep(
        "s",
        StubAgent(["rough draft"]),
        plugins=[Recorder("after", 1, log), Replace(9, "rough draft", "polished")],
        validators=[record],
    )

    result = await rt.run(step, "x")

    assert result.output == "polished"
    assert log == [("after", "polished")]
    assert validated == ["polished"]
    assert result.step("s").attempts == 1


async def test_new_solution_none_is_a_real_replacement(rt: Runtime) -> None:
    step = AgentStep("s", StubAgent(["something"]), plugins=[Replace(0, "something", None)])

    result = await rt.run(step, "x")

    assert result.status is RunStatus.COMPLETED
    assert result.output is None


async def test_redirect_runs_the_other_agent_with_the_same_input(rt: Runtime) -> None:
    primary = StubAgent([Completion("ask an expert", Usage("0.01", 10, 5))])
    expert = StubAgent([Completion("expert answer", Usage("0.20", 10, 50))])
    step = AgentStep("answer", primary, plugins=[RedirectWhen("ask an expert", expert)])

    result = await rt.run(step, "hard question")

    assert result.output == "expert answer"
    assert primary.inputs == ["hard question"]
    assert expert.inputs == ["hard question"]
    assert result.step("answer").attempts == 1
    assert result.step("answer").usage == Usage(Decimal("0.21"), 20, 55)
    assert result.usage == Usage(Decimal("0.21"), 20, 55)


async def test_redirected_output_goes_through_the_plugins_again(rt: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    expert = StubAgent(["expert answer"])
    step = AgentStep(
        "answer",
        StubAgent(["ask an expert"]),
        plugins=[RedirectWhen("ask an expert", expert, priority=5), Recorder("seen", 1, log)],
    )

    result = await rt.run(step, "q")

    assert result.output == "expert answer"
    assert log == [("seen", "expert answer")]


async def test_redirect_loop_fails_the_step_and_is_not_retried(rt: Runtime) -> None:
    a = StubAgent(["from a", "from a", "from a"])
    b = StubAgent(["from b", "from b", "from b"])
    plugins = [RedirectWhen("from a", b), RedirectWhen("from b", a)]
    step = AgentStep("looping", a, plugins=plugins, retry=RetryPolicy(max_attempts=3))

    result = await rt.run(step, "q")

    assert result.status is RunStatus.FAILED
    failed = result.step("looping")
    assert failed.success is False
    assert failed.attempts == 1
    assert (a.calls, b.calls) == (1, 1)
    assert failed.metadata == {"failure": "redirect_loop"}
    assert failed.feedback == (
        "step 'main/0:looping' failed (redirect_loop): "
        "step 'main/0:looping': redirect loop detected (StubAgent -> StubAgent -> StubAgent)"
    )


async def test_redirect_to_itself_is_a_loop(rt: Runtime) -> None:
    a = StubAgent(["again", "again"])
    step = AgentStep(
        "selfish", a, plugins=[RedirectWhen("again", a)], retry=RetryPolicy(max_attempts=2)
    )

    result = await rt.run(step, "q")

    assert result.step("selfish").metadata == {"failure": "redirect_loop"}
    assert result.step("selfish").attempts == 1
    assert a.calls == 1


async def test_plugins_see_the_context_snapshot(rt: Runtime) -> None:
    class Tone(BaseContext):
        tone: str = "neutral"

    seen: list[str] = []

    class ToneCheck:
        priority = 0

        async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
            seen.append(context.tone)
            return PluginOutcome()

    await rt.run(
        AgentStep("s", StubAgent(["out"]), plugins=[ToneCheck()]), "x", context=Tone(tone="warm")
    )

    assert seen == ["warm"]


async def test_plugin_failure_exhausting_attempts_is_a_plugin_failure(rt: Runtime) -> None:
    class Refuse:
        priority = 0

        async def validate(self, output: Any, *, context: Any) -> PluginOutcome:
            return PluginOutcome(success=False, feedback=f"{output} is off-topic")

    agent = StubAgent(["one", "two", "three"])
    step = AgentStep("s", agent, plugins=[Refuse()], retry=RetryPolicy(max_attempts=3))

    result = await rt.run(step, "x")

    assert result.status is RunStatus.FAILED
    assert result.step("s").attempts == 3
    assert agent.calls == 3
    assert result.step("s").metadata == {"failure": "plugin"}
    assert result.error == "step 'main/0:s' failed (plugin): Refuse: three is off-topic"
