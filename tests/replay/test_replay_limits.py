"""Replay reproduces what bounded the original run: its usage limits and its cache hits."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from cli_in_process import trioflow
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    Pipeline,
    PipelineResult,
    RetryPolicy,
    RunStatus,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime.agents import StubAgent


def limited(effects: list[str]) -> Pipeline:
    """Two paid model steps ($0.75 each), then a step with a side effect."""

    @step
    async def publish(text: str) -> str:
        effects.append(text)
        return text

    first = AgentStep("first", StubAgent([Completion("one", Usage("0.75", 10, 5))]))
    second = AgentStep("second", StubAgent([Completion("two", Usage("0.75", 10, 5))]))
    return (first >> second >> publish).named("limited")


async def test_a_replay_stops_where_the_original_hit_its_limit() -> None:
    effects: list[str] = []
    async with open_runtime(store=InMemoryStore()) as rt:
        with pytest.raises(UsageLimitExceeded) as caught:
            await rt.run(limited(effects), "x", limits=UsageLimits(total_cost_usd="1.00"))
        original = caught.value.result
        assert isinstance(original, PipelineResult)
        assert original.status is RunStatus.USAGE_LIMIT
        assert effects == []

        replay = await rt.replay(original.run_id, pipeline=limited(effects))

    assert effects == []  # the step after the breach did not run in the replay either
    assert replay.difference is None
    assert replay.limits == UsageLimits(total_cost_usd=Decimal("1.00"))
    assert replay.result.status is RunStatus.USAGE_LIMIT
    assert replay.result.error == "Cost limit of $1.00 exceeded"
    assert [entry.path for entry in replay.result.step_history] == ["main/0:first", "main/1:second"]
    assert replay.result.usage == original.usage == Usage(Decimal("1.50"), 20, 10)
    assert replay.steps == 3  # first, second (the breach) and the pipeline


async def test_a_replay_of_a_run_without_limits_runs_without_limits() -> None:
    effects: list[str] = []
    async with open_runtime(store=InMemoryStore()) as rt:
        original = await rt.run(limited(effects), "x")
        replay = await rt.replay(original.run_id, pipeline=limited(effects))

    assert effects == ["two", "two"]
    assert replay.limits is None
    assert replay.difference is None
    assert replay.result.status is RunStatus.COMPLETED


def cached_pipeline(model: StubAgent) -> Pipeline:
    @step
    async def shout(text: str) -> str:
        return text.upper()

    return (AgentStep("draft", model, cache=True) >> shout).named("cached")


async def test_a_replay_reproduces_a_cache_hit() -> None:
    model = StubAgent([Completion("draft", Usage("0.10", 3, 4))])
    async with open_runtime(store=InMemoryStore()) as rt:
        missed = await rt.run(cached_pipeline(model), "topic")
        hit = await rt.run(cached_pipeline(model), "topic")  # the same step and input: cached
        assert model.calls == 1
        assert hit.step("draft").metadata["cache_hit"] is True

        replay = await rt.replay(hit.run_id)
        replay_of_miss = await rt.replay(missed.run_id)

    assert model.calls == 1  # neither replay called the model
    assert replay.difference is None
    assert replay.result.status is RunStatus.COMPLETED
    assert replay.result.output == hit.output == "DRAFT"
    assert replay.result.step("draft").metadata["cache_hit"] is True
    assert replay.result.step("draft").attempts == 0
    assert replay.result.usage == hit.usage == Usage()
    assert replay_of_miss.difference is None
    assert replay_of_miss.result.step("draft").attempts == 1
    assert replay_of_miss.result.usage == Usage(Decimal("0.10"), 3, 4)


LIMITED_FILE = """
from trioflow.runtime import AgentStep, Completion, Usage, step
from trioflow.runtime.agents import StubAgent


@step
async def publish(text: str) -> str:
    with open(__file__ + ".published", "a") as marker:
        marker.write(text)
    return text


limited = AgentStep("first", StubAgent([Completion("one", Usage("0.75", 10, 5))])) >> AgentStep(
    "second", StubAgent([Completion("two", Usage("0.75", 10, 5))])
) >> publish
"""


def test_trioflow_replay_of_a_usage_limited_run_stops_at_the_same_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "limited.py"
    source.write_text(LIMITED_FILE)
    published = tmp_path / "limited.py.published"
    db = str(tmp_path / "j.db")
    ran = trioflow("run", f"{source}:limited", "--input", "x", "--max-cost", "1", "--db", db)
    assert ran == ExitCode.USAGE_LIMIT
    [run_id] = set(re.findall(r"run: ([0-9a-f]{32})", capsys.readouterr().out))

    assert trioflow("replay", run_id, "--db", db) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        f"replayed run {run_id}: 3 step(s), no model called",
        "stopped by the original run's limits: Cost limit of $1.00 exceeded",
        "same outputs and context as the original",
    ]
    assert not published.exists()  # the step after the breach ran neither time


async def test_a_replay_reproduces_a_cache_hit_of_a_fallback() -> None:
    def flaky() -> Pipeline:
        backup = AgentStep("backup", model, cache=True)
        down = StubAgent([RuntimeError("down")])
        primary = AgentStep("primary", down, retry=RetryPolicy(max_attempts=1), fallback=backup)
        return Pipeline.of(primary, name="flaky")

    model = StubAgent([Completion("from backup", Usage("0.10", 3, 4))])
    async with open_runtime(store=InMemoryStore()) as rt:
        await rt.run(flaky(), "topic")
        hit = await rt.run(flaky(), "topic")  # the primary fails again; the backup is cached
        replay = await rt.replay(hit.run_id, pipeline=flaky())

    assert model.calls == 1
    assert hit.output == "from backup"
    assert hit.step("primary").metadata["cache_hit"] is True
    assert replay.difference is None
    assert replay.result.output == "from backup"
    assert replay.result.step("primary").metadata["cache_hit"] is True
    assert replay.result.usage == hit.usage == Usage()
