"""Agent steps: one agent call and the policy around it.

An :class:`AgentStep` says which agent to call and everything around the call:
retries, timeout, processors, plugins, validators, fallback, caching,
context updates and per-step limits. Specifications are frozen; building
one checks it (a fallback loop, a sync function, a bad option fail here,
not in the middle of a run).
"""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

import attrs

from .._errors import ConfigurationError, FallbackLoopError
from .._paths import fallback_segment
from .._usage import Completion, Usage, UsageLimits
from ..agents._agents import Agent, CallableAgent, data_parameter, fingerprint_of
from ._checks import Plugin, Processor, Validator
from ._context import WithPatch
from ._retry import RetryPolicy
from ._step import Step
from ._type_checks import type_name

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._step import Child

#: How many fallbacks a chain may hold (a step, its fallback, that one's, ...).
MAX_FALLBACK_DEPTH = 10


@attrs.frozen
class Cache:
    """Opt-in caching of a step's successful results.

    The key covers the step's fingerprint, its input and the values of the
    context fields named here: name every field the step's output depends
    on. Identical calls running at the same time run once.
    """

    context_fields: tuple[str, ...] = attrs.field(default=(), converter=tuple)


def _cache(value: Cache | bool | None) -> Cache | None:
    if value is True:
        return Cache()
    if value is False or value is None:
        return None
    return value


def validate_step_name(instance: object, attribute: object, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigurationError(
            f"a step name must be a non-empty string without '/', got {name!r}"
        )


def _by_priority(plugins: Iterable[Plugin]) -> tuple[Plugin, ...]:
    return tuple(sorted(plugins, key=lambda plugin: -plugin.priority))


@attrs.frozen(eq=False)
class AgentStep(Step):
    """One agent call and the policy around it. See the module docstring."""

    name: str = attrs.field(validator=validate_step_name)
    agent: Agent
    input_type: Any = Any
    output_type: Any = Any
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout_s: float | None = None
    input_processors: tuple[Processor, ...] = attrs.field(default=(), converter=tuple)
    output_processors: tuple[Processor, ...] = attrs.field(default=(), converter=tuple)
    plugins: tuple[Plugin, ...] = attrs.field(default=(), converter=_by_priority)
    validators: tuple[Validator, ...] = attrs.field(default=(), converter=tuple)
    strict_validation: bool = True
    fallback: AgentStep | None = None
    cache: Cache | None = attrs.field(default=None, converter=_cache)
    updates_context: bool = False
    limits: UsageLimits | None = None
    usage_estimate: Usage | None = None

    def __attrs_post_init__(self) -> None:
        if not hasattr(self.agent, "run"):
            raise ConfigurationError(
                f"step {self.name!r}: agent {self.agent!r} has no async 'run' method"
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigurationError(f"step {self.name!r}: timeout_s must be > 0")
        self._check_fallback_chain()

    def _check_fallback_chain(self) -> None:
        seen = [self.name]
        current = self.fallback
        while current is not None:
            if current.name in seen:
                chain = " -> ".join([*seen, current.name])
                raise FallbackLoopError(f"Fallback loop detected: {chain}")
            seen.append(current.name)
            if len(seen) > MAX_FALLBACK_DEPTH + 1:
                raise FallbackLoopError(
                    f"step {self.name!r}: fallback chain longer than {MAX_FALLBACK_DEPTH}"
                )
            current = current.fallback

    def children(self) -> tuple[Child, ...]:
        """Its fallback (if any), at ``fallback:<name>``."""
        if self.fallback is None:
            return ()
        return ((fallback_segment(self.fallback.name), self.fallback),)

    def replace_child(self, segment: str, new: Step | Pipeline) -> AgentStep:
        if not (self.children() and segment == self.children()[0][0]):
            return super().replace_child(segment, new)
        if not isinstance(new, AgentStep):
            raise ConfigurationError(f"step {self.name!r}: a fallback must be an AgentStep")
        return attrs.evolve(self, fallback=new)

    @property
    def fingerprint(self) -> str:
        """What identifies this step's behaviour, for cache keys."""
        described = f"{self.name}|{fingerprint_of(self.agent)}|{type_name(self.output_type)}"
        return hashlib.sha256(described.encode()).hexdigest()[:16]


_WRAPPERS = (Completion, WithPatch)


def from_callable(
    fn: Callable[..., Awaitable[Any]], *, name: str | None = None, **options: Any
) -> AgentStep:
    """An agent step calling the async function ``fn``: see :meth:`Step.from_callable`."""
    step_name = name or getattr(fn, "__name__", "") or type(fn).__name__
    agent = CallableAgent.wrap(fn, where=f"step {step_name!r}")
    input_type, output_type = _annotated_types(fn)
    options.setdefault("input_type", input_type)
    options.setdefault("output_type", output_type)
    return AgentStep(step_name, agent, **options)


def _annotated_types(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """The (input, output) types ``fn``'s annotations declare, ``Any`` where absent."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # unresolvable forward references: leave unchecked
        return Any, Any
    output = _unwrapped(hints.get("return", Any))
    parameter = data_parameter(fn)
    if parameter is None:
        return type(None), output
    return hints.get(parameter, Any), output


def _unwrapped(output: Any) -> Any:
    """The output type a return annotation declares: ``T`` of ``Completion[T]`` or ``WithPatch[T]``.

    A bare ``Completion`` or ``WithPatch`` says nothing about its output: ``Any``.
    """
    while output in _WRAPPERS or typing.get_origin(output) in _WRAPPERS:
        args = typing.get_args(output)
        output = args[0] if args else Any
    return type(None) if output is None else output


@overload
def step(fn: Callable[..., Awaitable[Any]], /) -> AgentStep: ...
@overload
def step(
    *, name: str | None = None, **options: Any
) -> Callable[[Callable[..., Awaitable[Any]]], AgentStep]: ...
def step(
    fn: Callable[..., Awaitable[Any]] | None = None, /, *, name: str | None = None, **options: Any
) -> AgentStep | Callable[[Callable[..., Awaitable[Any]]], AgentStep]:
    """Make a step of an async function: ``@step`` or ``@step(name=..., retry=...)``."""
    if fn is not None:
        return from_callable(fn, name=name, **options)

    def decorate(function: Callable[..., Awaitable[Any]]) -> AgentStep:
        return from_callable(function, name=name, **options)

    return decorate
