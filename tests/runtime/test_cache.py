"""Caching: opt-in, keyed by step, input and declared context fields, single-flight."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from pydantic import Field
from trioflow.runtime import (
    AgentStep,
    BaseContext,
    Cache,
    Completion,
    ConfigurationError,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Runtime,
    Step,
    Usage,
    open_runtime,
)
from trioflow.runtime.agents import StubAgent


class User(BaseContext):
    user: str = ""
    mood: str = ""


class Counting:
    """An agent that answers ``<input>!`` at a price and counts its calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    async def run(self, data: Any, *, context: Any, resources: Any) -> Completion:
        self.calls += 1
        await trio.sleep(self.delay)
        return Completion(f"{data}!", Usage("0.25", 10, 20))


async def test_without_cache_the_agent_runs_every_time(rt: Runtime) -> None:
    agent = Counting()
    step = AgentStep("s", agent)

    results = [await rt.run(step, "same") for _ in range(3)]

    assert agent.calls == 3
    assert [r.usage for r in results] == [Usage(Decimal("0.25"), 10, 20)] * 3
    assert ["cache_hit" in r.step("s").metadata for r in results] == [False, False, False]


async def test_cache_hit_is_marked_and_costs_nothing(rt: Runtime) -> None:
    agent = Counting()
    step = AgentStep("s", agent, cache=True)

    first = await rt.run(step, "same")
    second = await rt.run(step, "same")

    assert agent.calls == 1
    assert first.output == second.output == "same!"
    assert first.usage == Usage(Decimal("0.25"), 10, 20)
    assert "cache_hit" not in first.step("s").metadata
    hit = second.step("s")
    assert hit.metadata["cache_hit"] is True
    assert hit.usage == Usage()
    assert hit.attempts == 0
    assert hit.path == "main/0:s"
    assert second.usage == Usage()
    assert second.total_cost_usd == Decimal(0)


async def test_cache_key_covers_the_input(rt: Runtime) -> None:
    agent = Counting()
    step = AgentStep("s", agent, cache=Cache())

    outputs = [(await rt.run(step, text)).output for text in ("a", "b", "a", "b")]

    assert outputs == ["a!", "b!", "a!", "b!"]
    assert agent.calls == 2


async def test_cache_key_covers_the_declared_context_fields(rt: Runtime) -> None:
    agent = Counting()
    step = AgentStep("s", agent, cache=Cache(context_fields=("user",)))

    await rt.run(step, "q", context=User(user="ann", mood="calm"))
    await rt.run(step, "q", context=User(user="bob", mood="calm"))
    assert agent.calls == 2

    # same user, a field the step did not declare differs: a hit
    again = await rt.run(step, "q", context=User(user="ann", mood="angry"))
    assert agent.calls == 2
    assert again.step("s").metadata["cache_hit"] is True


async def test_undeclared_context_fields_do_not_split_the_cache(rt: Runtime) -> None:
    agent = Counting()
    step = AgentStep("s", agent, cache=True)

    await rt.run(step, "q", context=User(user="ann"))
    await rt.run(step, "q", context=User(user="bob"))

    assert agent.calls == 1


async def test_concurrent_identical_calls_run_the_agent_once(
    rt: Runtime, autojump_clock: Any
) -> None:
    agent = Counting(delay=1.0)
    step = AgentStep("slow", agent, cache=True)
    results: list[PipelineResult] = []

    async def one() -> None:
        results.append(await rt.run(step, "same"))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(one)

    assert trio.current_time() - started == 1.0
    assert agent.calls == 1
    assert [r.output for r in results] == ["same!"] * 6
    hits = [r.step("slow").metadata.get("cache_hit", False) for r in results]
    assert sorted(hits) == [False, True, True, True, True, True]
    assert sum((r.total_cost_usd for r in results), Decimal(0)) == Decimal("0.25")
    assert len({r.run_id for r in results}) == 6


