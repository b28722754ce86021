"""swap_agent: one step's agent replaced in a built pipeline, wherever the step sits."""

from __future__ import annotations

from typing import Any

import pytest
from trioflow.runtime import (
    AgentStep,
    ConfigurationError,
    Pipeline,
    RetryPolicy,
    Runtime,
    Step,
    step,
)
from trioflow.runtime.agents import FakeModel
from trioflow.testing import StubAgent, agent_steps, assert_ran, swap_agent


def model(name: str, respond: Any = None) -> FakeModel:
    def answer(text: object) -> str:
        return f"{name}({text})"

    return FakeModel(name, respond=respond or answer, latency_s=(0.0, 0.0))


@step
async def shout(text: str) -> str:
    return text.upper()


@step
async def split(routed: dict[str, Any]) -> list[str]:
    """The router's outputs, and a second item, for the map to go over."""
    return [*routed.values(), "second"]


def build() -> Pipeline:
    """A pipeline with a step of every kind that holds agents."""
    checks = Step.parallel(
        "checks",
        {
            "fast": AgentStep("lint", model("lint")),
            "slow": AgentStep("audit", model("audit")) >> AgentStep("sign", model("sign")),
        },
    )
    loop = Step.loop_until(
        "refine", AgentStep("polish", model("polish")), lambda output, context: True, max_loops=2
    )
    each = Step.map_over("each", AgentStep("item", model("item")))
    pick = Step.branch_on(
        "pick",
        lambda data, context: "short" if len(data) < 5 else "other",
        {"short": AgentStep("brief", model("brief"))},
        default=AgentStep("long", model("long")),
    )
    route = Step.router(
        "route", model("router", respond=lambda _: "a"), {"a": AgentStep("ra", model("ra"))}
    )
    nested = (AgentStep("inner", model("inner")) >> shout).as_step("nest")
    draft = AgentStep(
        "draft",
        model("draft"),
        fallback=AgentStep("backup", model("backup")),
        retry=RetryPolicy(max_attempts=1),
    )
    return (draft >> checks >> loop >> nested >> pick >> route >> split >> each).named("everything")


def test_agent_steps_lists_every_agent_step_with_its_path() -> None:
    assert [(path, spec.name) for path, spec in agent_steps(build())] == [
        ("main/0:draft", "draft"),
        ("main/0:draft/fallback:backup", "backup"),
        ("main/1:checks/fast", "lint"),
        ("main/1:checks/slow/0:audit", "audit"),
        ("main/1:checks/slow/1:sign", "sign"),
        ("main/2:refine/loop[*]", "polish"),
        ("main/3:nest/0:inner", "inner"),
        ("main/3:nest/1:shout", "shout"),
        ("main/4:pick/short", "brief"),
        ("main/4:pick/default", "long"),
        ("main/5:route/router", "router"),
        ("main/5:route/a", "ra"),
        ("main/6:split", "split"),
        ("main/7:each/item[*]", "item"),
    ]


@pytest.mark.parametrize(
    ("which", "path"),
    [
        ("draft", "main/0:draft"),
        ("backup", "main/0:draft/fallback:backup"),
        ("sign", "main/1:checks/slow/1:sign"),
        ("main/1:checks/fast", "main/1:checks/fast"),
        ("1:checks/fast", "main/1:checks/fast"),
        ("main/2:refine/loop[2]", "main/2:refine/loop[*]"),
        ("polish", "main/2:refine/loop[*]"),
        ("shout", "main/3:nest/1:shout"),
        ("brief", "main/4:pick/short"),
        ("main/4:pick/default", "main/4:pick/default"),
        ("router", "main/5:route/router"),
        ("ra", "main/5:route/a"),
        ("main/7:each/item[0]", "main/7:each/item[*]"),
    ],
)
def test_swap_replaces_exactly_one_agent(which: str, path: str) -> None:
    original = build()
    stub = StubAgent(["stubbed"])

    swapped = swap_agent(original, which, stub)

    before = dict(agent_steps(original))
    after = dict(agent_steps(swapped))
    assert list(after) == list(before)
    changed = [key for key in after if after[key].agent is not before[key].agent]
    assert changed == [path]
    assert after[path].agent is stub
    # Everything else about the step is kept.
    assert after[path].name == before[path].name
    assert after[path].retry == before[path].retry
    assert after[path].fallback is before[path].fallback
    assert swapped.name == original.name
    assert swapped.context_type is original.context_type


