"""Control-flow step specifications: parallel, loop, conditional, map-over, router.

Each is an immutable description checked when it is built; the runtime
runs each as a supervisor actor whose children (the branches, iterations
or items, each a pipeline) run under its nursery. They are built with the
``Step.parallel``, ``Step.loop_until``, ``Step.branch_on``,
``Step.map_over`` and ``Step.router`` constructors.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pydantic

from .._errors import ConfigurationError
from .._paths import item_segment, iteration_segment
from ._agent_step import AgentStep, validate_step_name
from ._context import BaseContext
from ._merge import Merge, MergeStrategy, merge_strategy
from ._pipeline import Pipeline, StepLike, as_pipeline
from ._step import Step

if TYPE_CHECKING:
    from ._step import Child

#: The path segment of a conditional step's default branch.
DEFAULT_BRANCH = "default"
#: How many items of a map-over run at once unless ``max_concurrency`` says otherwise.
DEFAULT_MAP_CONCURRENCY = 16


class OnBranchFailure(enum.StrEnum):
    """What a failing branch (or map item) does to its siblings."""

    #: Cancel the running siblings at once; the step fails naming the branch.
    PROPAGATE = "propagate"
    #: Let the others finish; the step succeeds if any branch did.
    IGNORE = "ignore"


def _branch_name(name: str, *, owner: str) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigurationError(
            f"step {owner!r}: a branch name must be a non-empty string without '/', got {name!r}"
        )
    return name


def _branches(branches: Mapping[str, StepLike], *, owner: str) -> tuple[tuple[str, Pipeline], ...]:
    if not isinstance(branches, Mapping):
        raise ConfigurationError(f"step {owner!r}: branches must be a mapping of name to step")
    return tuple(
        (
            _branch_name(name, owner=owner),
            as_pipeline(branch, where=f"branch {name!r} of {owner!r}"),
        )
        for name, branch in branches.items()
    )


def _failure_policy(value: OnBranchFailure | str, *, owner: str) -> OnBranchFailure:
    try:
        return OnBranchFailure(value)
    except ValueError:
        raise ConfigurationError(
            f"step {owner!r}: on_branch_failure must be 'propagate' or 'ignore', got {value!r}"
        ) from None


def _merge(value: MergeStrategy | str, *, owner: str) -> MergeStrategy:
    try:
        return merge_strategy(value)
    except ValueError as error:
        raise ConfigurationError(f"step {owner!r}: {error}") from None


@attrs.frozen(eq=False)
class ParallelStep(Step):
    """Branches run at once from one context snapshot; output maps name to output."""

    name: str = attrs.field(validator=validate_step_name)
    branches: tuple[tuple[str, Pipeline], ...]
    merge: MergeStrategy = Merge.ERROR_ON_CONFLICT
    on_branch_failure: OnBranchFailure = OnBranchFailure.PROPAGATE
    context_include_keys: tuple[str, ...] | None = None
    input_type: Any = Any
    output_type: Any = dict[str, Any]

    def children(self) -> tuple[Child, ...]:
        """Its branches, each at its name."""
        return _named_bodies(self.branches)

    def replace_child(self, segment: str, new: Step | Pipeline) -> ParallelStep:
        return attrs.evolve(self, branches=_replaced_body(self.branches, segment, new))


@attrs.frozen(eq=False)
class LoopStep(Step):
    """A body pipeline run until ``exit_condition(output, context)`` holds."""

    name: str = attrs.field(validator=validate_step_name)
    body: Pipeline
    exit_condition: Callable[[Any, Any], Any]
    max_loops: int = 5
    initial_input_mapper: Callable[[Any, Any], Any] | None = None
    iteration_input_mapper: Callable[[Any, Any, int], Any] | None = None
    output_mapper: Callable[[Any, Any], Any] | None = None
    input_type: Any = Any
    output_type: Any = Any

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_loops, bool) or not isinstance(self.max_loops, int):
            raise ConfigurationError(f"step {self.name!r}: max_loops must be an int")
        if self.max_loops < 1:
            raise ConfigurationError(f"step {self.name!r}: max_loops must be >= 1")
        if not callable(self.exit_condition):
            raise ConfigurationError(f"step {self.name!r}: exit_condition must be callable")

    def children(self) -> tuple[Child, ...]:
        """Its body, at ``loop[*]``: every iteration runs it."""
        return ((iteration_segment(None), self.body.body_spec),)

    def replace_child(self, segment: str, new: Step | Pipeline) -> LoopStep:
        return attrs.evolve(self, body=self.body.with_body_spec(new))


@attrs.frozen(eq=False)
class ConditionalStep(Step):
    """``condition(input, context)`` picks the branch to run."""

    name: str = attrs.field(validator=validate_step_name)
    condition: Callable[[Any, Any], Any]
    branches: tuple[tuple[Any, Pipeline], ...]
    default: Pipeline | None = None
    input_type: Any = Any
    output_type: Any = Any

    def children(self) -> tuple[Child, ...]:
        """Its branches at their keys as text, then its default (if any) at ``default``."""
        keyed = _named_bodies(tuple((str(key), body) for key, body in self.branches))
        default = () if self.default is None else ((DEFAULT_BRANCH, self.default.body_spec),)
        return keyed + default

    def replace_child(self, segment: str, new: Step | Pipeline) -> ConditionalStep:
        if segment == DEFAULT_BRANCH and self.default is not None:
            return attrs.evolve(self, default=self.default.with_body_spec(new))
        keyed = tuple((str(key), body) for key, body in self.branches)
        bodies = [body for _, body in _replaced_body(keyed, segment, new)]
        keys = [key for key, _ in self.branches]
        return attrs.evolve(self, branches=tuple(zip(keys, bodies, strict=True)))


@attrs.frozen(eq=False)
class MapStep(Step):
    """The body runs once per item, up to ``max_concurrency`` at once; output in item order."""

    name: str = attrs.field(validator=validate_step_name)
    body: Pipeline
    items_from: str | None = None
    max_concurrency: int = DEFAULT_MAP_CONCURRENCY
    on_item_failure: OnBranchFailure = OnBranchFailure.PROPAGATE
    merge: MergeStrategy = Merge.ERROR_ON_CONFLICT
    input_type: Any = Any
    output_type: Any = list[Any]

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int):
            raise ConfigurationError(f"step {self.name!r}: max_concurrency must be an int")
        if self.max_concurrency < 1:
            raise ConfigurationError(f"step {self.name!r}: max_concurrency must be >= 1")

    def children(self) -> tuple[Child, ...]:
        """Its body, at ``item[*]``: every item runs it."""
        return ((item_segment(None), self.body.body_spec),)

    def replace_child(self, segment: str, new: Step | Pipeline) -> MapStep:
        return attrs.evolve(self, body=self.body.with_body_spec(new))


@attrs.frozen(eq=False)
class RouterStep(Step):
    """A router step picks branch names; the chosen branches run as a parallel step."""

    name: str = attrs.field(validator=validate_step_name)
    chooser: AgentStep
    branches: tuple[tuple[str, Pipeline], ...]
    merge: MergeStrategy = Merge.ERROR_ON_CONFLICT
    on_branch_failure: OnBranchFailure = OnBranchFailure.PROPAGATE
    input_type: Any = Any
    output_type: Any = dict[str, Any]

    def children(self) -> tuple[Child, ...]:
        """Its chooser, at the chooser's name, then its branches at theirs."""
        return ((self.chooser.name, self.chooser), *_named_bodies(self.branches))

    def replace_child(self, segment: str, new: Step | Pipeline) -> RouterStep:
        if segment == self.chooser.name and isinstance(new, AgentStep):
            return attrs.evolve(self, chooser=new)
        return attrs.evolve(self, branches=_replaced_body(self.branches, segment, new))


