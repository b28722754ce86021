"""``trioflow doctor``: the full check of a journal that opening one never does.

Opening reads only the header and the schema, so it costs the same at any
size; damage elsewhere is found when a command meets it, or here, where
SQLite's ``integrity_check`` reads every page and checks every index
against its table.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from trioflow.persistence import examine_journal

#: How many of the check's problems are printed.
SHOWN_PROBLEMS = 20


def doctor(console: Console, path: Path, busy_timeout_s: float) -> bool:
    """Print what a full check of the journal at ``path`` finds; whether it is sound.

    Raises :class:`~trioflow.persistence.StoreError` when there is no journal
    at ``path`` or it is not one.
    """
    health = examine_journal(path, busy_timeout_s=busy_timeout_s)
    if health.sound:
        console.print(
            f"{path}: sound (every page checked; {health.runs} run(s), "
            f"{health.size_bytes:,} bytes)",
            markup=False,
        )
        return True
    problems = health.problems
    console.print(f"{path}: damaged ({len(problems)} problem(s) found):", markup=False)
    for problem in problems[:SHOWN_PROBLEMS]:
        console.print(f"  {problem}", markup=False)
    if len(problems) > SHOWN_PROBLEMS:
        console.print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more", markup=False)
    console.print(
        "run `trioflow doctor --recover` to repair it, or, if it cannot be repaired, to move "
        "it aside and start a fresh journal (nothing is deleted)",
        markup=False,
    )
    return False
