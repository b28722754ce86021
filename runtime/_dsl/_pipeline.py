"""Pipelines: steps in sequence, composed with ``>>``.

``a >> b`` builds a :class:`Pipeline`; ``pipeline >> step`` and
``pipeline >> pipeline`` concatenate. Each join is type-checked: the error
names both steps and both types. ``pipeline.as_step(name)`` nests a whole
pipeline as one step of another; its steps keep their own paths beneath it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .._errors import ConfigurationError
from .._paths import step_segment
from ._agent_step import validate_step_name
from ._context import BaseContext
from ._step import Step
from ._type_checks import check_adjacent


@attrs.frozen(eq=False)
class PipelineStep(Step):
    """A pipeline used as one step of another pipeline."""

    name: str = attrs.field(validator=validate_step_name)
    pipeline: Pipeline

    @property
    def input_type(self) -> Any:
        return self.pipeline.input_type

    @property
    def output_type(self) -> Any:
        return self.pipeline.output_type

    def children(self) -> tuple[Child, ...]:
        """The pipeline's steps: they run directly beneath this step's path."""
        return self.pipeline.children()

    def replace_child(self, segment: str, new: Step | Pipeline) -> PipelineStep:
        return attrs.evolve(self, pipeline=self.pipeline.replace_child(segment, new))


@attrs.frozen(eq=False)
class Pipeline:
    """An immutable sequence of steps; see the module docstring."""

    steps: tuple[Step, ...]
    name: str = "pipeline"
    #: The context model a run of this pipeline starts from when none is given.
    context_type: type[BaseContext] = BaseContext

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ConfigurationError(f"pipeline {self.name!r} has no steps")
        for step in self.steps:
            if not isinstance(step, Step):
                raise ConfigurationError(
                    f"pipeline {self.name!r}: {step!r} is not a step (use AgentStep(...), "
                    "@step or pipeline.as_step(name))"
                )
        for first, second in zip(self.steps, self.steps[1:], strict=False):
            check_adjacent(first.name, first.output_type, second.name, second.input_type)

    @classmethod
    def of(
        cls,
        *steps: Step,
        name: str = "pipeline",
        context_type: type[BaseContext] = BaseContext,
    ) -> Pipeline:
        return cls(tuple(steps), name, context_type)

    @property
    def sole_step(self) -> Step | None:
        """The one step of a one-step pipeline, else ``None``.

        A composite step's body of one step runs as that step, at the body's
        own path (``<parallel>/<branch>``, ``<loop>/loop[i]``), with no
        pipeline level in between: see ``_dispatch.body_actor``.
        """
        return self.steps[0] if len(self.steps) == 1 else None

    @property
    def body_spec(self) -> Step | Pipeline:
        """What runs at this pipeline's path when it is a body: its sole step, or itself."""
        return self.sole_step or self

    def with_body_spec(self, new: Step | Pipeline) -> Pipeline:
        """This body with ``new`` running at its path instead of :attr:`body_spec`."""
        if isinstance(new, Pipeline):
            return new
        return attrs.evolve(self, steps=(new,))

    def children(self) -> tuple[Child, ...]:
        """Its steps, at ``<index>:<name>``; see :meth:`Step.children`."""
        return tuple((step_segment(i, step.name), step) for i, step in enumerate(self.steps))

    def replace_child(self, segment: str, new: Step | Pipeline) -> Pipeline:
        """This pipeline with its step at ``segment`` replaced by the step ``new``."""
        for index, step in enumerate(self.steps):
            if segment == step_segment(index, step.name) and isinstance(new, Step):
                steps = (*self.steps[:index], new, *self.steps[index + 1 :])
                return attrs.evolve(self, steps=steps)
        raise KeyError(f"pipeline {self.name!r} has no step at {segment!r}")

    @property
    def input_type(self) -> Any:
        return self.steps[0].input_type

    @property
    def output_type(self) -> Any:
        return self.steps[-1].output_type

    def __rshift__(self, other: StepLike) -> Pipeline:
        if isinstance(other, Pipeline):
            context_type = _narrower(self, other)
            return Pipeline(self.steps + other.steps, self.name, context_type)
        if isinstance(other, Step):
            return attrs.evolve(self, steps=(*self.steps, other))
        raise ConfigurationError(
            f"cannot compose pipeline {self.name!r} with {other!r}: not a step or pipeline"
        )

    def as_step(self, name: str | None = None) -> PipelineStep:
        """This pipeline as a single step (named ``name``, default its own name)."""
        return PipelineStep(name or self.name, self)

    def named(self, name: str) -> Pipeline:
        return attrs.evolve(self, name=name)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart of this pipeline's steps and the types between them."""
        from ._diagram import diagram, mermaid  # the diagram module builds on this one

        return mermaid(diagram(self))

    def to_dot(self) -> str:
        """The same picture as :meth:`to_mermaid`, in Graphviz's DOT language."""
        from ._diagram import diagram, dot

        return dot(diagram(self))

    def with_context(self, context_type: type[BaseContext]) -> Pipeline:
        """This pipeline, starting runs from ``context_type()`` when no context is given."""
        if not (isinstance(context_type, type) and issubclass(context_type, BaseContext)):
            raise ConfigurationError(
                f"pipeline {self.name!r}: context type {context_type!r} is not a "
                "BaseContext subclass"
            )
        return attrs.evolve(self, context_type=context_type)


def _narrower(first: Pipeline, second: Pipeline) -> type[BaseContext]:
    """The context type of ``first >> second``: the more specific of the two."""
    if issubclass(first.context_type, second.context_type):
        return first.context_type
    if issubclass(second.context_type, first.context_type):
        return second.context_type
    raise ConfigurationError(
        f"pipelines {first.name!r} and {second.name!r} use unrelated context types "
        f"{first.context_type.__name__} and {second.context_type.__name__}"
    )


StepLike = Step | Pipeline

if TYPE_CHECKING:
    from ._step import Child


def as_pipeline(step: StepLike, *, where: str = "this") -> Pipeline:
    """``step`` as a pipeline: a pipeline as is, a single step as a one-step pipeline.

    ``where`` names the caller in the error for anything else.
    """
    if isinstance(step, Pipeline):
        return step
    if isinstance(step, Step):
        return Pipeline.of(step, name=step.name)
    raise ConfigurationError(f"{where} needs a Pipeline or a Step, got {step!r}")
