"""The DSL: @step, AgentStep, >> composition, type checks at composition and nested paths."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from pydantic import Field
from trioflow.runtime import (
    AgentStep,
    BaseContext,
    Completion,
    ConfigurationError,
    Pipeline,
    PipelineTypeError,
    RetryPolicy,
    Runtime,
    WithPatch,
    step,
)
from trioflow.runtime.agents import StubAgent
from trioflow.runtime.lowlevel import PipelineStep


class Ctx(BaseContext):
    greeting: str = "hi"


@step
async def count(text: str) -> int:
    return len(text)


@step
async def double(number: int) -> int:
    return number * 2


@step
async def describe(number: int) -> str:
    return f"n={number}"


@step
async def shout(text: str) -> str:
    return text.upper()


@step
async def exclaim(text: str) -> str:
    return f"{text}!"


def paths(result: Any) -> list[str]:
    return [entry.path for entry in result.step_history]


# --- building steps ------------------------------------------------------------------------------


def test_step_decorator_reads_types_from_annotations() -> None:
    assert isinstance(count, AgentStep)
    assert count.name == "count"
    assert count.input_type is str
    assert count.output_type is int


def test_wrapper_return_annotations_leave_the_output_unchecked() -> None:
    @step
    async def paid(text: str) -> Completion:
        return Completion(text)

    @step
    async def patching(text: str) -> WithPatch:
        return WithPatch(text, [])

    assert paid.output_type is Any
    assert patching.output_type is Any


def test_step_decorator_with_options() -> None:
    policy = RetryPolicy(max_attempts=4)

    @step(name="custom", retry=policy, timeout_s=2.5)
    async def anything(text: str) -> str:
        return text

    assert anything.name == "custom"
    assert anything.retry is policy
    assert anything.timeout_s == 2.5


def test_sync_function_is_rejected_with_a_clear_message() -> None:
    def not_async(text: str) -> str:
        return text

    with pytest.raises(ConfigurationError, match="must be an async function"):
        step(not_async)
    with pytest.raises(ConfigurationError, match=r"step 'named'.*must be an async function"):
        step(name="named")(not_async)


def test_steps_are_immutable() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        count.name = "other"  # type: ignore[misc]


# --- composition ---------------------------------------------------------------------------------


async def test_step_then_step(rt: Runtime) -> None:
    pipeline = count >> double

    assert isinstance(pipeline, Pipeline)
    assert pipeline.steps == (count, double)
    assert pipeline.input_type is str
    assert pipeline.output_type is int
    result = await rt.run(pipeline, "four")
    assert result.output == 8
    assert paths(result) == ["main/0:count", "main/1:double"]


async def test_pipeline_then_step(rt: Runtime) -> None:
    pipeline = (count >> double) >> describe

    assert pipeline.steps == (count, double, describe)
    result = await rt.run(pipeline, "four")
    assert result.output == "n=8"
    assert paths(result) == ["main/0:count", "main/1:double", "main/2:describe"]


async def test_pipeline_then_pipeline(rt: Runtime) -> None:
    first = count >> double
    second = describe >> shout

    pipeline = first >> second

    assert pipeline.steps == (count, double, describe, shout)
    result = await rt.run(pipeline, "four")
    assert result.output == "N=8"
    assert paths(result) == ["main/0:count", "main/1:double", "main/2:describe", "main/3:shout"]
    # composing made a new pipeline; the parts are unchanged
    assert first.steps == (count, double)
    assert second.steps == (describe, shout)


async def test_step_then_pipeline(rt: Runtime) -> None:
    pipeline = count >> (double >> describe)

    assert pipeline.steps == (count, double, describe)
    assert (await rt.run(pipeline, "ab")).output == "n=4"


def test_type_mismatch_names_both_steps_and_both_types() -> None:
    with pytest.raises(
        PipelineTypeError, match="step 'count' outputs int but the next step 'shout' expects str"
    ):
        count >> shout


def test_type_mismatch_between_pipelines_names_the_joining_steps() -> None:
    with pytest.raises(
        PipelineTypeError,
        match="step 'double' outputs int but the next step 'exclaim' expects str",
    ):
        (count >> double) >> (exclaim >> shout)


def test_type_mismatch_of_generic_types() -> None:
    @step
    async def numbers(text: str) -> list[int]:
        return [len(text)]

    @step
    async def words(items: list[str]) -> str:
        return " ".join(items)

    with pytest.raises(PipelineTypeError, match=r"outputs list\[int\] but .* expects list\[str\]"):
        numbers >> words


def test_compatible_types_compose() -> None:
    @step
    async def maybe(number: int | None) -> str:
        return str(number)

    @step
    async def untyped(value):  # type: ignore[no-untyped-def]
        return value

    assert (count >> maybe).steps == (count, maybe)
    assert (count >> untyped >> shout).steps == (count, untyped, shout)
    assert issubclass(PipelineTypeError, ConfigurationError)


def test_composing_with_something_else_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a step or pipeline"):
        count >> 42  # type: ignore[operator]


# --- nesting -------------------------------------------------------------------------------------


async def test_nested_pipeline_paths(rt: Runtime) -> None:
    inner = (double >> double).named("inner")
    pipeline = count >> inner.as_step() >> describe

    result = await rt.run(pipeline, "abc")

    assert result.output == "n=12"
    assert paths(result) == ["main/0:count", "main/1:inner", "main/2:describe"]
    nested = result.step("inner")
    assert [entry.path for entry in nested.step_history] == [
        "main/1:inner/0:double",
        "main/1:inner/1:double",
    ]
    assert nested.output == 12


async def test_doubly_nested_pipeline_paths(rt: Runtime) -> None:
    a = AgentStep("a", StubAgent(["from a"]))
    b = AgentStep("b", StubAgent(["from b"]))
    inner = Pipeline.of(a, name="inner")
    outer = Pipeline.of(b, inner.as_step(), name="outer")

    result = await rt.run(Pipeline.of(outer.as_step()), "x")

    assert result.output == "from a"
    outer_result = result.step("outer")
    assert outer_result.path == "main/0:outer"
    inner_result = outer_result.step_history[1]
    assert inner_result.path == "main/0:outer/1:inner"
    assert inner_result.step_history[0].path == "main/0:outer/1:inner/0:a"


def test_as_step_takes_the_pipeline_types_and_name() -> None:
    pipeline = (count >> double).named("measure")
    nested = pipeline.as_step()

    assert isinstance(nested, PipelineStep)
    assert nested.name == "measure"
    assert nested.input_type is str
    assert nested.output_type is int
    assert pipeline.as_step("renamed").name == "renamed"
    with pytest.raises(PipelineTypeError, match="step 'measure' outputs int"):
        nested >> shout


# --- context and resources injection -------------------------------------------------------------


async def test_context_and_resources_are_passed_only_when_asked_for(rt: Runtime) -> None:
    seen: dict[str, Any] = {}

    @step
    async def plain(text: str) -> str:
        return text  # would fail with a TypeError if called with context= or resources=

    @step
    async def with_context(text: str, *, context: Ctx) -> str:
        seen["context"] = context
        return f"{context.greeting} {text}"

    @step
    async def with_resources(text: str, *, resources: dict[str, str]) -> str:
        seen["resources"] = resources
        return f"{text} via {resources['db']}"

    @step
    async def with_both(text: str, context: Ctx, resources: dict[str, str]) -> str:
        return f"{text} ({context.greeting}, {resources['db']})"

    resources = {"db": "sqlite"}
    result = await rt.run(
        plain >> with_context >> with_resources >> with_both,
        "there",
        context=Ctx(greeting="hello"),
        resources=resources,
    )

    assert result.output == "hello there via sqlite (hello, sqlite)"
    assert seen["resources"] is resources
    assert seen["context"].greeting == "hello"
    assert seen["context"].run_id == result.run_id


async def test_function_without_a_data_parameter_is_called_without_data(rt: Runtime) -> None:
    @step
    async def start(*, context: Ctx) -> str:
        return context.greeting

    assert start.input_type is type(None)
    result = await rt.run(start >> exclaim, None, context=Ctx(greeting="hey"))

    assert result.output == "hey!"


class Tagged(BaseContext):
    tags: list[str] = Field(default_factory=list)


async def test_context_may_come_before_the_data_parameter(rt: Runtime) -> None:
    @step
    async def greet(context: Tagged, name: str) -> str:
        return f"hello {name} ({len(context.tags)} tags)"

    result = await rt.run(greet, "ann", context=Tagged(tags=["x"]))

    assert result.output == "hello ann (1 tags)"
    assert result.step("greet").attempts == 1
