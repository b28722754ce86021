"""``resume`` and ``replay`` import a run's pipeline file only while it is unchanged.

The journal keeps the file's path and the sha256 of its bytes. A journal
whose path was changed to point at another file, and a file edited since
the run started, are refused with one line (exit code 2) and nothing is
imported; ``--pipeline FILE:NAME`` names a file the user trusts instead.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest
from cli_in_process import trioflow
from trioflow.runtime._cli._commands import ExitCode

REVIEW = """
from trioflow.runtime import Pipeline, Step, step


@step
async def draft(topic: str) -> str:
    return f"draft about {topic}"


@step
async def publish(approved: bool) -> str:
    return "published" if approved else "shelved"


approve = Step.human_in_the_loop("approve", "Publish the draft?", bool)
review = Pipeline.of(draft, approve, publish, name="review")
"""

#: Imports write a marker next to the file, then define the same pipeline.
ATTACKER = (
    """
from pathlib import Path

Path(__file__).with_name("attacker-was-imported").write_text("yes")
"""
    + REVIEW
)

RUN_ID = re.compile(r"run: ([0-9a-f]{32})")


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(REVIEW)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def paused_run(flow: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert trioflow("run", f"{flow}:review", "--input", "trio", "--db", db) == ExitCode.PAUSED
    [run_id] = set(RUN_ID.findall(capsys.readouterr().out))
    return str(run_id)


def completed_run(flow: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> str:
    run_id = paused_run(flow, db, capsys)
    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.OK
    capsys.readouterr()
    return run_id


def tamper_target(db: Path, run_id: str, target: str) -> None:
    """Point the journaled run at another file, as someone editing the journal would."""
    with sqlite3.connect(db) as connection:
        changed = connection.execute(
            "UPDATE runs SET payload = json_set(payload, '$.fields.target', ?) WHERE run_id = ?",
            (target, run_id),
        ).rowcount
    connection.close()
    assert changed == 1


def stored_field(db: Path, run_id: str, field: str) -> object:
    with sqlite3.connect(db) as connection:
        [(value,)] = connection.execute(
            "SELECT json_extract(payload, '$.fields.' || ?) FROM runs WHERE run_id = ?",
            (field, run_id),
        ).fetchall()
    connection.close()
    return value


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_the_journal_keeps_the_absolute_path_and_the_sha256_of_the_file(
    flow: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    assert stored_field(db, run_id, "target") == f"{flow.resolve()}:review"
    assert stored_field(db, run_id, "target_sha256") == hashlib.sha256(REVIEW.encode()).hexdigest()


@pytest.mark.parametrize("command", ["resume", "replay"])
def test_a_journal_pointing_at_another_file_never_imports_it(
    command: str, flow: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = (
        completed_run(flow, db, capsys) if command == "replay" else paused_run(flow, db, capsys)
    )
    attacker = tmp_path / "attacker.py"
    attacker.write_text(ATTACKER)
    tamper_target(db, run_id, f"{attacker}:review")

    arguments = ["--input", "true"] if command == "resume" else []
    assert trioflow(command, run_id, *arguments, "--db", db) == ExitCode.BAD_ARGUMENTS

    assert not (tmp_path / "attacker-was-imported").exists()
    captured = capsys.readouterr()
    assert error_lines(captured.err) == [
        f"error: run {run_id}: its pipeline file {attacker} changed since the run started; "
        "not imported: pass --pipeline FILE:NAME if you trust the file"
    ]
    assert captured.out == ""


def test_an_edited_file_is_refused_without_pipeline_and_used_with_it(
    flow: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    flow.write_text(REVIEW.replace('"published" if', '"PUBLISHED" if'))

    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.BAD_ARGUMENTS
    assert error_lines(capsys.readouterr().err) == [
        f"error: run {run_id}: its pipeline file {flow.resolve()} changed since the run "
        "started; not imported: pass --pipeline FILE:NAME if you trust the file"
    ]
    assert stored_field(db, run_id, "status") == "paused"  # the refusal changed nothing

    resumed = trioflow(
        "resume", run_id, "--input", "true", "--pipeline", f"{flow}:review", "--db", db
    )
    assert resumed == ExitCode.OK
    out = capsys.readouterr().out
    assert "output: PUBLISHED" in out
    assert f"status: completed   cost: $0.00   tokens: 0   run: {run_id}" in out


def test_an_unchanged_file_resumes_and_replays(
    flow: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.OK
    assert "output: published" in capsys.readouterr().out

    assert trioflow("replay", run_id, "--db", db) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        f"replayed run {run_id}: 4 step(s), no model called",
        "same outputs and context as the original",
    ]


def test_replay_of_an_edited_file_needs_pipeline(
    flow: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = completed_run(flow, db, capsys)
    flow.write_text(REVIEW.replace('"published" if', '"PUBLISHED" if'))

    assert trioflow("replay", run_id, "--db", db) == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().out == ""

    replayed = trioflow("replay", run_id, "--pipeline", f"{flow}:review", "--db", db)
    assert replayed == ExitCode.PIPELINE_FAILED
    assert capsys.readouterr().out.splitlines() == [
        f"replayed run {run_id}: 4 step(s), no model called",
        "first difference: main/2:publish: output was 'published', now 'PUBLISHED'",
    ]


def test_a_deleted_file_is_refused(
    flow: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    flow.unlink()

    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.BAD_ARGUMENTS
    assert error_lines(capsys.readouterr().err) == [
        f"error: run {run_id}: its pipeline file {flow.resolve()} no longer exists; "
        "not imported: pass --pipeline FILE:NAME if you trust the file"
    ]


def test_a_run_journaled_without_a_hash_is_not_imported_unchecked(
    flow: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    with sqlite3.connect(db) as connection:  # as an older trioflow wrote it
        connection.execute(
            "UPDATE runs SET payload = json_remove(payload, '$.fields.target_sha256')"
        )
    connection.close()

    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.BAD_ARGUMENTS
    assert error_lines(capsys.readouterr().err) == [
        f"error: run {run_id}: no hash of its pipeline file {flow.resolve()} was journaled "
        "(an older trioflow ran it); not imported: pass --pipeline FILE:NAME if you trust the file"
    ]

    resumed = trioflow(
        "resume", run_id, "--input", "true", "--pipeline", f"{flow}:review", "--db", db
    )
    assert resumed == ExitCode.OK
    assert "output: published" in capsys.readouterr().out


def test_a_bad_pipeline_option_is_one_line(
    flow: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(flow, db, capsys)
    missing = tmp_path / "missing.py"
    code = trioflow(
        "resume", run_id, "--input", "true", "--pipeline", f"{missing}:review", "--db", db
    )
    assert code == ExitCode.BAD_ARGUMENTS
    assert error_lines(capsys.readouterr().err) == [f"error: no such file: {missing}"]
    assert stored_field(db, run_id, "status") == "paused"
