"""The crash-point suite: kill the run after every journal write, resume, compare.

For every k from 1 to the number of journal writes of an uninterrupted
run, a subprocess runs the representative pipeline (sequence, loop,
parallel, map-over, human input) and SIGKILLs itself right after the k-th
write. A second process resumes the run to the end. The outcome must equal
the uninterrupted run's: same output, same context, same totals; each step
whose completion record was committed at the kill ran exactly once; each
step that was not ran exactly once after it (and the one that was in
flight ran again with the same idempotency key). It runs on an SQLite
journal and on a PostgreSQL one (each kill point in its own database).
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest

DRIVER = Path(__file__).with_name("crash_driver.py")


class Journals:
    """Where each kill point's journal lives: an SQLite file, or a PostgreSQL database."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, cleanup: ExitStack) -> None:
        self._kind = kind
        self._server = request.getfixturevalue("postgres_server") if kind == "postgres" else None
        self._cleanup = cleanup

    def new(self, folder: Path) -> str:
        if self._server is None:
            return str(folder / "journal.db")
        return self._cleanup.enter_context(self._server.database())

    def committed_paths(self, db: str) -> set[str]:
        """The paths of the step records the journal holds."""
        if self._server is not None:
            with psycopg.connect(db) as connection:
                rows = connection.execute("SELECT path FROM trioflow.steps").fetchall()
            return {path for (path,) in rows}
        connection = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return {path for (path,) in connection.execute("SELECT path FROM steps")}
        finally:
            connection.close()


def _drive(db: str, log: Path, kill_after: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DRIVER), db, str(kill_after)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**_environ(), "CRASH_LOG": str(log)},
    )


def _environ() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "TRIOFLOW_DB"}


def _executions(log: Path) -> list[tuple[int, str, int, str]]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        pid, path, attempt, key = line.split(" ")
        rows.append((int(pid), path, int(attempt), key))
    return rows


def _reference(
    tmp_path: Path, journals: Journals
) -> tuple[dict[str, Any], list[tuple[int, str, int, str]]]:
    folder = tmp_path / "reference"
    folder.mkdir()
    done = _drive(journals.new(folder), folder / "log", 0)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), _executions(folder / "log")


def _crash_and_resume(
    journals: Journals, at: tuple[Path, str], k: int, reference: dict[str, Any], leaves: set[str]
) -> list[str]:
    """Kill after write ``k``, resume, and list every way the outcome differs.

    ``at``: the kill point's folder (for its log) and journal.
    """
    folder, db = at
    log = folder / "log"
    crashed = _drive(db, log, k)
    if crashed.returncode != -signal.SIGKILL:
        return [f"k={k}: the run was not killed (exit {crashed.returncode}): {crashed.stderr}"]
    committed = journals.committed_paths(db)
    before = _executions(log)
    resumed = _drive(db, log, 0)
    if resumed.returncode != 0:
        return [f"k={k}: resuming failed: {resumed.stderr}"]
    outcome = json.loads(resumed.stdout)
    problems = [
        f"k={k}: {field} is {outcome[field]!r}, uninterrupted {reference[field]!r}"
        for field in ("status", "output", "context", "cost", "tokens")
        if outcome[field] != reference[field]
    ]
    after = _executions(log)[len(before) :]
    problems += _exactly_once(k, leaves, committed, before, after)
    return problems


def _exactly_once(
    k: int,
    leaves: set[str],
    committed: set[str],
    before: list[tuple[int, str, int, str]],
    after: list[tuple[int, str, int, str]],
) -> list[str]:
    ran_before = collections.Counter(path for _, path, _, _ in before)
    ran_after = collections.Counter(path for _, path, _, _ in after)
    keys_before = {path: key for _, path, _, key in before}
    keys_after = {path: key for _, path, _, key in after}
    problems = []
    for path in sorted(leaves):
        if path in committed:
            if (ran_before[path], ran_after[path]) != (1, 0):
                problems.append(
                    f"k={k}: committed step {path} ran {ran_before[path]} time(s) before the "
                    f"crash and {ran_after[path]} after (expected 1 and 0)"
                )
            continue
        if ran_after[path] != 1 or ran_before[path] > 1:
            problems.append(
                f"k={k}: uncommitted step {path} ran {ran_before[path]} time(s) before the crash "
                f"and {ran_after[path]} after (expected at most 1 and exactly 1)"
            )
        elif ran_before[path] == 1 and keys_before[path] != keys_after[path]:
            problems.append(
                f"k={k}: step {path} ran again with idempotency key {keys_after[path]!r}, "
                f"not {keys_before[path]!r}"
            )
    return problems


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_every_crash_point_resumes_to_the_uninterrupted_outcome(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    with ExitStack() as cleanup:
        _every_crash_point(tmp_path, Journals(kind, request, cleanup))


def _every_crash_point(tmp_path: Path, journals: Journals) -> None:
    reference, executions = _reference(tmp_path, journals)
    assert reference["status"] == "completed"
    assert reference["output"] == ("approved=True total=4 log=a,b,c,item a,item b,item c")
    leaves = {path for _, path, _, _ in executions}
    assert len(executions) == len(leaves)  # uninterrupted: every step ran once
    writes = reference["writes"]
    places = {}  # made here, not in the pool's threads: one kill point's folder and journal
    for k in range(1, writes + 1):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        places[k] = (folder, journals.new(folder))
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(
                lambda k: _crash_and_resume(journals, places[k], k, reference, leaves),
                range(1, writes + 1),
            )
        )
    problems = [problem for outcome in outcomes for problem in outcome]
    assert problems == [], "\n".join(problems)
