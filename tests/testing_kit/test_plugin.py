"""The pytest plugin: registered by the entry point, its fixtures work, the README's test passes.

This folder has no conftest: the fixtures used here come from the plugin.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import trio
from trio.testing import MockClock
from trioflow.persistence import InMemoryStore
from trioflow.runtime import AgentStep, Runtime, UsageLimits
from trioflow.runtime.agents import FakeModel
from trioflow.testing import StubAgent, ran_steps

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_plugin_is_registered_by_an_entry_point() -> None:
    [entry] = importlib.metadata.entry_points(group="pytest11", name="trioflow")
    assert entry.value == "trioflow.testing._plugin"


async def test_the_runtime_fixture_runs_over_the_store_fixture(
    trioflow_runtime: Runtime, trioflow_store: InMemoryStore
) -> None:
    assert trioflow_runtime.store is trioflow_store
    assert trioflow_runtime.limits is None

    result = await trioflow_runtime.run(AgentStep("greet", StubAgent(["hello"])), "hi")

    assert result.output == "hello"
    assert [run.run_id for run in await trioflow_store.list_runs()] == [result.run_id]
    assert await ran_steps(result, trioflow_store) == ["main/0:greet"]


async def test_each_test_gets_a_fresh_store(trioflow_store: InMemoryStore) -> None:
    assert await trioflow_store.list_runs() == []


async def test_fake_model_latency_takes_no_real_time_under_autojump(
    trioflow_runtime: Runtime, autojump_clock: MockClock
) -> None:
    slow = FakeModel("slow", latency_s=(600.0, 600.0), respond=lambda text: text.upper())
    started = trio.current_time()

    result = await trioflow_runtime.run(
        AgentStep("shout", slow), "trio", limits=UsageLimits(total_cost_usd=1)
    )

    assert result.output == "TRIO"
    assert trio.current_time() - started == 600.0


def _readme_test() -> str:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    [block] = [block for block in blocks if "def test_an_empty_draft_is_retried" in block]
    return str(block)


def test_the_readme_example_test_passes_in_a_fresh_project(tmp_path: Path) -> None:
    (tmp_path / "test_essay.py").write_text(_readme_test())

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("1 passed in ")
