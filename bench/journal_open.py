"""How long opening a journal takes, by its size (a standalone measurement, not a workload).

    python bench/journal_open.py                  # a 1 MB and a 1 GB journal in /tmp
    python bench/journal_open.py --sizes 1 600    # other sizes, in MB

Each journal is built once, by bulk inserts of step rows (kilobyte
payloads that are never decoded), and kept in ``/tmp`` for the next run;
then ``SQLiteStore.open`` is entered and left ``--repeats`` times and the
median time to enter is printed. Opening reads the header and the schema,
never the whole file, so the times should not grow with the size (before
12.8 it ran ``quick_check``: 2.2 s at 619 MB).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import apsw
import trio
from trioflow.persistence import SQLiteStore

#: Step rows per run, each with a 1,000-byte payload.
ROWS_PER_RUN = 1000
PAYLOAD = "x" * 1000


async def _create(path: Path) -> None:
    async with SQLiteStore.open(path):  # the schema, by trioflow itself
        pass


def build(path: Path, megabytes: int) -> None:
    """A journal of about ``megabytes`` at ``path``, unless one is there already."""
    if path.exists():
        return
    trio.run(_create, path)
    connection = apsw.Connection(str(path))
    connection.execute("PRAGMA synchronous = OFF")
    for run in range(megabytes * 1024 // ROWS_PER_RUN + 1):
        run_id = f"run{run:06d}"
        connection.execute("BEGIN")
        connection.execute(
            "INSERT INTO runs (run_id, pipeline_name, status, started_at, payload)"
            " VALUES (?, 'p', 'completed', ?, '{}')",
            (run_id, f"2026-01-01T00:00:{run:06d}"),
        )
        connection.executemany(
            "INSERT INTO steps (run_id, path, seq, payload) VALUES (?, ?, ?, ?)",
            ((run_id, f"main/{step}:s", step, PAYLOAD) for step in range(ROWS_PER_RUN)),
        )
        connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


async def _open_times(path: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        async with SQLiteStore.open(path):
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1000], metavar="MB")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    arguments = parser.parse_args()
    for megabytes in arguments.sizes:
        path = arguments.folder / f"trioflow-open-bench-{megabytes}mb.db"
        build(path, megabytes)
        times = trio.run(_open_times, path, arguments.repeats)
        print(
            f"{path.stat().st_size / 2**20:,.0f} MB: opening takes "
            f"{statistics.median(times) * 1000:.1f} ms (median of {arguments.repeats}; "
            f"min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
        )


if __name__ == "__main__":
    main()
