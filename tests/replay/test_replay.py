"""Replay: a stored run again, every model call answered from its journal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentOutputInvalid,
    AgentStep,
    Completion,
    Pipeline,
    RetryPolicy,
    RunStatus,
    Usage,
    open_runtime,
    step,
)
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import Difference


def writer() -> StubAgent:
    """A model whose first reply is rejected (and paid for), the second accepted."""
    return StubAgent(
        [
            AgentOutputInvalid("reply is not JSON", usage=Usage("0.01", 3, 4)),
            Completion("draft", Usage("0.02", 5, 6)),
        ]
    )


def pipeline(model: StubAgent, suffix: str) -> Pipeline:
    @step
    async def polish(text: str) -> str:
        return text + suffix

    return AgentStep("write", model, retry=RetryPolicy(max_attempts=2)) >> polish


async def test_a_replay_calls_no_model_and_reproduces_outputs_and_totals() -> None:
    model = writer()
    async with open_runtime(store=InMemoryStore()) as rt:
        original = await rt.run(pipeline(model, "!"), "topic")
        replay = await rt.replay(original.run_id)

    assert model.calls == 2  # both in the original run; the replay called nothing
    assert replay.identical
    assert replay.difference is None
    assert replay.steps == 3  # write, polish and the pipeline itself
    assert replay.result.status is RunStatus.COMPLETED
    assert replay.result.output == original.output == "draft!"
    assert replay.result.usage == original.usage == Usage(Decimal("0.03"), 8, 10)
    assert replay.result.step("write").attempts == 2  # the rejected reply replays as rejected


async def test_a_step_whose_code_changed_is_the_first_difference() -> None:
    async with open_runtime(store=InMemoryStore()) as rt:
        original = await rt.run(pipeline(writer(), "!"), "topic")
        replay = await rt.replay(original.run_id, pipeline=pipeline(StubAgent([]), "?"))

    assert not replay.identical
    assert replay.difference == Difference("main/1:polish", "output", "draft!", "draft?")
    assert str(replay.difference) == "main/1:polish: output was 'draft!', now 'draft?'"


async def test_a_model_call_the_original_never_made_fails_the_step() -> None:
    async with open_runtime(store=InMemoryStore()) as rt:
        original = await rt.run(AgentStep("write", StubAgent(["one"])), "topic")
        changed = AgentStep("write", StubAgent([]), retry=RetryPolicy(max_attempts=1)) >> AgentStep(
            "again", StubAgent([])
        )
        replay = await rt.replay(original.run_id, pipeline=changed.named("write"))

    assert replay.difference == Difference("main/1:again", "completed", False, True)
    failed = replay.result.step("again")
    assert failed.success is False
    assert failed.feedback == (
        "step 'main/1:again' failed (configuration): "
        "the original run made no call 'main/1:again#1#1'"
    )


def _trioflow(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trioflow.runtime", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # The test edits flow.py within the same second, keeping its size: a cached
        # .pyc would look fresh and hide the edit.
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_trioflow_replay_across_processes(tmp_path: Path) -> None:
    source = tmp_path / "flow.py"
    source.write_text(
        textwrap.dedent(
            """
            from trioflow.runtime import AgentStep, step
            from trioflow.runtime.agents import FakeModel

            @step
            async def shout(text: str) -> str:
                return text.upper()

            pipeline = AgentStep("draft", FakeModel("m", seed=1, latency_s=(0, 0))) >> shout
            """
        )
    )
    db = str(tmp_path / "j.db")
    ran = _trioflow("run", f"{source}:pipeline", "--input", "hi", "--db", db, "--quiet")
    assert ran.returncode == ExitCode.OK, ran.stderr
    [run_id] = set(re.findall(r"run: ([0-9a-f]{32})", ran.stdout))

    same = _trioflow("replay", run_id, "--db", db)
    assert same.returncode == ExitCode.OK, same.stderr
    assert same.stdout.splitlines() == [
        f"replayed run {run_id}: 3 step(s), no model called",
        "same outputs and context as the original",
    ]

    source.write_text(source.read_text().replace("text.upper()", "text.lower()"))
    refused = _trioflow("replay", run_id, "--db", db)  # the file is not the run's any more
    assert refused.returncode == ExitCode.BAD_ARGUMENTS, refused.stderr
    changed = _trioflow("replay", run_id, "--db", db, "--pipeline", f"{source}:pipeline")
    assert changed.returncode == ExitCode.PIPELINE_FAILED, changed.stderr
    lines = changed.stdout.splitlines()
    assert lines[0] == f"replayed run {run_id}: 3 step(s), no model called"
    assert re.fullmatch(
        r"first difference: main/1:shout: output was '[A-Z ]+', now '[a-z ]+'", lines[1]
    )