async def test_a_swapped_pipeline_runs_the_stub(trioflow_runtime: Runtime) -> None:
    pipeline = model_pipeline()
    review = StubAgent(["looks good"])

    result = await trioflow_runtime.run(swap_agent(pipeline, "review", review), "trio")

    assert result.output == "looks good"
    assert review.inputs == ["draft(trio)"]
    await assert_ran(result, trioflow_runtime, ["draft", "review"])
    # The pipeline it came from still calls the model.
    again = await trioflow_runtime.run(pipeline, "trio")
    assert again.output == "review(draft(trio))"


async def test_a_stub_inside_a_parallel_branch(trioflow_runtime: Runtime) -> None:
    pipeline = build()
    stub = StubAgent(["audited by the stub"])

    result = await trioflow_runtime.run(swap_agent(pipeline, "audit", stub), "hi")

    assert result.success
    assert result.step("checks").output == {
        "fast": "lint(draft(hi))",
        "slow": "sign(audited by the stub)",
    }
    assert stub.inputs == ["draft(hi)"]


def model_pipeline() -> Pipeline:
    return AgentStep("draft", model("draft")) >> AgentStep("review", model("review"))


def test_an_unknown_name_lists_the_agent_steps() -> None:
    with pytest.raises(ConfigurationError) as caught:
        swap_agent(model_pipeline(), "critic", StubAgent([]))
    assert str(caught.value) == (
        "pipeline 'pipeline' has no agent step named 'critic'; its agent steps: draft, review"
    )


def test_a_name_used_twice_asks_for_the_path() -> None:
    pipeline = AgentStep("draft", model("a")) >> Step.parallel(
        "twice", {"x": AgentStep("draft", model("b"))}
    )
    with pytest.raises(ConfigurationError) as caught:
        swap_agent(pipeline, "draft", StubAgent([]))
    assert str(caught.value) == (
        "2 agent steps of pipeline 'pipeline' are named 'draft' "
        "(main/0:draft, main/1:twice/x): give the path of the one to swap"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("main/1:checks", "'main/1:checks' is a ParallelStep, not an agent step: it has no agent"),
        ("main/3:nest", "'main/3:nest' is a PipelineStep, not an agent step: it has no agent"),
        (
            "main/1:checks/slow",
            "'main/1:checks/slow' is a Pipeline, not an agent step: it has no agent",
        ),
        (
            "main/1:checks/fast/0:lint",
            "path 'main/1:checks/fast/0:lint': no step '0:lint' here",
        ),
        ("main/1:review", "path 'main/1:review': no step '1:review' here"),
        (
            "main/1:checks/medium/0:lint",
            "path 'main/1:checks/medium/0:lint': no step 'medium' here",
        ),
        (
            "main/0:draft/fallback:other",
            "path 'main/0:draft/fallback:other': no step 'fallback:other' here",
        ),
        ("main/2:refine/0:polish", "path 'main/2:refine/0:polish': no step '0:polish' here"),
        ("main", "'main' names the whole pipeline, not one of its steps"),
    ],
)
def test_a_path_that_names_no_agent_step(path: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        swap_agent(build(), path, StubAgent([]))
    assert str(caught.value) == message


def test_swap_needs_a_pipeline_and_an_agent() -> None:
    with pytest.raises(TypeError, match=r"^swap_agent needs a Pipeline, got 'draft'$"):
        swap_agent("draft", "draft", StubAgent([]))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"has no async 'run' method"):
        swap_agent(model_pipeline(), "draft", object())  # type: ignore[arg-type]
