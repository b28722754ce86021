"""Agents: what a step calls to do its work.

An agent is any object with ``async def run(data, *, context, resources)``
returning an output, or a :class:`~trioflow.runtime.Completion` holding the
output and what it cost. Plain async functions become agents through
:class:`CallableAgent`. An agent may also offer
``estimate_usage(data) -> Usage | None``, an upper bound the governor
reserves before the call (strict budgeting).

Two agents for tests and offline examples live here: :class:`StubAgent`
replays a script, :class:`FakeModel` behaves like a priced language model,
deterministically, with no network.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import attrs
import trio

from .._errors import ConfigurationError, ScriptExhausted
from .._money import to_decimal
from .._usage import Completion, Usage


@runtime_checkable
class Agent(Protocol):
    """The one method trioflow calls on an agent.

    Usually ``async def run``; declared as returning an awaitable so that an
    adapter may hand back the coroutine of the function it wraps.
    """

    def run(self, data: Any, *, context: Any, resources: Any) -> Awaitable[Any]: ...


@runtime_checkable
class EstimatingAgent(Agent, Protocol):
    """An agent that can bound its usage before a call (enables strict budgets)."""

    def estimate_usage(self, data: Any) -> Usage | None: ...


def _describe(fn: object) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}"


def data_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of the parameter that receives a step's input, if ``fn`` has one."""
    for parameter in inspect.signature(fn).parameters.values():
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if positional and parameter.name not in ("context", "resources"):
            return parameter.name
    return None


@attrs.frozen(slots=True)
class CallableAgent:
    """Adapts ``async def fn(data, *, context=..., resources=...)`` to :class:`Agent`.

    ``context`` and ``resources`` are passed only when the function's
    signature names them; a function with no positional parameter is
    called without the data.
    """

    fn: Callable[..., Awaitable[Any]]
    #: How the data is passed: by position, by this keyword, or not at all (None).
    data_keyword: str | None
    takes_data: bool
    takes_context: bool
    takes_resources: bool

    @classmethod
    def wrap(cls, fn: Callable[..., Awaitable[Any]], *, where: str) -> CallableAgent:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"{where}: {_describe(fn)} must be an async function (defined with "
                "'async def') so that it runs under trio"
            )
        parameters = inspect.signature(fn).parameters
        name = data_parameter(fn)
        positional_only = (
            name is not None and parameters[name].kind is inspect.Parameter.POSITIONAL_ONLY
        )
        keyword = None if name is None or positional_only else name
        return cls(
            fn, keyword, name is not None, "context" in parameters, "resources" in parameters
        )

    @property
    def fingerprint(self) -> str:
        # The identity too: closures made by one factory share a qualified name.
        return f"{_describe(self.fn)}@{id(self.fn):x}"

    def run(self, data: Any, *, context: Any, resources: Any) -> Awaitable[Any]:
        # The function's own coroutine, not awaited here: one frame less on
        # every waiting step (see Agent.run: the caller awaits what it returns).
        kwargs: dict[str, Any] = {}
        if self.takes_context:
            kwargs["context"] = context
        if self.takes_resources:
            kwargs["resources"] = resources
        if self.data_keyword is not None:  # by name: ``context`` may come first
            kwargs[self.data_keyword] = data
        elif self.takes_data:
            return self.fn(data, **kwargs)
        return self.fn(**kwargs)


@attrs.define
class StubAgent:
    """Returns scripted outputs in order; a scripted exception is raised.

    The script is shared by every run that uses this agent (it is the
    stub's state), so give each concurrent run its own stub. ``inputs``
    records what each call received, so tests can check, for example, that
    feedback reached the next attempt. Calling it more often than scripted
    raises :class:`ScriptExhausted` (a configuration error: never retried).
    """

    outputs: Sequence[object] = attrs.field(converter=tuple)
    inputs: list[Any] = attrs.field(factory=list, init=False)

    @property
    def calls(self) -> int:
        return len(self.inputs)

    async def run(self, data: Any, *, context: Any, resources: Any) -> Any:
        index = len(self.inputs)
        self.inputs.append(data)
        if index >= len(self.outputs):
            raise ScriptExhausted(
                f"StubAgent ran out of outputs: call {index + 1} but only "
                f"{len(self.outputs)} scripted"
            )
        output = self.outputs[index]
        if isinstance(output, BaseException):
            raise output
        return output


_WORDS = [
    "agent",
    "context",
    "pipeline",
    "budget",
    "trace",
    "actor",
    "branch",
    "signal",
    "model",
    "token",
    "draft",
    "review",
    "answer",
    "evidence",
    "claim",
    "source",
    "summary",
    "plan",
    "risk",
    "result",
]


def _price(value: Decimal | int | float | str) -> Decimal:
    price = to_decimal(value, what="price per million tokens")
    if price < 0:
        raise ValueError(f"a price cannot be negative, got {price}")
    return price


def count_tokens(text: str) -> int:
    """A rough, deterministic token count: about four characters a token."""
    return max(1, (len(text) + 3) // 4)


@attrs.frozen
class FakeModel:
    """A deterministic stand-in for a priced language model.

    For each call it derives a random generator from ``seed``, its name and
    the input, so the same input always gives the same latency, tokens and
    cost, whatever else runs concurrently. ``respond`` maps the input to
    the output (default: generated filler text). Input tokens are counted
    from the input, output tokens from the output (at most
    ``max_output_tokens``); cost uses the per-million-token prices.
    """

    name: str = "fake-model"
    respond: Callable[[Any], object] | None = None
    seed: int = 0
    latency_s: tuple[float, float] = (0.05, 0.25)
    input_price_per_mtok: Decimal = attrs.field(default=Decimal(3), converter=_price)
    output_price_per_mtok: Decimal = attrs.field(default=Decimal(15), converter=_price)
    max_output_tokens: int = 512

    @property
    def fingerprint(self) -> str:
        return f"FakeModel({self.name!r}, seed={self.seed})"

    def _rng(self, data: Any) -> random.Random:
        return random.Random(f"{self.seed}|{self.name}|{data!r}")

    def _cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        spent = (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        )
        return spent / Decimal(1_000_000)

    def estimate_usage(self, data: Any) -> Usage:
        """An upper bound: the prompt's tokens and the maximum output."""
        input_tokens = count_tokens(str(data))
        return Usage(
            self._cost(input_tokens, self.max_output_tokens), input_tokens, self.max_output_tokens
        )

    async def run(self, data: Any, *, context: Any, resources: Any) -> Completion[Any]:
        rng = self._rng(data)
        await trio.sleep(rng.uniform(*self.latency_s))
        if self.respond is not None:
            output = self.respond(data)
        else:
            output = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(12, 40)))
        input_tokens = count_tokens(str(data))
        output_tokens = min(count_tokens(str(output)), self.max_output_tokens)
        usage = Usage(self._cost(input_tokens, output_tokens), input_tokens, output_tokens)
        return Completion(output, usage)


def fingerprint_of(agent: object) -> str:
    """What identifies an agent in cache keys.

    An agent's own ``fingerprint`` string when it has one (functions and
    FakeModel do); otherwise its class and identity, so two distinct agent
    objects never share cache entries.
    """
    described = getattr(agent, "fingerprint", None)
    if isinstance(described, str):
        return described
    return f"{_describe(type(agent))}@{id(agent):x}"
