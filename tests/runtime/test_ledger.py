"""The run's ledger in memory: one entry per call key, totals at and beneath each path."""

from __future__ import annotations

from decimal import Decimal

from trioflow.runtime import Usage
from trioflow.runtime._ledger import CommittedUsage


def usage(cost: str, tokens: int) -> Usage:
    return Usage(Decimal(cost), tokens, 0)


def test_a_path_total_covers_the_steps_beneath_it_and_nothing_beside_it() -> None:
    ledger = CommittedUsage()
    ledger.settle("main/0:a#1#1", "main/0:a", usage("0.10", 1))
    ledger.settle("main/0:a/fallback:b#1#1", "main/0:a/fallback:b", usage("0.20", 2))
    ledger.settle("main/0:ab#1#1", "main/0:ab", usage("0.40", 4))
    ledger.settle("main/1:par/web/0:x#1#1", "main/1:par/web/0:x", usage("0.80", 8))

    assert ledger.total == usage("1.50", 15)
    assert ledger.under("main") == usage("1.50", 15)
    assert ledger.under("main/0:a") == usage("0.30", 3)  # not main/0:ab: a name, not a path
    assert ledger.at("main/0:a") == usage("0.10", 1)
    assert ledger.under("main/1:par") == ledger.under("main/1:par/web") == usage("0.80", 8)
    assert ledger.under("main/1") == Usage()
    assert ledger.under("elsewhere") == Usage()


def test_a_call_that_runs_again_replaces_its_entry_everywhere() -> None:
    ledger = CommittedUsage()
    ledger.settle("main/0:a#1#1", "main/0:a", usage("0.10", 1))
    ledger.settle("main/0:a#2#1", "main/0:a", usage("0.05", 1))
    ledger.settle("main/0:a#1#1", "main/0:a", usage("0.25", 3))

    assert ledger.total == ledger.under("main") == usage("0.30", 4)
    assert ledger.at("main/0:a") == ledger.under("main/0:a") == usage("0.30", 4)