def _named_bodies(branches: tuple[tuple[str, Pipeline], ...]) -> tuple[Child, ...]:
    return tuple((name, body.body_spec) for name, body in branches)


def _replaced_body(
    branches: tuple[tuple[str, Pipeline], ...], segment: str, new: Step | Pipeline
) -> tuple[tuple[str, Pipeline], ...]:
    """``branches`` with the body named ``segment`` running ``new``."""
    for index, (name, body) in enumerate(branches):
        if name == segment:
            replaced = (name, body.with_body_spec(new))
            return (*branches[:index], replaced, *branches[index + 1 :])
    raise KeyError(f"no branch {segment!r}")


def parallel(
    name: str,
    branches: Mapping[str, StepLike],
    *,
    merge: MergeStrategy | str = Merge.ERROR_ON_CONFLICT,
    on_branch_failure: OnBranchFailure | str = OnBranchFailure.PROPAGATE,
    context_include_keys: tuple[str, ...] | list[str] | None = None,
) -> ParallelStep:
    return ParallelStep(
        name,
        _branches(branches, owner=name),
        _merge(merge, owner=name),
        _failure_policy(on_branch_failure, owner=name),
        None if context_include_keys is None else tuple(context_include_keys),
    )


def loop_until(
    name: str,
    body: StepLike,
    exit_condition: Callable[[Any, Any], Any],
    *,
    max_loops: int = 5,
    initial_input_mapper: Callable[[Any, Any], Any] | None = None,
    iteration_input_mapper: Callable[[Any, Any, int], Any] | None = None,
    output_mapper: Callable[[Any, Any], Any] | None = None,
) -> LoopStep:
    return LoopStep(
        name,
        as_pipeline(body, where=f"loop {name!r}"),
        exit_condition,
        max_loops,
        initial_input_mapper,
        iteration_input_mapper,
        output_mapper,
    )


