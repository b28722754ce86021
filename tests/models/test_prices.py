"""Prices: the generated default table, prompt-cache prices, long-context tiers, dated names."""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal

import pytest
from trioflow.runtime.agents import DEFAULT_PRICES, ModelPrice, PriceTable, PriceTier

DATA = pathlib.Path(__file__).parents[2] / "runtime" / "agents" / "_price_data.json"


def test_the_default_table_prices_openai_and_anthropic_models_with_cache_prices() -> None:
    assert DEFAULT_PRICES.price_of("gpt-4o-mini") == ModelPrice("0.15", "0.6", "0.075")
    assert DEFAULT_PRICES.price_of("claude-3-5-haiku-latest") == ModelPrice("0.8", "4", "0.08", "1")
    assert DEFAULT_PRICES.price_of("claude-opus-4-1") == ModelPrice("15", "75", "1.5", "18.75")


def test_the_default_table_says_where_it_comes_from() -> None:
    document = json.loads(DATA.read_text("utf-8"))
    assert document["source"].startswith("genai-prices ")
    assert document["regenerate"] == "tools/update_prices.py"
    assert len(DEFAULT_PRICES.prices) == len(document["prices"])


def test_a_dated_snapshot_costs_what_its_name_costs_only_where_the_data_says_so() -> None:
    assert DEFAULT_PRICES.price_of("claude-sonnet-4-5-20250929") == DEFAULT_PRICES.price_of(
        "claude-sonnet-4-5"
    )
    assert "claude-3-5-haiku-20241022" in DEFAULT_PRICES
    table = PriceTable({"house": (1, 2)})
    assert "house-20250101" not in table
    assert PriceTable({"house": (1, 2)}, frozenset({"house"})).price_of(
        "house-2025-01-01"
    ) == ModelPrice(1, 2)


def test_cached_prompt_tokens_are_priced_at_the_cache_prices() -> None:
    price = ModelPrice("3", "15", "0.3", "3.75")
    # 500 plain prompt tokens, 200 read from the cache, 300 written to it, 100 out.
    cost = price.cost(1000, 100, cache_read_tokens=200, cache_write_tokens=300)
    assert cost == Decimal("0.004185")
    # No cache prices: cached tokens cost the input price.
    assert ModelPrice("3", "15").cost(1000, 100, cache_read_tokens=200) == Decimal("0.0045")


def test_a_long_prompt_pays_the_tier_price_for_every_token() -> None:
    long = ModelPrice("6", "22.5", "0.6", "7.5")
    price = ModelPrice("3", "15", "0.3", "3.75", (PriceTier(200_000, long),))
    assert price.cost(200_000, 1000) == Decimal("0.615")
    assert price.cost(200_001, 1000) == Decimal("1.2225060")
    assert DEFAULT_PRICES.price_of("claude-sonnet-4-5") == price


def test_the_cost_bound_covers_cache_writes_and_tiers() -> None:
    long = ModelPrice("6", "22.5", "0.6", "7.5")
    price = ModelPrice("3", "15", "0.3", "3.75", (PriceTier(200_000, long),))
    # Every prompt token may be a cache write (the dearest input), in the dearest tier reached.
    assert price.cost_bound(1000, 100) == Decimal("0.00525")
    assert price.cost_bound(300_000, 100) == Decimal("2.25225")
    assert ModelPrice("1", "2").cost_bound(1000, 100) == ModelPrice("1", "2").cost(1000, 100)


def test_str_names_the_cache_prices() -> None:
    assert str(ModelPrice("3", "15", "0.3", "3.75")) == (
        "$3.00 in / $15.00 out / $0.30 cache read / $3.75 cache write per million tokens"
    )


def test_a_tier_is_checked_when_it_is_built() -> None:
    with pytest.raises(
        ValueError, match=r"^a tier's threshold must be a token count >= 0, got -1$"
    ):
        PriceTier(-1, ModelPrice(1, 2))
    nested = ModelPrice(1, 2, tiers=(PriceTier(10, ModelPrice(2, 4)),))
    with pytest.raises(ValueError, match=r"^a tier's price must be a ModelPrice without tiers"):
        PriceTier(100, nested)
