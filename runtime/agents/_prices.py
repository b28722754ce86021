"""What model tokens cost: a price table per model, per million tokens.

:data:`DEFAULT_PRICES` is generated from the maintained ``genai-prices``
data (OpenAI, Anthropic, Google and Mistral models; see
``_price_data.json`` for the version and date, and
``tools/update_prices.py`` to refresh it). Extend or correct it with
:meth:`PriceTable.with_prices`, which returns a new table (tables are
immutable, so one shared by many agents never changes under them)::

    prices = DEFAULT_PRICES.with_prices({"my-local-model": (0, 0), "gpt-4o": ("2.50", "10")})

Prices are exact ``Decimal`` (a float goes through ``str``, so ``0.15`` is
the 0.15 written). A negative or non-finite price is a ``ValueError`` when
the table is built, never a surprise in the middle of a run.

Prompt caching. A call's ``input_tokens`` are its whole prompt; the part
read from the provider's prompt cache and the part written to it are
priced at the model's cache read and cache write prices (the input price
where the table has none), the rest at the input price.

Long context. Some models cost more per token once the prompt is long: a
:class:`PriceTier` gives the prices of every token of a call whose prompt
has more than its ``above_input_tokens`` (the providers' threshold rule).

An agent priced by a table says so with :class:`PricedAgent`: where a cost
limit applies, a step refuses an agent whose model the table does not know
before calling it, whatever estimate the step has.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import types
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import attrs

from .._money import format_usd, to_decimal

PriceValue = Decimal | int | float | str

_MILLION = Decimal(1_000_000)

#: A dated snapshot of a model name: ``NAME-YYYYMMDD`` or ``NAME-YYYY-MM-DD``.
_SNAPSHOT = re.compile(r"\A(?P<name>.+)-(?:\d{8}|\d{4}-\d{2}-\d{2})\Z")


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


def _optional_per_mtok(value: PriceValue | None) -> Decimal | None:
    return None if value is None else _per_mtok(value)


def _tiers(value: Iterable[PriceTier]) -> tuple[PriceTier, ...]:
    tiers = tuple(value)
    if not all(isinstance(tier, PriceTier) for tier in tiers):
        raise ValueError(f"tiers must be PriceTier(...) values, got {tiers!r}")
    return tuple(sorted(tiers, key=lambda tier: tier.above_input_tokens))


@attrs.frozen(slots=True)
class ModelPrice:
    """One model's prices in US dollars per million tokens (see the module docstring)."""

    input_per_mtok: Decimal = attrs.field(converter=_per_mtok)
    output_per_mtok: Decimal = attrs.field(converter=_per_mtok)
    #: Prompt tokens read from the prompt cache (None: the input price).
    cache_read_per_mtok: Decimal | None = attrs.field(default=None, converter=_optional_per_mtok)
    #: Prompt tokens written to the prompt cache (None: the input price).
    cache_write_per_mtok: Decimal | None = attrs.field(default=None, converter=_optional_per_mtok)
    #: Prices for long prompts, by threshold.
    tiers: tuple[PriceTier, ...] = attrs.field(default=(), converter=_tiers)

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Decimal:
        """The exact cost of a call: ``input_tokens`` is the whole prompt, cached parts included."""
        price = self._for_prompt(input_tokens)
        cached = cache_read_tokens + cache_write_tokens
        spent = (
            max(0, input_tokens - cached) * price.input_per_mtok
            + cache_read_tokens * price._cache_read
            + cache_write_tokens * price._cache_write
            + output_tokens * price.output_per_mtok
        )
        return spent / _MILLION

    def cost_bound(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The most a call of at most these tokens can cost, however much of it is cached."""
        reached = [tier.price for tier in self.tiers if tier.above_input_tokens < input_tokens]
        prices = [self, *reached]
        per_input = max(max(p.input_per_mtok, p._cache_read, p._cache_write) for p in prices)
        per_output = max(p.output_per_mtok for p in prices)
        return (input_tokens * per_input + output_tokens * per_output) / _MILLION

    @property
    def _cache_read(self) -> Decimal:
        return self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok

    @property
    def _cache_write(self) -> Decimal:
        if self.cache_write_per_mtok is None:
            return self.input_per_mtok
        return self.cache_write_per_mtok

    def _for_prompt(self, input_tokens: int) -> ModelPrice:
        applies = [tier for tier in self.tiers if input_tokens > tier.above_input_tokens]
        return applies[-1].price if applies else self

    def __str__(self) -> str:
        described = f"{format_usd(self.input_per_mtok)} in / {format_usd(self.output_per_mtok)} out"
        if self.cache_read_per_mtok is not None:
            described += f" / {format_usd(self.cache_read_per_mtok)} cache read"
        if self.cache_write_per_mtok is not None:
            described += f" / {format_usd(self.cache_write_per_mtok)} cache write"
        return f"{described} per million tokens"


@attrs.frozen(slots=True)
class PriceTier:
    """The prices of every token of a call whose prompt has more than ``above_input_tokens``."""

    above_input_tokens: int = attrs.field()
    price: ModelPrice = attrs.field()

    @above_input_tokens.validator
    def _check_threshold(self, _: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"a tier's threshold must be a token count >= 0, got {value!r}")

    @price.validator
    def _check_price(self, _: object, value: object) -> None:
        if not isinstance(value, ModelPrice) or value.tiers:
            raise ValueError(f"a tier's price must be a ModelPrice without tiers, got {value!r}")


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


def _names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


@attrs.frozen(slots=True, repr=False)
class PriceTable:
    """Prices per model name; see the module docstring.

    Model names match exactly, as the agent was configured, except that a
    dated snapshot (``NAME-YYYYMMDD`` or ``NAME-YYYY-MM-DD``) of a name in
    ``dated`` costs what the name costs (when the table has no entry of its
    own): the generated table lists there the names whose snapshots
    genai-prices prices the same.
    """

    prices: Mapping[str, ModelPrice] = attrs.field(converter=_prices)
    dated: frozenset[str] = attrs.field(default=frozenset(), converter=_names)

    def price_of(self, model: str) -> ModelPrice | None:
        """The model's price, or ``None`` when the table has none."""
        price = self.prices.get(model)
        if price is None:
            snapshot = _SNAPSHOT.match(model)
            if snapshot is not None and snapshot.group("name") in self.dated:
                price = self.prices.get(snapshot.group("name"))
        return price

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Decimal | None:
        """What a call cost, or ``None`` for a model the table does not price."""
        price = self.price_of(model)
        if price is None:
            return None
        return price.cost(
            input_tokens,
            output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
        )

    def cost_bound(self, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """The most a call of at most these tokens can cost (None: the model has no price)."""
        price = self.price_of(model)
        return None if price is None else price.cost_bound(input_tokens, output_tokens)

    def with_prices(
        self, prices: Mapping[str, ModelPrice | tuple[PriceValue, PriceValue]]
    ) -> PriceTable:
        """A new table: this one's prices, with ``prices`` added or replacing entries."""
        return PriceTable({**self.prices, **_prices(prices)}, self.dated)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price_of(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self.prices)} models)"


def _row_price(row: Mapping[str, Any]) -> ModelPrice:
    tiers = [
        PriceTier(tier["above_input_tokens"], _row_price({**tier, "tiers": []}))
        for tier in row["tiers"]
    ]
    return ModelPrice(row["input"], row["output"], row["cache_read"], row["cache_write"], tiers)


def _generated_table() -> PriceTable:
    """The table ``tools/update_prices.py`` generated from genai-prices."""
    data = importlib.resources.files(__package__).joinpath("_price_data.json").read_text("utf-8")
    document = json.loads(data)
    prices = {name: _row_price(row) for name, row in document["prices"].items()}
    return PriceTable(prices, frozenset(document["dated"]))


#: List prices of OpenAI, Anthropic, Google and Mistral models (US dollars per million tokens).
DEFAULT_PRICES = _generated_table()
