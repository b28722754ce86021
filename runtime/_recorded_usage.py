"""Usage in the journal's records: where a :class:`Usage` becomes record fields and back.

The store knows nothing of :class:`Usage` (``persistence`` imports nothing
of the runtime): its records hold a cost as an exact ``Decimal`` and the
token counts beside it, and the store's one translator
(:mod:`trioflow.persistence._costs`) turns that ``Decimal`` into the
journal's text and back. Nothing is converted here, only regrouped, so a
figure that went in comes back equal, digit for digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trioflow.persistence import LedgerEntry, StepRecord

from ._usage import NO_USAGE, Usage


def usage_of(record: StepRecord | LedgerEntry) -> Usage:
    """What a step's completion record, or one call's ledger entry, says was spent."""
    return Usage(record.cost_usd, record.input_tokens, record.output_tokens)


def ledger_total(entries: Iterable[LedgerEntry]) -> Usage:
    """What a run's ledger entries add up to: everything its calls committed."""
    return sum((usage_of(entry) for entry in entries), NO_USAGE)


def ledger_entry(run_id: str, key: str, path: str, usage: Usage) -> LedgerEntry:
    """The ledger entry of one call at ``path`` under its idempotency ``key``."""
    return LedgerEntry(run_id, key, path, usage.cost_usd, usage.input_tokens, usage.output_tokens)


def run_totals(usage: Usage) -> dict[str, Any]:
    """The fields of a :class:`~trioflow.persistence.RunRecord` that hold a run's ``usage``."""
    return {
        "total_cost_usd": usage.cost_usd,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
