"""What every step specification is: a name, its types, ``>>``, and the constructors.

:class:`Step` is the base of every kind of step (an agent call, a nested
pipeline, parallel branches, a loop, ...), and its static methods build
each kind: ``Step.parallel(...)`` returns a ``ParallelStep``, which is a
``Step``. The kinds' modules build on this one, hence the imports inside
the constructors; each kind's module documents its options.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from ._agent_step import AgentStep
    from ._control import ConditionalStep, LoopStep, MapStep, ParallelStep, RouterStep
    from ._human import HumanStep
    from ._pipeline import Pipeline, StepLike


class Step:
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

    def children(self) -> tuple[Child, ...]:
        """What runs beneath this step: ``(path segment, specification)`` pairs, in order.

        The one traversal of a pipeline: finding the step a path names
        (:func:`trioflow.runtime._paths.locate`), swapping an agent, the
        nesting check, the command line's input type and diagrams all walk
        it, so a new kind of step that runs steps beneath it says which here
        and nowhere else. The segment is the one the runtime gives the
        child's path (see :mod:`trioflow.runtime._paths`); a loop's or map's
        body is one child at ``loop[*]`` or ``item[*]``, as every iteration
        runs the same specification. A body of one step is that step (it
        runs at the body's path, see ``Pipeline.body_spec``); a longer body
        is its pipeline, whose ``children()`` are its numbered steps. A step
        that runs nothing beneath it (this default) has none.
        """
        return ()

    def replace_child(self, segment: str, new: Step | Pipeline) -> Self:
        """A copy of this step whose child at ``segment`` (as :meth:`children` names it) is ``new``.

        Specifications are immutable: this is how a change deep in a
        pipeline (a swapped agent) is rebuilt on the way back up.
        """
        raise KeyError(f"step {self.name!r} has no child at {segment!r}")

    @staticmethod
    def from_callable(
        fn: Callable[..., Awaitable[Any]], *, name: str | None = None, **options: Any
    ) -> AgentStep:
        """A step that calls the async function ``fn``.

        Input and output types come from its annotations unless given;
        ``context=`` and ``resources=`` are passed when it asks for them.
        """
        from ._agent_step import from_callable

        return from_callable(fn, name=name, **options)

    @staticmethod
    def parallel(name: str, branches: Mapping[str, StepLike], **options: Any) -> ParallelStep:
        """Branches run at once; see :func:`trioflow.runtime._dsl._control.parallel`."""
        from ._control import parallel

        return parallel(name, branches, **options)

    @staticmethod
    def loop_until(
        name: str, body: StepLike, exit_condition: Callable[[Any, Any], Any], **options: Any
    ) -> LoopStep:
        """``body`` runs until ``exit_condition(output, context)`` holds."""
        from ._control import loop_until

        return loop_until(name, body, exit_condition, **options)

    @staticmethod
    def branch_on(
        name: str,
        condition: Callable[[Any, Any], Any],
        branches: Mapping[Any, StepLike],
        **options: Any,
    ) -> ConditionalStep:
        """``condition(input, context)`` picks which branch runs."""
        from ._control import branch_on

        return branch_on(name, condition, branches, **options)

    @staticmethod
    def map_over(name: str, body: StepLike, **options: Any) -> MapStep:
        """``body`` runs once per item, a bounded number at once."""
        from ._control import map_over

        return map_over(name, body, **options)

    @staticmethod
    def router(
        name: str, router_agent: Any, branches: Mapping[str, StepLike], **options: Any
    ) -> RouterStep:
        """A router agent picks branch names, which then run at once."""
        from ._control import router

        return router(name, router_agent, branches, **options)

    @staticmethod
    def human_in_the_loop(name: str, message: str, input_schema: Any = Any) -> HumanStep:
        """Pause the run until a person answers; see :mod:`trioflow.runtime._dsl._human`."""
        from ._human import human_in_the_loop

        return human_in_the_loop(name, message, input_schema)


if TYPE_CHECKING:
    #: A child of a specification: the path segment it runs at, and what runs there.
    Child = tuple[str, Step | Pipeline]
