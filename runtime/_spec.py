"""What every step specification is: a name, its types, and ``>>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pipeline import Pipeline, StepLike


class StepSpec:
    """Base class of step specifications (agent steps, nested pipelines, control flow).

    A specification is immutable and says what a step does; the runtime
    turns it into an actor when a run reaches it.
    """

    __slots__ = ()

    name: str
    input_type: Any
    output_type: Any

    def __rshift__(self, other: StepLike) -> Pipeline:
        from ._pipeline import Pipeline  # the pipeline module builds on this one

        return Pipeline.of(self) >> other
