"""A ``postgresql://`` URL selects the PostgreSQL store: ``store=``, ``--db`` and ``$TRIOFLOW_DB``.

Runs made through any of the three are in the database (read back by a
store of its own), and the commands that read the journal (``runs list``,
``runs show``, ``trace``, ``replay``, ``runs prune``) work on it unchanged.
What only an SQLite file has (``--recover``, ``doctor``) is refused in one
line, and a database that cannot be reached is one line naming it without
its password, exit code 7.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from cli_in_process import trioflow
from trioflow.persistence import PostgresStore, RunSummary
from trioflow.runtime import Pipeline, open_runtime, step
from trioflow.runtime._cli._commands import ExitCode

PIPELINES = """
from trioflow.runtime import Pipeline, step


@step
async def shout(text: str) -> str:
    return text.upper()


@step
async def count(text: str) -> int:
    return len(text)


counted = Pipeline.of(shout, count, name="counted")
"""


@step
async def double(number: int) -> int:
    return number * 2


@pytest.fixture
def target(tmp_path: Path) -> str:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return f"{path}:counted"


def stored(url: str) -> list[RunSummary]:
    async def read() -> list[RunSummary]:
        async with PostgresStore.open(url) as store:
            return await store.list_runs()

    return trio.run(read)


async def test_open_runtime_with_a_postgres_url_keeps_runs_in_the_database(
    postgres_url: str,
) -> None:
    async with open_runtime(store=postgres_url) as runtime:
        assert type(runtime.store) is PostgresStore
        result = await runtime.run(Pipeline.of(double, name="doubling"), 21)

    async with PostgresStore.open(postgres_url) as store:
        [summary] = await store.list_runs()
        steps = await store.steps_of(result.run_id)
    assert (summary.run_id, summary.status, summary.pipeline_name) == (
        result.run_id,
        "completed",
        "doubling",
    )
    assert [(record.path, record.output) for record in steps] == [
        ("main/0:double", 42),
        ("main", 42),
    ]


async def test_trioflow_db_selects_the_postgres_store(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIOFLOW_DB", postgres_url)

    async with open_runtime() as runtime:
        assert type(runtime.store) is PostgresStore
        result = await runtime.run(Pipeline.of(double, name="doubling"), 4)

    assert result.output == 8
    async with PostgresStore.open(postgres_url) as store:
        assert [run.run_id for run in await store.list_runs()] == [result.run_id]


def test_the_command_line_runs_lists_shows_traces_replays_and_prunes_on_postgres(
    postgres_url: str, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", target, "--input", "abc", "--db", postgres_url, "--json") == 0
    ran = json.loads(capsys.readouterr().out)
    assert (ran["status"], ran["output"]) == ("completed", 3)
    run_id = ran["run_id"]
    [summary] = stored(postgres_url)
    assert (summary.run_id, summary.status) == (run_id, "completed")

    assert trioflow("runs", "list", "--db", postgres_url, "--json") == 0
    assert [run["run_id"] for run in json.loads(capsys.readouterr().out)] == [run_id]
    assert trioflow("runs", "show", run_id, "--db", postgres_url, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(s["path"], s["output"]) for s in shown["steps"]] == [
        ("main/0:shout", "ABC"),
        ("main/1:count", 3),
        ("main", 3),
    ]
    assert trioflow("trace", run_id, "--db", postgres_url, "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    assert trioflow("replay", run_id, "--db", postgres_url, "--json") == 0
    assert json.loads(capsys.readouterr().out)["difference"] is None
    assert trioflow("runs", "prune", "--keep-last", "0", "--db", postgres_url) == 0
    capsys.readouterr()
    assert stored(postgres_url) == []


def test_recover_and_doctor_are_refused_for_postgres_in_one_line(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("runs", "list", "--recover", "--db", postgres_url) == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().err == (
        "error: --recover (recover=True) repairs an SQLite journal file; a PostgreSQL journal "
        "is kept sound by its server, so there is nothing to recover\n"
    )
    assert trioflow("doctor", "--db", postgres_url) == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().err == (
        "error: doctor checks the pages of an SQLite journal file; a PostgreSQL journal is "
        "checked by its server (e.g. pg_amcheck)\n"
    )


def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://ada:hunter2@/nowhere?host={tmp_path}"

    assert trioflow("runs", "list", "--db", url) == ExitCode.STORE_ERROR

    ours, libpq = capsys.readouterr().err.split(" cannot be reached: ")
    assert ours == f"error: the PostgreSQL journal user=ada dbname=nowhere host={tmp_path}"
    # The rest is libpq's own words (they vary by its version), on the same line.
    assert f'socket "{tmp_path}/.s.PGSQL.5432"' in libpq
    assert libpq.endswith("?\n")
    assert libpq.count("\n") == 1
    assert "hunter2" not in ours + libpq
