"""``trioflow runs list`` a page at a time, and ``trioflow runs prune``."""

from __future__ import annotations

import datetime
from pathlib import Path

import apsw
import pytest
import trio
from cli_in_process import trioflow
from trioflow.persistence import CODEC, RunRecord, SQLiteStore
from trioflow.runtime._cli._commands import ExitCode

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)


def make_journal(path: Path, statuses: list[str]) -> None:
    """A journal whose run ``r<N>`` started N days after T0, with the given statuses."""

    async def write() -> None:
        async with SQLiteStore.open(path) as store:
            for n, status in enumerate(statuses):
                started = T0 + datetime.timedelta(days=n)
                await store.create_run(RunRecord(f"r{n}", "p", status, started, input="x"))

    trio.run(write)


def run_ids(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("│ r")]


# -- runs list ------------------------------------------------------------------------------


def test_runs_list_shows_the_newest_page_and_says_how_to_see_older(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, ["completed"] * 7)
    assert trioflow("runs", "list", "--db", str(db), "--limit", "3") == ExitCode.OK
    out = capsys.readouterr().out
    assert run_ids(out) == ["r4", "r5", "r6"]
    assert "runs 5-7 of 7, oldest first; --page 2 for older ones" in out

    assert trioflow("runs", "list", "--db", str(db), "--limit", "3", "--page", "3") == ExitCode.OK
    out = capsys.readouterr().out
    assert run_ids(out) == ["r0"]
    assert "runs 1-1 of 7, oldest first\n" in out

    assert trioflow("runs", "list", "--db", str(db), "--limit", "3", "--page", "4") == ExitCode.OK
    assert "no runs of 7, oldest first" in capsys.readouterr().out


def test_runs_list_all_and_a_short_journal_need_no_footer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, ["completed"] * 4)
    assert trioflow("runs", "list", "--db", str(db), "--all", "--limit", "2") == ExitCode.OK
    out = capsys.readouterr().out
    assert run_ids(out) == ["r0", "r1", "r2", "r3"]
    assert "oldest first" not in out
    assert trioflow("runs", "list", "--db", str(db)) == ExitCode.OK
    out = capsys.readouterr().out
    assert run_ids(out) == ["r0", "r1", "r2", "r3"]
    assert "oldest first" not in out


def test_runs_list_reads_only_its_page_of_a_huge_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """100,000 runs: the listing decodes the 50 it shows and never reads the others.

    Every other run's payload is unreadable on purpose: had the listing
    decoded it, the command would fail or name a damaged row.
    """
    db = tmp_path / "runs.db"
    make_journal(db, [])
    connection = apsw.Connection(str(db))
    with connection:
        rows = []
        for n in range(100_000):
            started = T0 + datetime.timedelta(seconds=n)
            payload = (
                CODEC.encode(RunRecord(f"r{n}", "p", "completed", started, input="x"))
                if n >= 99_950
                else "not json at all"
            )
            rows.append((f"r{n}", "p", "completed", started.isoformat(), payload))
        connection.executemany(
            "INSERT INTO runs (run_id, pipeline_name, status, started_at, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    connection.close()
    assert trioflow("runs", "list", "--db", str(db)) == ExitCode.OK
    out = capsys.readouterr().out
    assert run_ids(out) == [f"r{n}" for n in range(99_950, 100_000)]
    assert "runs 99951-100000 of 100000, oldest first; --page 2 for older ones" in out


@pytest.mark.parametrize("option", ["--limit", "--page"])
def test_runs_list_refuses_a_page_size_or_number_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    assert trioflow("runs", "list", "--db", tmp_path / "runs.db", option, "0") == 2
    assert "must be 1 or more, got 0" in capsys.readouterr().err


# -- runs prune -----------------------------------------------------------------------------

STATUSES = ["completed", "failed", "paused", "running", "interrupted", "usage_limit", "completed"]


def test_prune_by_count_prints_what_it_removes_and_keeps_resumable_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, STATUSES)
    assert trioflow("runs", "prune", "--db", str(db), "--keep-last", "1") == ExitCode.OK
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "removed r0  p  completed  2026-03-01 10:00",
        "removed r1  p  failed  2026-03-02 10:00",
        "removed r5  p  usage_limit  2026-03-06 10:00",
        "removed 3 run(s)",
    ]
    assert trioflow("runs", "list", "--db", str(db)) == ExitCode.OK
    assert run_ids(capsys.readouterr().out) == ["r2", "r3", "r4", "r6"]


def test_prune_dry_run_says_what_would_go_and_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, STATUSES)
    arguments = ("runs", "prune", "--db", str(db), "--status", "paused", "--status", "running")
    assert trioflow(*arguments, "--force", "--dry-run") == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        "would remove r2  p  paused  2026-03-03 10:00",
        "would remove r3  p  running  2026-03-04 10:00",
        "would remove 2 run(s)",
    ]
    assert trioflow("runs", "list", "--db", str(db)) == ExitCode.OK
    assert len(run_ids(capsys.readouterr().out)) == 7
    # Without --force, runs that may go on are never removed.
    assert trioflow(*arguments) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == ["removed 0 run(s)"]


def test_prune_by_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, ["completed", "failed"])
    # Both started in March 2026, long before "now": both are older than a day.
    assert trioflow("runs", "prune", "--db", str(db), "--older-than", "1d") == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[-1] == "removed 2 run(s)"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "say which runs to prune: an age (--older-than), a number to keep (--keep-last)"),
        (("--keep-last", "-2"), "--keep-last must not be negative, got -2"),
        (("--status", "done"), "unknown run status 'done'; choose from cancelled, completed"),
    ],
)
def test_prune_refuses_what_it_cannot_do_in_cli_words(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: tuple[str, ...],
    message: str,
) -> None:
    db = tmp_path / "runs.db"
    make_journal(db, ["completed"])
    assert trioflow("runs", "prune", "--db", str(db), *arguments) == ExitCode.BAD_ARGUMENTS
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert trioflow("runs", "list", "--db", str(db)) == ExitCode.OK
    assert run_ids(capsys.readouterr().out) == ["r0"]


def test_prune_refuses_an_age_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("runs", "prune", "--db", tmp_path / "runs.db", "--older-than", "soon") == 2
    assert "'soon' is not an age: a whole number and a unit, s, m, h, d or w" in (
        capsys.readouterr().err
    )
