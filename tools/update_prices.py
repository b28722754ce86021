"""Regenerate ``runtime/agents/_price_data.json`` from the ``genai-prices`` package.

Why generated rather than a dependency: genai-prices (maintained prices of
many providers, exact ``Decimal`` values, dated model names) depends on
``httpx2``, a second HTTP stack beside the ``httpx`` the model agents use,
for a price auto-update trioflow does not want at run time. So its data is
turned into a JSON table, committed, and refreshed with this script::

    python3 -m venv /tmp/prices && /tmp/prices/bin/pip install genai-prices
    /tmp/prices/bin/python tools/update_prices.py

The table holds, for every model name of the providers in :data:`PROVIDERS`,
the price genai-prices gives that exact name today: input, output, cache
read and cache write (5-minute) per million tokens, and the long-context
tiers (a price that applies to every token once the prompt is longer than
its threshold). A name whose dated snapshots (``NAME-YYYYMMDD``,
``NAME-YYYY-MM-DD``) genai-prices prices the same is listed in ``dated``.
Other price keys (audio, images, searches, 1-hour cache writes) are left
out: the agents never ask for them.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import pathlib
import re
import sys
from decimal import Decimal
from typing import Any

from genai_prices import data, types

#: The providers whose model names are their own (an open model hosted by many
#: providers has a price per host, which a table keyed by name cannot hold).
#: The first provider to price a name wins.
PROVIDERS = ("anthropic", "openai", "google", "mistral")

KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")

TARGET = pathlib.Path(__file__).resolve().parent.parent / "runtime" / "agents" / "_price_data.json"

#: A dated snapshot of each form, to ask whether genai-prices prices it as the name.
_SNAPSHOT_DAYS = ("-20990101", "-2099-01-01")

_NAME = re.compile(r"\A[a-z][a-z0-9.:-]*[a-z0-9]\Z")
_PARTIAL_DATE = re.compile(r"-\d{4}\Z")


def candidate_names(clause: Any) -> set[str]:
    """Every literal name a match clause mentions (checked against the provider later)."""
    if isinstance(clause, types.ClauseOr):
        return set().union(*(candidate_names(part) for part in clause.or_))
    if isinstance(clause, types.ClauseAnd):
        return set().union(*(candidate_names(part) for part in clause.and_))
    for field in ("equals", "starts_with", "contains"):
        value = getattr(clause, field, None)
        if isinstance(value, str):
            return {value.lower()}
    regex = getattr(clause, "regex", None)
    if isinstance(regex, str):
        literal = re.match(r"\^((?:[a-z0-9-]|\\\.)+)", regex)
        return {literal.group(1).replace("\\.", ".").rstrip("-")} if literal else set()
    return set()


def price_row(model: Any, when: datetime.datetime) -> dict[str, Any] | None:
    """The model's prices in force at ``when``; None when it has no token prices."""
    prices = model.get_prices(when)
    values = {key: getattr(prices, key) for key in KEYS}
    if values["input_mtok"] is None or values["output_mtok"] is None:
        return None
    tiered = {key: value for key, value in values.items() if isinstance(value, types.TieredPrices)}
    starts = {tuple(tier.start for tier in value.tiers) for value in tiered.values()}
    if len(starts) > 1:
        sys.exit(f"{model.id}: tiers at different thresholds per price: the table cannot hold them")
    row: dict[str, Any] = {key.removesuffix("_mtok"): _base(value) for key, value in values.items()}
    row["tiers"] = [
        {"above_input_tokens": start, **_tier(values, index)}
        for index, start in enumerate(next(iter(starts), ()))
    ]
    return row


def _base(value: Any) -> str | None:
    if value is None:
        return None
    return _text(value.base if isinstance(value, types.TieredPrices) else value)


def _tier(values: dict[str, Any], index: int) -> dict[str, str | None]:
    tier: dict[str, str | None] = {}
    for key, value in values.items():
        price = value.tiers[index].price if isinstance(value, types.TieredPrices) else value
        tier[key.removesuffix("_mtok")] = None if price is None else _text(price)
    return tier


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def table(when: datetime.datetime) -> tuple[dict[str, Any], list[str]]:
    prices: dict[str, Any] = {}
    dated: set[str] = set()
    for provider in (p for p in data.providers if p.id in PROVIDERS):
        for model in provider.models:
            for name in sorted(candidate_names(model.match) | {model.id.lower()}):
                if name in prices or not _NAME.match(name) or _PARTIAL_DATE.search(name):
                    continue
                found = provider.find_model(name)
                row = None if found is None else price_row(found, when)
                if row is None:
                    continue
                prices[name] = row
                if any(provider.find_model(f"{name}{day}") is found for day in _SNAPSHOT_DAYS):
                    dated.add(name)
    return dict(sorted(prices.items())), sorted(dated)


def main() -> None:
    when = datetime.datetime.now(datetime.UTC)
    prices, dated = table(when)
    version = importlib.metadata.version("genai-prices")
    document = {
        "source": f"genai-prices {version}, prices in force on {when.date().isoformat()}",
        "regenerate": "tools/update_prices.py",
        "prices": prices,
        "dated": dated,
    }
    TARGET.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"{TARGET}: {len(prices)} models ({len(dated)} dated) from {document['source']}")


if __name__ == "__main__":
    main()