def branch_on(
    name: str,
    condition: Callable[[Any, Any], Any],
    branches: Mapping[Any, StepLike],
    *,
    default: StepLike | None = None,
) -> ConditionalStep:
    if not isinstance(branches, Mapping):
        raise ConfigurationError(f"step {name!r}: branches must be a mapping of key to step")
    segments = [_branch_name(str(key), owner=name) for key in branches]
    # Each branch runs at <path>/<str(key)>: two keys must not share a path.
    if len(set(segments)) != len(segments):
        raise ConfigurationError(f"step {name!r}: branch keys {list(branches)!r} share a path")
    if default is not None and DEFAULT_BRANCH in segments:
        raise ConfigurationError(
            f"step {name!r}: a key named 'default' would share its path with the default branch"
        )
    return ConditionalStep(
        name,
        condition,
        tuple(
            (key, as_pipeline(branch, where=f"branch {key!r} of {name!r}"))
            for key, branch in branches.items()
        ),
        None if default is None else as_pipeline(default, where=f"default of {name!r}"),
    )


def map_over(
    name: str,
    body: StepLike,
    *,
    items_from: str | None = None,
    max_concurrency: int = DEFAULT_MAP_CONCURRENCY,
    on_item_failure: OnBranchFailure | str = OnBranchFailure.PROPAGATE,
    merge: MergeStrategy | str = Merge.ERROR_ON_CONFLICT,
) -> MapStep:
    return MapStep(
        name,
        as_pipeline(body, where=f"map {name!r}"),
        items_from,
        max_concurrency,
        _failure_policy(on_item_failure, owner=name),
        _merge(merge, owner=name),
    )


def router(
    name: str,
    router_agent: Any,
    branches: Mapping[str, StepLike],
    *,
    merge: MergeStrategy | str = Merge.ERROR_ON_CONFLICT,
    on_branch_failure: OnBranchFailure | str = OnBranchFailure.PROPAGATE,
) -> RouterStep:
    chooser = (
        router_agent if isinstance(router_agent, AgentStep) else AgentStep("router", router_agent)
    )
    if chooser.name in branches:
        raise ConfigurationError(
            f"step {name!r}: a branch may not be named {chooser.name!r} like the router step"
        )
    return RouterStep(
        name,
        chooser,
        _branches(branches, owner=name),
        _merge(merge, owner=name),
        _failure_policy(on_branch_failure, owner=name),
    )


def restrict_context(
    context: BaseContext, keys: tuple[str, ...] | None, *, step: str
) -> BaseContext:
    """The snapshot a branch sees: only ``keys`` (and ``run_id``) carried over."""
    if keys is None:
        return context
    model = type(context)
    unknown = [key for key in keys if key not in model.model_fields]
    if unknown:
        raise ConfigurationError(
            f"step {step!r}: context_include_keys names unknown field(s) {unknown} "
            f"of {model.__name__}"
        )
    kept = {key: getattr(context, key) for key in (*keys, "run_id")}
    try:
        return model.model_validate(kept)
    except pydantic.ValidationError as error:
        raise ConfigurationError(
            f"step {step!r}: context_include_keys leaves out required field(s) of "
            f"{model.__name__}: {error.errors()[0]['loc']}"
        ) from None
