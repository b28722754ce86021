"""The command line over a journal: pause, list, resume, show, and the exit codes around them.

Most tests call ``trioflow``'s ``main`` in this process (catching its
``SystemExit``); the last one pauses a run in one real process and resumes
it in another. The pipeline file logs every step it runs to a file next to
itself, so the tests can prove that resuming never re-ran a completed step.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from cli_in_process import trioflow
from trioflow.persistence import RunRecord, SQLiteStore
from trioflow.runtime._cli._commands import ExitCode

PIPELINES = """
from pathlib import Path

from trioflow.runtime import Pipeline, Step, step

LOG = Path(__file__).with_name("executions.log")


def executed(name: str) -> None:
    with LOG.open("a", encoding="utf-8") as log:
        log.write(name + "\\n")


@step
async def draft(topic: str) -> str:
    executed("draft")
    return f"draft about {topic}"


@step
async def publish(approved: bool) -> str:
    executed("publish")
    return "published" if approved else "shelved"


approve = Step.human_in_the_loop("approve", "Publish the draft?", bool)
review = Pipeline.of(draft, approve, publish, name="review")
"""

RESUME_HINT = re.compile(r"^resume with: trioflow resume ([0-9a-f]{32}) --input ANSWER$", re.M)


@pytest.fixture
def target(tmp_path: Path) -> str:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return f"{path}:review"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def executions(tmp_path: Path) -> list[str]:
    log = tmp_path / "executions.log"
    return log.read_text().splitlines() if log.exists() else []


def table_rows(out: str) -> list[list[str]]:
    """The cells of every body row of the tables in ``out``."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def stored_runs(db: Path) -> list[RunRecord]:
    async def read() -> list[RunRecord]:
        async with SQLiteStore.open(db) as store:
            return [await store.get_run(run.run_id) for run in await store.list_runs()]

    return trio.run(read)


