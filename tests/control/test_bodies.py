"""A body of one step runs as that step at the body's path; a longer body runs as a pipeline.

Bodies are parallel branches, map items, router choices, loop iterations
and conditional branches. The rule is checked for every kind through the
paths of the journal's records and the run's actors (its trace).
"""

from __future__ import annotations

from typing import Any

from trioflow.actors import TraceKind
from trioflow.persistence import InMemoryStore
from trioflow.runtime import AgentStep, AppendTo, BaseContext, Pipeline, Runtime, Step, WithPatch
from trioflow.runtime.agents import StubAgent


class Ctx(BaseContext):
    log: list[str] = []


def note(name: str) -> AgentStep:
    """A step that appends its name to ``log`` and passes its input on."""

    async def run(data: Any) -> WithPatch:
        return WithPatch(data, [AppendTo("log", name)])  # type: ignore[list-item]

    return Step.from_callable(run, name=name)


def two_steps(first: str, second: str) -> Pipeline:
    return Pipeline.of(note(first), note(second))


async def record_paths(store: InMemoryStore, run_id: str) -> list[str]:
    return sorted(record.path for record in await store.steps_of(run_id))


async def actor_paths(rt: Runtime, run_id: str) -> list[str]:
    """Every actor of the run but the governor, from its trace's spawn events."""
    events = [timed.event for timed in (await rt.trace(run_id)).events]
    spawned = {e.path for e in events if e.kind is TraceKind.SPAWN}
    return sorted(path for path in spawned if path.startswith("main"))


async def test_parallel_branches(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    pipeline = Pipeline.of(
        Step.parallel("par", {"one": note("a"), "two": two_steps("b", "c")}),
        context_type=Ctx,
    )

    result = await rt.run(pipeline, 1)

    assert result.output == {"one": 1, "two": 1}
    assert isinstance(result.context, Ctx)
    assert result.context.log == ["a", "b", "c"]
    expected = ["main", "main/0:par", "main/0:par/one", "main/0:par/two"]
    expected += ["main/0:par/two/0:b", "main/0:par/two/1:c"]
    assert await record_paths(trioflow_store, result.run_id) == expected
    assert await actor_paths(rt, result.run_id) == expected
    (one, two) = result.step_history[0].step_history
    assert (one.name, one.path, one.step_history) == ("a", "main/0:par/one", ())
    assert (two.name, two.path) == ("two", "main/0:par/two")
    assert [r.path for r in two.step_history] == ["main/0:par/two/0:b", "main/0:par/two/1:c"]


async def test_map_items_and_loop_iterations(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    pipeline = Pipeline.of(
        Step.map_over("each", note("item"), max_concurrency=1),
        Step.loop_until("again", two_steps("x", "y"), lambda out, ctx: len(ctx.log) >= 6),
        context_type=Ctx,
    )

    result = await rt.run(pipeline, [10, 20])

    assert result.output == [10, 20]
    assert isinstance(result.context, Ctx)
    assert result.context.log == ["item", "item", "x", "y", "x", "y"]
    expected = [
        "main",
        "main/0:each",
        "main/0:each/item[0]",
        "main/0:each/item[1]",
        "main/1:again",
        "main/1:again/loop[1]",
        "main/1:again/loop[1]/0:x",
        "main/1:again/loop[1]/1:y",
        "main/1:again/loop[2]",
        "main/1:again/loop[2]/0:x",
        "main/1:again/loop[2]/1:y",
    ]
    assert await record_paths(trioflow_store, result.run_id) == expected
    assert await actor_paths(rt, result.run_id) == expected


async def test_conditional_and_router_choices(rt: Runtime, trioflow_store: InMemoryStore) -> None:
    router = AgentStep("route", StubAgent([["left", "right"]]))
    pipeline = Pipeline.of(
        Step.branch_on("pick", lambda data, ctx: "yes", {"yes": note("y")}),
        Step.router("route", router, {"left": note("l"), "right": two_steps("r1", "r2")}),
        context_type=Ctx,
    )

    result = await rt.run(pipeline, 1)

    assert result.output == {"left": 1, "right": 1}
    assert isinstance(result.context, Ctx)
    assert result.context.log == ["y", "l", "r1", "r2"]
    expected = [
        "main",
        "main/0:pick",
        "main/0:pick/yes",
        "main/1:route",
        "main/1:route/left",
        "main/1:route/right",
        "main/1:route/right/0:r1",
        "main/1:route/right/1:r2",
        "main/1:route/route",
    ]
    assert await record_paths(trioflow_store, result.run_id) == expected
    assert await actor_paths(rt, result.run_id) == expected