async def test_failures_are_not_cached(rt: Runtime) -> None:
    agent = StubAgent([RuntimeError("flaky"), "good", "unused"])
    step = AgentStep("s", agent, cache=True, retry=RetryPolicy(max_attempts=1))

    failed = await rt.run(step, "q")
    succeeded = await rt.run(step, "q")
    cached = await rt.run(step, "q")

    assert failed.status is RunStatus.FAILED
    assert succeeded.output == "good"
    assert cached.output == "good"
    assert cached.step("s").metadata["cache_hit"] is True
    assert agent.calls == 2


async def test_waiters_run_again_when_the_running_call_fails(
    rt: Runtime, autojump_clock: Any
) -> None:
    outcomes: list[Any] = [RuntimeError("first fails"), "second works"]
    calls = 0

    async def flaky(text: str) -> str:
        nonlocal calls
        calls += 1
        outcome = outcomes.pop(0)
        await trio.sleep(1)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    step = Step.from_callable(flaky, cache=True, retry=RetryPolicy(max_attempts=1))
    results: list[PipelineResult] = []

    async def one() -> None:
        results.append(await rt.run(step, "q"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
        nursery.start_soon(one)

    assert calls == 2
    assert sorted(r.status.value for r in results) == ["completed", "completed", "failed"]


async def test_cache_hit_replays_the_context_update(rt: Runtime) -> None:
    agent = StubAgent([{"user": "from cache"}])
    step = AgentStep("s", agent, cache=True, updates_context=True)

    first = await rt.run(step, "q", context=User())
    second = await rt.run(step, "q", context=User())

    assert agent.calls == 1
    assert first.context.user == "from cache"
    assert second.context.user == "from cache"


async def test_each_runtime_has_its_own_cache() -> None:
    agent = Counting()
    step = AgentStep("s", agent, cache=True)

    async with open_runtime() as first:
        await first.run(step, "q")
    async with open_runtime() as second:
        await second.run(step, "q")

    assert agent.calls == 2


async def test_steps_calling_different_agents_do_not_share_entries(rt: Runtime) -> None:
    """Two steps that happen to share a name but call different agents are different steps."""
    english = AgentStep("answer", StubAgent(["hello"]), cache=True)
    french = AgentStep("answer", StubAgent(["bonjour"]), cache=True)

    first = await rt.run(english, "greet")
    second = await rt.run(french, "greet")

    assert first.output == "hello"
    assert second.output == "bonjour"


def make_translator(language: str) -> AgentStep:
    """A cached step; every call makes a new closure with the same qualified name."""

    async def translate(text: str) -> str:
        return f"{language}:{text}"

    return Step.from_callable(translate, cache=True)


async def test_steps_made_by_one_factory_do_not_share_entries(rt: Runtime) -> None:
    """Closures from one factory share a qualified name but not their behaviour."""
    english_step = make_translator("en")
    french_step = make_translator("fr")

    english = await rt.run(english_step, "hello")
    french = await rt.run(french_step, "hello")

    assert english.output == "en:hello"
    assert french.output == "fr:hello"
    assert "cache_hit" not in french.step("translate").metadata


async def test_a_new_step_never_gets_a_dropped_steps_entries(rt: Runtime) -> None:
    """Once a step is gone, a new one (perhaps at the same address) starts with no entries."""
    outputs = []
    for number in range(20):
        # the step and its closure are dropped after each run
        outputs.append((await rt.run(make_translator(f"lang{number}"), "hello")).output)

    assert outputs == [f"lang{number}:hello" for number in range(20)]


class Tagged(BaseContext):
    tags: list[str] = Field(default_factory=list)


async def test_caching_on_an_unknown_context_field_is_a_configuration_error(rt: Runtime) -> None:
    cached = AgentStep("lookup", StubAgent(["a"]), cache=Cache(context_fields=("user", "tags")))

    with pytest.raises(
        ConfigurationError,
        match=r"^step 'lookup' caches on context field\(s\) 'user', which Tagged does not have$",
    ):
        await rt.run(cached, "x", context=Tagged())