def paused_run(target: str, db: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Start the review pipeline, which pauses; the run id its resume hint names."""
    assert trioflow("run", target, "--input", "trio", "--db", db) == ExitCode.PAUSED
    [run_id] = RESUME_HINT.findall(capsys.readouterr().out)
    return str(run_id)


# -- run, list, resume, show ---------------------------------------------------------------


def test_a_run_that_pauses_exits_5_and_prints_how_to_resume(
    target: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", target, "--input", "trio", "--db", db) == ExitCode.PAUSED == 5
    out = capsys.readouterr().out
    [run] = stored_runs(db)
    assert f"resume with: trioflow resume {run.run_id} --input ANSWER" in out
    assert "paused: waiting for input at main/1:approve" in out
    assert f"status: paused   cost: $0.00   tokens: 0   run: {run.run_id}" in out
    assert [row[:2] for row in table_rows(out)] == [
        ["main/0:draft", "ok"],
        ["main/1:approve", "paused"],
    ]
    assert (run.status, run.paused_at) == ("paused", ("main/1:approve",))
    assert executions(tmp_path) == ["draft"]


def test_runs_list_shows_the_paused_run(
    target: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    assert trioflow("runs", "list", "--db", db) == ExitCode.OK
    [row] = table_rows(capsys.readouterr().out)
    assert row[:3] == [run_id, "review", "paused"]


def test_resume_with_an_answer_exits_0_and_prints_the_output(
    target: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.OK
    out = capsys.readouterr().out
    assert "output: published" in out
    assert f"status: completed   cost: $0.00   tokens: 0   run: {run_id}" in out
    assert executions(tmp_path) == ["draft", "publish"]
    [run] = stored_runs(db)
    assert (run.status, run.output) == ("completed", "published")


def test_runs_show_prints_the_completed_steps_and_the_answered_pause(
    target: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    trioflow("resume", run_id, "--input", "true", "--db", db)
    capsys.readouterr()

    assert trioflow("runs", "show", run_id, "--db", db) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"run: {run_id}   pipeline: review" in out
    assert "status: completed   cost: $0.00   tokens: 0" in out
    assert table_rows(out) == [
        ["main/0:draft", "ok", "1", "$0.00", "0"],
        ["main/1:approve", "ok", "1", "$0.00", "0"],
        ["main/2:publish", "ok", "1", "$0.00", "0"],
        ["main", "ok", "1", "$0.00", "0"],
    ]
    assert "pause main/1:approve (answered): Publish the draft?" in out
    assert "output: published" in out


def test_runs_show_of_a_paused_run_shows_the_waiting_pause(
    target: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    assert trioflow("runs", "show", run_id, "--db", db) == ExitCode.OK
    out = capsys.readouterr().out
    assert table_rows(out) == [["main/0:draft", "ok", "1", "$0.00", "0"]]
    assert "pause main/1:approve (waiting): Publish the draft?" in out


def test_an_answer_that_does_not_fit_exits_2_and_the_run_stays_paused(
    target: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    assert trioflow("resume", run_id, "--input", "maybe", "--db", db) == ExitCode.BAD_ARGUMENTS
    assert "the answer for 'main/1:approve' does not fit its schema" in capsys.readouterr().err
    [run] = stored_runs(db)
    assert run.status == "paused"
    assert executions(tmp_path) == ["draft"]


# -- exit codes of runs that cannot go on --------------------------------------------------


def test_resuming_a_completed_run_exits_2(
    target: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(target, db, capsys)
    trioflow("resume", run_id, "--input", "true", "--db", db)
    capsys.readouterr()

    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.BAD_ARGUMENTS == 2
    err = capsys.readouterr().err
    assert f"run '{run_id}' has status 'completed'" in err
    assert executions(tmp_path) == ["draft", "publish"]


@pytest.mark.parametrize(
    "command", [["resume", "0123abcd", "--input", "true"], ["runs", "show", "0123abcd"]]
)
def test_an_unknown_run_exits_6(
    command: list[str], target: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paused_run(target, db, capsys)  # the journal exists and holds another run
    assert trioflow(*command, "--db", db) == ExitCode.UNKNOWN_RUN == 6
    assert "no run with id '0123abcd' is stored" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["runs", "list"], ["runs", "show", "0123abcd"], ["resume", "0123abcd", "--input", "true"]],
)
def test_a_damaged_journal_exits_7_and_stays_in_place_until_recover(
    command: list[str], target: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paused_run(target, db, capsys)
    damaged = b"\0" * 16 + db.read_bytes()[16:]  # SQLite's header overwritten
    db.write_bytes(damaged)

    for _ in range(2):  # the next command meets the damage again: no fresh, empty journal
        assert trioflow(*command, "--db", db) == ExitCode.STORE_ERROR == 7
        assert capsys.readouterr().err == (
            f"error: the journal {db} is damaged (file is not a database); it was left in "
            f"place: `trioflow doctor --db {db}` shows the damage, and --recover "
            "repairs it or moves it aside (nothing is deleted)\n"
        )
        assert db.read_bytes() == damaged
        assert sorted(path.name for path in db.parent.glob("runs.db*")) == ["runs.db"]

    assert trioflow("runs", "list", "--db", db, "--recover") == ExitCode.OK
    [moved] = db.parent.glob("runs.db.corrupt-*")
    assert capsys.readouterr().err == (
        f"--recover: the journal {db} was damaged (file is not a database): its tables cannot "
        f"be read; a fresh journal starts; the damaged file was moved to {moved}\n"
    )
    assert moved.read_bytes() == damaged
    assert stored_runs(db) == []


def test_trioflow_db_is_the_journal_when_db_is_absent(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "from-env" / "runs.db"
    monkeypatch.setenv("TRIOFLOW_DB", str(journal))

    assert trioflow("run", target, "--input", "trio") == ExitCode.PAUSED
    [run_id] = RESUME_HINT.findall(capsys.readouterr().out)
    assert [run.run_id for run in stored_runs(journal)] == [run_id]

    assert trioflow("runs", "list") == ExitCode.OK
    assert [row[:3] for row in table_rows(capsys.readouterr().out)] == [
        [run_id, "review", "paused"]
    ]
    assert trioflow("resume", run_id, "--input", "true") == ExitCode.OK
    assert "output: published" in capsys.readouterr().out
    assert [(run.run_id, run.status) for run in stored_runs(journal)] == [(run_id, "completed")]


# -- two real processes --------------------------------------------------------------------


def trioflow_process(tmp_path: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m trioflow.runtime ARGUMENTS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "trioflow.runtime", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def test_a_run_paused_in_one_process_is_resumed_in_another(
    target: str, db: Path, tmp_path: Path
) -> None:
    started = trioflow_process(tmp_path, "run", target, "--input", "trio", "--db", db)
    assert started.returncode == ExitCode.PAUSED, started.stderr
    [run_id] = RESUME_HINT.findall(started.stdout)
    assert executions(tmp_path) == ["draft"]

    resumed = trioflow_process(tmp_path, "resume", run_id, "--input", "true", "--db", db)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert "output: published" in resumed.stdout
    assert f"status: completed   cost: $0.00   tokens: 0   run: {run_id}" in resumed.stdout
    assert executions(tmp_path) == ["draft", "publish"]
    [run] = stored_runs(db)
    assert (run.run_id, run.status, run.output) == (run_id, "completed", "published")


LIVE_RUN_PIPELINE = """
import sys
from pathlib import Path

import trio
from trioflow.runtime import BaseContext, Pipeline, step

HERE = Path(__file__).parent
LOG = HERE / "executions.log"


def executed(name: str) -> int:
    with LOG.open("a", encoding="utf-8") as log:
        log.write(name + "\\n")
    return len(LOG.read_text().splitlines())


@step
async def draft(topic: str, *, context: BaseContext) -> str:
    if executed("draft") == 1:  # meanwhile, another process tries to take the run over
        command = [sys.executable, "-m", "trioflow.runtime", "resume", context.run_id]
        other = await trio.run_process(
            [*command, "--db", str(HERE / "runs.db"), "--quiet"], capture_stderr=True, check=False
        )
        (HERE / "takeover.exit").write_text(str(other.returncode))
        (HERE / "takeover.stderr").write_bytes(other.stderr)
    return f"draft about {topic}"


@step
async def publish(text: str) -> str:
    executed("publish")
    return text.upper()


pipeline = Pipeline.of(draft, publish, name="live")
"""

LEASE_UNTIL = re.compile(r"holds a lease on it until (\S+) and renews it")


def test_a_resume_of_a_run_a_live_process_drives_is_refused_and_the_run_runs_once(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "live.py"
    path.write_text(LIVE_RUN_PIPELINE)

    first = trioflow_process(tmp_path, "run", f"{path}:pipeline", "--input", "trio", "--db", db)

    [run] = stored_runs(db)
    assert first.returncode == ExitCode.OK, first.stderr
    assert (tmp_path / "takeover.exit").read_text() == str(int(ExitCode.BAD_ARGUMENTS))
    refused = (tmp_path / "takeover.stderr").read_text()
    [until] = LEASE_UNTIL.findall(refused)
    assert refused == (
        f"error: run '{run.run_id}' is running: its owner holds a lease on it until {until} "
        "and renews it while its process is alive. If that process died, resume the run "
        "once the lease has run out\n"
    )
    assert executions(tmp_path) == ["draft", "publish"]  # every step ran once, in one process
    assert (run.status, run.output, run.revision, run.epoch) == (
        "completed",
        "DRAFT ABOUT TRIO",
        1,
        1,
    )
    assert (run.owner, run.lease_expires_at) == (None, None)  # released with the outcome
