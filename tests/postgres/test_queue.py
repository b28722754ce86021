"""The run queue's edges: what ``submit`` stores, what a worker leaves alone, bad requests.

A submitted run is stored ``queued``, unclaimed, with its input and where
its pipeline is. A worker that may not import a run's pipeline (its file
changed since the run was submitted) says so in one line and leaves the
run queued, untouched. A queue needs a PostgreSQL journal: ``submit`` on
an SQLite file is one line, exit code 7, and nothing stored. ``resume
--queue`` needs an answer.
"""

from __future__ import annotations

import datetime
import hashlib
import io
from pathlib import Path

import pytest
import trio
from cli_in_process import trioflow
from trioflow.persistence import PostgresStore, RunRecord
from trioflow.runtime import open_runtime
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime._cli._queue_commands import pipeline_finder
from trioflow.runtime._queue import Worker

T0 = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)

PIPELINES = """
from trioflow.runtime import Pipeline, step


@step
async def shout(text: str) -> str:
    return text.upper()


loud = Pipeline.of(shout, name="loud")
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return path


async def stored(url: str, run_id: str) -> RunRecord:
    async with PostgresStore.open(url) as store:
        return await store.get_run(run_id)


def test_submit_stores_a_queued_unclaimed_run_and_prints_its_id(
    postgres_url: str, pipeline_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"{pipeline_file}:loud"

    assert trioflow("submit", target, "--input", "hi", "--db", postgres_url) == 0

    run_id = capsys.readouterr().out.strip()
    record = trio.run(stored, postgres_url, run_id)
    assert (record.status, record.pipeline_name, record.input) == ("queued", "loud", "hi")
    assert (record.owner, record.epoch, record.revision, record.lease_expires_at) == (
        None,
        0,
        0,
        None,
    )
    assert (record.target, record.target_sha256) == (
        target,
        hashlib.sha256(pipeline_file.read_bytes()).hexdigest(),
    )


async def test_a_worker_leaves_a_run_whose_pipeline_file_changed_queued(
    postgres_url: str, pipeline_file: Path
) -> None:
    target = f"{pipeline_file}:loud"
    sha = hashlib.sha256(await trio.Path(pipeline_file).read_bytes()).hexdigest()
    async with open_runtime(store=postgres_url) as runtime:
        from_file = pipeline_finder()
        run_id = await runtime.submit(
            from_file(RunRecord("x", "loud", "queued", T0, None, target=target, target_sha256=sha)),
            "hi",
            target=target,
            target_sha256=sha,
        )
        await trio.Path(pipeline_file).write_text(PIPELINES + "\n# edited\n")
        said: list[str] = []
        done = trio.Event()

        def say(line: str) -> None:
            said.append(line)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(Worker(runtime, pipeline_finder(), say, poll_s=0.05).run)
            await done.wait()
            nursery.cancel_scope.cancel()

    assert said == [
        f"run {run_id}: not driven: run {run_id}: its pipeline file {pipeline_file} changed "
        "since the run started; not imported: pass --pipeline FILE:NAME if you trust the file"
    ]
    record = await stored(postgres_url, run_id)
    assert (record.status, record.epoch, record.revision) == ("queued", 0, 0)


def test_submit_to_an_sqlite_journal_is_refused_in_one_line(
    tmp_path: Path, pipeline_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"

    code = trioflow("submit", f"{pipeline_file}:loud", "--input", "hi", "--db", db)

    assert code == ExitCode.STORE_ERROR
    assert capsys.readouterr().err == (
        "error: a run queue needs a PostgreSQL journal (--db postgresql://...) that every "
        "worker shares\n"
    )
    assert trioflow("runs", "list", "--db", db, "--json") == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_resume_queue_without_an_answer_is_refused(
    postgres_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))  # nothing piped in

    code = trioflow("resume", "somerun", "--queue", "--db", postgres_url)

    assert code == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().err == (
        "error: --queue stores an answer: give it with --input ANSWER\n"
    )
