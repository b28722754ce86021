"""Values come back from a resume as what they were: pydantic field types, Counters, subclasses.

Each pipeline pauses after a step whose output is the value, then is
resumed from a new runtime over the same store: the step is replayed from
its record, and the next step receives the value as it was written.
"""

from __future__ import annotations

import collections
import pathlib
from typing import Any

import pydantic
from trioflow.persistence import RunStore
from trioflow.runtime import Pipeline, Step, open_runtime


class Source(pydantic.BaseModel):
    url: pydantic.HttpUrl
    path: pathlib.Path


class Tag(str):
    pass


def paused_after(produce: Any, output_type: Any, received: list[Any]) -> Pipeline:
    """``make`` (declared to return ``output_type``) >> ``keep`` >> a pause."""

    async def make(data: str) -> Any:
        return produce()

    async def keep(value: Any) -> str:
        received.append(value)
        return "kept"

    return Pipeline.of(
        Step.from_callable(make, name="make", input_type=str, output_type=output_type),
        Step.from_callable(keep, name="keep"),
        Step.human_in_the_loop("ok", "OK?", bool),
        name="kept",
    )


async def resumed_value(store: RunStore, produce: Any, output_type: Any) -> tuple[list[Any], Any]:
    """What the step after ``make`` received, and ``make``'s output replayed by a resume."""
    received: list[Any] = []
    pipeline = paused_after(produce, output_type, received)
    async with open_runtime(store=store) as first:
        paused = await first.run(pipeline, "go")
    async with open_runtime(store=store) as second:
        result = await second.resume(paused.run_id, True, pipeline=pipeline)
    return received, result.step("make").output


async def test_a_model_with_pydantic_field_types_is_stored_and_comes_back(store: RunStore) -> None:
    source = Source(url=pydantic.HttpUrl("https://example.org/x"), path=pathlib.Path("/tmp/a"))
    received, replayed = await resumed_value(store, lambda: source, Source)

    assert received == [source]
    assert (type(replayed), replayed) == (Source, source)
    assert type(replayed.path) is pathlib.PosixPath


async def test_a_counter_is_a_counter_after_a_resume(store: RunStore) -> None:
    received, replayed = await resumed_value(
        store, lambda: collections.Counter("aab"), collections.Counter[str]
    )

    assert type(replayed) is collections.Counter
    assert (replayed["a"], replayed["missing"]) == (2, 0)
    assert received == [collections.Counter("aab")]


async def test_a_str_subclass_fails_its_step_naming_it(store: RunStore) -> None:
    async with open_runtime(store=store) as runtime:
        result = await runtime.run(paused_after(lambda: Tag("x"), Tag, []), "go")

    assert (result.status.value, result.error) == (
        "failed",
        "step 'main/0:make' produced a value that cannot be stored: step 'main/0:make'.output: "
        f"cannot store a value of type {__name__}:Tag, a subclass of str: it would come back as "
        "a plain str; register it with "
        "trioflow.persistence.register_type(cls, unstructure, structure)",
    )
