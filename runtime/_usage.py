"""Usage (cost and tokens) and the limits placed on it."""

from __future__ import annotations

from decimal import Decimal
from typing import Generic, TypeVar

import attrs

from ._money import format_usd, to_decimal


def _cost(value: Decimal | int | float | str) -> Decimal:
    return to_decimal(value, what="cost_usd")


@attrs.frozen(slots=True)
class Usage:
    """What one call, step or run consumed. Money is exact ``Decimal``."""

    cost_usd: Decimal = attrs.field(default=Decimal(0), converter=_cost)
    input_tokens: int = 0
    output_tokens: int = 0

    def __attrs_post_init__(self) -> None:
        if self.cost_usd < 0 or self.input_tokens < 0 or self.output_tokens < 0:
            raise ValueError(f"usage cannot be negative: {self}")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def is_zero(self) -> bool:
        return not (self.cost_usd or self.input_tokens or self.output_tokens)

    def __add__(self, other: Usage) -> Usage:
        if other.is_zero:  # the common case of steps that report no usage: no new object
            return self
        if self.is_zero:
            return other
        return Usage(
            self.cost_usd + other.cost_usd,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )

    def __str__(self) -> str:
        return f"{format_usd(self.cost_usd)}, {self.total_tokens} tokens"


NO_USAGE = Usage()


def _optional_cost(value: Decimal | int | float | str | None) -> Decimal | None:
    return None if value is None else to_decimal(value, what="total_cost_usd")


@attrs.frozen(slots=True)
class UsageLimits:
    """Upper bounds on cost and tokens; ``None`` means unlimited.

    Used for a whole run (``open_runtime(limits=...)`` or ``rt.run(...,
    limits=...)``) and for one step (``AgentStep(..., limits=...)``). A limit is
    exceeded when the committed total goes *above* it; reaching it exactly
    is allowed.
    """

    total_cost_usd: Decimal | None = attrs.field(default=None, converter=_optional_cost)
    total_tokens: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.total_cost_usd is not None and self.total_cost_usd < 0:
            raise ValueError(f"UsageLimits.total_cost_usd must be >= 0, got {self.total_cost_usd}")
        if self.total_tokens is not None and (
            isinstance(self.total_tokens, bool) or not isinstance(self.total_tokens, int)
        ):
            raise TypeError(f"UsageLimits.total_tokens must be an int, got {self.total_tokens!r}")
        if self.total_tokens is not None and self.total_tokens < 0:
            raise ValueError(f"UsageLimits.total_tokens must be >= 0, got {self.total_tokens}")

    def exceeded_by(self, usage: Usage) -> str | None:
        """The first limit ``usage`` goes above, as in ``Cost limit of $1.20``."""
        if self.total_cost_usd is not None and usage.cost_usd > self.total_cost_usd:
            return f"Cost limit of {format_usd(self.total_cost_usd)}"
        if self.total_tokens is not None and usage.total_tokens > self.total_tokens:
            return f"Token limit of {self.total_tokens}"
        return None


#: The type of the output a :class:`Completion` carries.
T = TypeVar("T")


@attrs.frozen(slots=True)
class Completion(Generic[T]):
    """An agent's output together with what producing it cost.

    Agents return a bare output when they cost nothing, or a
    ``Completion(output, Usage(...))`` when they paid for it. A step
    function annotated ``-> Completion[str]`` outputs ``str``, which is what
    ``>>`` checks its next step against.
    """

    output: T
    usage: Usage = NO_USAGE
