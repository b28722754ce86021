"""``>>`` accepts an output type exactly when it is a subtype of the next step's input.

One table of accepted and one of refused joins, each checked through ``>>``
on two typed steps; then the output type of a step annotated with the
``Completion[T]`` and ``WithPatch[T]`` wrappers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NewType, Optional, Union

import pytest
from trioflow.runtime import (
    AgentStep,
    Completion,
    InputTypeError,
    Pipeline,
    PipelineTypeError,
    Runtime,
    Step,
    Usage,
    WithPatch,
    step,
)
from trioflow.runtime.agents import StubAgent

UserId = NewType("UserId", str)
AdminId = NewType("AdminId", UserId)


class Animal:
    pass


class Dog(Animal):
    pass


def typed(name: str, input_type: Any, output_type: Any) -> AgentStep:
    return AgentStep(name, StubAgent([None]), input_type=input_type, output_type=output_type)


def join(produced: Any, expected: Any) -> Pipeline:
    return typed("first", Any, produced) >> typed("second", expected, Any)


ACCEPTED = [
    (Literal["yes", "no"], str),
    (Literal[1, 2], int),
    (Literal[True], bool),
    (Literal[True], int),  # bool is an int
    (Literal["a"], Literal["a", "b"]),
    (Literal["a", 1], str | int),
    (Literal["a"], Optional[str]),  # noqa: UP045 (the typing spelling is what users write too)
    (Annotated[str, "meta"], str),
    (str, Annotated[str, "meta"]),
    (Annotated[Literal["x"], "meta"], str),
    (UserId, str),
    (UserId, UserId),
    (AdminId, UserId),
    (AdminId, str),
    (UserId, str | None),
    (int | bool, int),
    (Union[Literal["a"], UserId], str),  # noqa: UP007
    (Dog, Animal),
    (Dog | None, Animal | None),
    (str | None, str | None),
    (str | None, Optional[str]),  # noqa: UP045
    (None, str | None),
    (None, None),
    (str, str | int),
    (list[Literal["a", "b"]], list[str]),
    (list[Dog], list[Animal]),
    (list[str], Sequence[str]),
    (tuple[str, int], tuple[str, int]),
    (tuple[Literal["a"], Dog], tuple[str, Animal]),
    (tuple[str, str], tuple[str, ...]),
    (tuple[UserId, ...], tuple[str, ...]),
    (dict[str, Dog], dict[str, Animal]),
    (dict[Literal["k"], int], Mapping[str, int]),
    (list[int], list),  # a bare generic says nothing about its items
    (list, list[int]),
    (Counter[str], Mapping[str, int]),
    (Any, int),
    (int, Any),
    (int, object),
]

REFUSED = [
    (str, int),
    (str | None, str),
    (Optional[str], str),  # noqa: UP045
    (None, str),
    (Literal[1], str),
    (Literal["a", 1], str),
    (Literal["c"], Literal["a", "b"]),
    (Literal[1], Literal[True]),
    (str, Literal["a"]),
    (str, UserId),
    (UserId, AdminId),
    (Annotated[str, "meta"], int),
    (Animal, Dog),
    (int | str, int),
    (list[str], list[int]),
    (list[str | None], list[str]),
    (list[Literal[1]], list[str]),
    (Sequence[str], list[str]),
    (tuple[str, ...], tuple[str, str]),
    (tuple[str, str, str], tuple[str, str]),
    (tuple[str, int], tuple[str, str]),
    (dict[str, int], dict[str, str]),
    (Mapping[str, int], dict[str, int]),
]


@pytest.mark.parametrize(("produced", "expected"), ACCEPTED, ids=repr)
def test_an_output_that_is_a_subtype_of_the_next_input_is_accepted(
    produced: Any, expected: Any
) -> None:
    pipeline = join(produced, expected)

    assert [s.name for s in pipeline.steps] == ["first", "second"]


@pytest.mark.parametrize(("produced", "expected"), REFUSED, ids=repr)
def test_an_output_that_does_not_fit_the_next_input_is_refused(
    produced: Any, expected: Any
) -> None:
    with pytest.raises(PipelineTypeError) as raised:
        join(produced, expected)

    assert str(raised.value).startswith("step 'first' outputs ")
    assert " but the next step 'second' expects " in str(raised.value)


def test_the_reported_literal_case_composes() -> None:
    @step
    async def decide(text: str) -> Literal["yes", "no"]:
        return "yes" if text else "no"

    @step
    async def shout(text: str) -> str:
        return text.upper()

    assert (decide >> shout).output_type is str


async def test_a_literal_first_step_checks_the_run_input(rt: Runtime) -> None:
    @step
    async def choose(answer: Literal["yes", "no"]) -> str:
        return answer

    result = await rt.run(choose, "yes")
    assert result.output == "yes"
    with pytest.raises(InputTypeError, match="expects Literal\\['yes', 'no'\\], got str: 'maybe'"):
        await rt.run(choose, "maybe")


# -- the wrappers' output type


@step
async def costly(text: str) -> Completion[int]:
    return Completion(len(text), Usage("0.01", 1, 1))


@step
async def patched(text: str) -> WithPatch[list[str]]:
    return WithPatch(text.split(), [])


@step
async def both(text: str) -> Completion[WithPatch[str]]:
    return Completion(WithPatch(text, []), Usage("0.01"))


@step
async def wants_text(text: str) -> str:
    return text


def test_completion_of_t_outputs_t() -> None:
    assert costly.output_type is int
    with pytest.raises(
        PipelineTypeError, match="step 'costly' outputs int but the next step 'wants_text'"
    ):
        costly >> wants_text


def test_with_patch_of_t_outputs_t() -> None:
    assert patched.output_type == list[str]
    with pytest.raises(
        PipelineTypeError,
        match=r"step 'patched' outputs list\[str\] but the next step 'wants_text' expects str",
    ):
        patched >> wants_text


def test_a_completion_of_a_patch_outputs_the_inner_type() -> None:
    assert both.output_type is str
    assert (both >> wants_text).output_type is str


def test_a_bare_wrapper_outputs_any() -> None:
    @step
    async def bare(text: str) -> Completion:  # type: ignore[type-arg]
        return Completion(text)

    @step
    async def bare_patch(text: str) -> WithPatch:  # type: ignore[type-arg]
        return WithPatch(text, [])

    assert bare.output_type is Any
    assert bare_patch.output_type is Any
    assert (bare >> costly).output_type is int


async def test_a_typed_completion_step_runs_and_outputs_its_value(rt: Runtime) -> None:
    result = await rt.run(costly >> Step.from_callable(double), "abc")

    assert result.output == 6
    assert result.usage.cost_usd == Usage("0.01").cost_usd


async def double(number: int) -> int:
    return number * 2
