"""What model tokens cost: a price table per model, per million tokens.

:data:`DEFAULT_PRICES` knows a few well-known OpenAI models (list prices
in US dollars when this was written; check them against your provider's
page). Extend or correct it with :meth:`PriceTable.with_prices`, which
returns a new table (tables are immutable, so one shared by many agents
never changes under them)::

    prices = DEFAULT_PRICES.with_prices({"my-local-model": (0, 0), "gpt-4o": ("2.50", "10")})

Prices are exact ``Decimal`` (a float goes through ``str``, so ``0.15`` is
the 0.15 written). A negative or non-finite price is a ``ValueError`` when
the table is built, never a surprise in the middle of a run.

An agent priced by a table says so with :class:`PricedAgent`: where a cost
limit applies, a step refuses an agent whose model the table does not know
before calling it, whatever estimate the step has.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol, runtime_checkable

import attrs

from .._money import format_usd, to_decimal

PriceValue = Decimal | int | float | str

_MILLION = Decimal(1_000_000)


@runtime_checkable
class PricedAgent(Protocol):
    """An agent whose cost comes from a price table, which may not know its model."""

    def unpriced(self) -> str | None:
        """Why its cost cannot be counted against a cost limit; None when it can."""
        ...


def _per_mtok(value: PriceValue) -> Decimal:
    price = to_decimal(value, what="price per million tokens")
    if price < 0:
        raise ValueError(f"a price cannot be negative, got {price}")
    return price


@attrs.frozen(slots=True)
class ModelPrice:
    """One model's prices in US dollars per million input and output tokens."""

    input_per_mtok: Decimal = attrs.field(converter=_per_mtok)
    output_per_mtok: Decimal = attrs.field(converter=_per_mtok)

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The exact cost of a call that used these tokens."""
        spent = input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok
        return spent / _MILLION

    def __str__(self) -> str:
        return (
            f"{format_usd(self.input_per_mtok)} in / {format_usd(self.output_per_mtok)} out "
            "per million tokens"
        )


def _price_of(model: str, value: ModelPrice | tuple[PriceValue, PriceValue]) -> ModelPrice:
    if not isinstance(model, str) or not model:
        raise ValueError(f"a price table's model names must be non-empty strings, got {model!r}")
    if isinstance(value, ModelPrice):
        return value
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(
            f"the price of {model!r} must be ModelPrice(...) or a pair "
            f"(input, output) per million tokens, got {value!r}"
        )
    try:
        return ModelPrice(*value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the price of {model!r}: {error}") from None


def _prices(
    prices: Mapping[str, ModelPrice | tuple[PriceValue, PriceValue]],
) -> Mapping[str, ModelPrice]:
    if not isinstance(prices, Mapping):
        raise TypeError(f"a price table needs a mapping of model name to price, got {prices!r}")
    checked = {model: _price_of(model, value) for model, value in prices.items()}
    return types.MappingProxyType(checked)


@attrs.frozen(slots=True, repr=False)
class PriceTable:
    """Prices per model name; see the module docstring.

    Model names match exactly, as the agent was configured (``gpt-4o-mini``
    and the snapshot ``gpt-4o-mini-2024-07-18`` are two entries).
    """

    prices: Mapping[str, ModelPrice] = attrs.field(converter=_prices)

    def price_of(self, model: str) -> ModelPrice | None:
        """The model's price, or ``None`` when the table has none."""
        return self.prices.get(model)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """What a call cost, or ``None`` for a model the table does not price."""
        price = self.prices.get(model)
        return None if price is None else price.cost(input_tokens, output_tokens)

    def with_prices(
        self, prices: Mapping[str, ModelPrice | tuple[PriceValue, PriceValue]]
    ) -> PriceTable:
        """A new table: this one's prices, with ``prices`` added or replacing entries."""
        return PriceTable({**self.prices, **_prices(prices)})

    def __contains__(self, model: object) -> bool:
        return model in self.prices

    def __repr__(self) -> str:
        return f"PriceTable({len(self.prices)} models: {', '.join(self.prices)})"


#: List prices of a few OpenAI models (US dollars per million tokens).
DEFAULT_PRICES = PriceTable(
    {
        "gpt-4o": ("2.50", "10.00"),
        "gpt-4o-mini": ("0.15", "0.60"),
        "gpt-4.1": ("2.00", "8.00"),
        "gpt-4.1-mini": ("0.40", "1.60"),
        "gpt-4.1-nano": ("0.10", "0.40"),
        "o3-mini": ("1.10", "4.40"),
        "gpt-3.5-turbo": ("0.50", "1.50"),
    }
)
