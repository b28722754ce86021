"""Workload 8, journal growth: the SQLite journal's bytes per step, short chain and long.

What is measured: a ``small``-step and a ``large``-step no-op chain
(workload 1's step, ``Pipeline.of(noop, noop, ...)``), each run once
through ``Runtime.run`` into a fresh :class:`SQLiteStore` in a temporary
folder. Once the store is closed, a separate apsw connection runs ``PRAGMA
wal_checkpoint(TRUNCATE)``, and the journal's size is the database file
plus its ``-wal`` file; the value is that size over the number of steps.
Everything a run writes is counted: the run's record, a step record per
step and one for the pipeline, and the run's trace events.

Why: a journal that grows faster than its chains (a record rewritten whole
at every step, say) would make long pipelines slow and their files large.
Target: constant bytes per step; met when the large chain's bytes per step
is within 1.5x of the small chain's. The small chain's figure includes the
empty journal's fixed size (its schema, a page per table and index), so the
notes also give that size and the marginal bytes of each further step.

In the table the two columns are both trioflow: "trioflow" is the large
chain, "floor" the small one, so the ratio is the one the target judges.
Sizes do not depend on timing, so each chain runs once, under tracemalloc
(for the peak memory), whatever ``--repeats`` says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import apsw
import attrs
import harness
import trio
from harness import Comparison, Report, Samples, Workload
from trioflow.persistence import SQLiteStore
from trioflow.runtime import Pipeline, open_runtime

from workloads.chain import noop

#: The large chain's bytes per step may be at most this many times the small chain's.
TARGET_GROWTH = 1.5
JOURNAL = "journal.db"


@attrs.frozen
class Size:
    small: int = 10
    large: int = 1_000

    def describe(self) -> str:
        return f"a {self.small:,}-step and a {self.large:,}-step chain, one run each"


async def run_chain(steps: int, path: Path) -> None:
    """One run of a ``steps``-long no-op chain into a fresh journal at ``path``."""
    async with SQLiteStore.open(path) as store, open_runtime(store=store) as runtime:
        if steps:
            result = await runtime.run(Pipeline.of(*[noop] * steps), 1)
            if not result.success or result.output != 1:
                raise RuntimeError(f"the {steps}-step chain did not complete: {result.error}")


def journal_bytes(path: Path) -> int:
    """The database and its ``-wal`` file, after a checkpoint on a separate connection."""
    connection = apsw.Connection(str(path))
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    finally:
        connection.close()


def journal_size(steps: int) -> int:
    """The bytes of a fresh journal after one ``steps``-step chain (none: the empty journal)."""
    with tempfile.TemporaryDirectory(prefix="trioflow-bench-") as folder:
        path = Path(folder) / JOURNAL
        trio.run(run_chain, steps, path)
        return journal_bytes(path)


@attrs.define
class Measured:
    """What a run under tracemalloc found: its peak memory, and the journal's bytes."""

    peak_mb: float = 0.0
    size: int = 0


def measure_chain(steps: int) -> Measured:
    """One run of the chain under tracemalloc: the peak, and the journal's bytes."""
    measured = Measured()

    def variant() -> float:
        measured.size = journal_size(steps)
        return measured.size / steps

    measured.peak_mb = harness.peak_mb(variant)
    return measured


def measure(size: Size, repeats: int) -> Report:
    empty = journal_size(0)
    small = measure_chain(size.small)
    large = measure_chain(size.large)
    small_per_step = small.size / size.small
    large_per_step = large.size / size.large
    comparison = Comparison(
        f"bytes/step, {size.large:,} vs {size.small:,} steps",
        Samples((large_per_step,)),
        Samples((small_per_step,)),
        large.peak_mb,
        small.peak_mb,
    )
    growth = comparison.ratio
    marginal = (large.size - small.size) / (size.large - size.small)
    net_small = (small.size - empty) / size.small
    net_large = (large.size - empty) / size.large
    # A short chain may fit in the empty journal's free space: then there is no ratio.
    net_growth = f"{net_large / net_small:.2f}x" if net_small else "none (no page added)"
    return Report(
        8,
        "journal_growth",
        size.describe(),
        comparison,
        f"{growth:.2f}x",
        f"ratio <= {TARGET_GROWTH:.1f}x",
        growth <= TARGET_GROWTH,
        (
            f"journal after the {size.small:,}-step chain: {small.size:,} bytes "
            f"({small_per_step:,.0f} bytes/step); after the {size.large:,}-step chain: "
            f"{large.size:,} bytes ({large_per_step:,.0f} bytes/step).",
            f"empty journal (schema only): {empty:,} bytes; each step beyond the first "
            f"{size.small:,} adds {marginal:,.0f} bytes (what steps cost without the fixed size: "
            f"{net_small:,.0f} bytes/step at {size.small:,} steps, "
            f"{net_large:,.0f} at {size.large:,}, a ratio of {net_growth}).",
            "sizes are whole SQLite pages (database file after PRAGMA wal_checkpoint(TRUNCATE), "
            "plus the -wal file, empty after it); each chain ran once, the sizes do not "
            "depend on timing.",
        ),
    )


WORKLOAD = Workload(8, "journal_growth", measure, default=Size(), tiny=Size(small=2, large=5))
