"""``trioflow trace RUN``: the tree, ``--json``, filters, ``--perfetto``, and clear errors."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cli_in_process import trioflow
from trioflow.persistence import InMemoryStore, RunRecord, SQLiteStore
from trioflow.runtime import AgentStep, Completion, Pipeline, Step, Usage, open_runtime
from trioflow.runtime._cli._commands import ExitCode


def timed(
    name: str, delay: float, *, cost: str | None = None, fail: str | None = None
) -> AgentStep:
    """A step that takes ``delay`` seconds, then fails with ``fail`` or returns (at ``cost``)."""

    async def run(data: Any) -> Any:
        await trio.sleep(delay)
        if fail is not None:
            raise RuntimeError(fail)
        return name if cost is None else Completion(name, Usage(cost, 10, 5))

    return Step.from_callable(run, name=name)


def record_run(db: Path, pipeline: Pipeline | AgentStep) -> tuple[str, int]:
    """Run ``pipeline`` on a mock clock and journal it in ``db``: its id and trace length.

    The run itself uses an in-memory store: the SQLite store writes from a worker
    thread, and a mock clock's autojump may fire while a write is under way.
    """

    async def go() -> str:
        async with open_runtime(store=memory) as rt:
            return (await rt.run(pipeline, "x")).run_id

    async def copy(run_id: str) -> int:
        trace = await memory.trace_of(run_id)
        async with SQLiteStore.open(db) as journal:
            await journal.create_run(await memory.get_run(run_id))
            for step in await memory.steps_of(run_id):
                await journal.record_step(step)
            for entry in await memory.ledger_of(run_id):
                await journal.record_usage(entry)
            await journal.save_trace(run_id, trace)
        return len(trace)

    memory = InMemoryStore()
    run_id = trio.run(go, clock=trio.testing.MockClock(autojump_threshold=0))
    return run_id, trio.run(copy, run_id)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def failed_run(db: Path) -> tuple[str, int]:
    parallel = Step.parallel("par", {"a": timed("slow", 100), "b": timed("boom", 1, fail="kaput")})
    return record_run(db, timed("draft", 1, cost="0.25") >> parallel)


STARTED = datetime.datetime(2026, 5, 6, tzinfo=datetime.UTC)
BOOM = "step 'main/1:par/b' failed (agent_error): RuntimeError: kaput"
STOPPED = f"branch 'b' failed: {BOOM}"


def test_the_tree_has_one_line_per_actor_with_status_time_usage_and_reason(
    db: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, events = failed_run

    assert trioflow("trace", run_id, "--db", str(db)) == ExitCode.OK

    header, *tree = capsys.readouterr().out.splitlines()
    assert header.startswith(f"run: {run_id}   pipeline: pipeline   status: failed   started: ")
    assert header.endswith(f" UTC   events: {events}")
    assert tree == [
        f"main  failed  3.000s  1 attempt  $0.25  15 tokens  - {STOPPED}",
        "├── main/0:draft  ok  1.000s  1 attempt  $0.25  15 tokens",
        f"└── main/1:par  failed  2.000s  1 attempt  $0.00  0 tokens  - {STOPPED}",
        "    ├── main/1:par/a  cancelled  2.000s  1 attempt  $0.00  0 tokens  - branch 'b' failed",
        f"    └── main/1:par/b  failed  2.000s  2 attempts  $0.00  0 tokens  - {BOOM}",
        "        ├── attempt 1  failed  1.000s  $0.00  0 tokens"
        "  - agent_error: RuntimeError: kaput",
        f"        └── attempt 2  failed  1.000s  $0.00  0 tokens  - {BOOM}",
    ]


def test_failed_and_path_narrow_the_tree(
    db: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = failed_run

    assert trioflow("trace", run_id, "--db", str(db), "--failed", "--path", "main/1:par/a") == 0

    _, *tree = capsys.readouterr().out.splitlines()
    assert tree == [
        f"main  failed  3.000s  1 attempt  $0.25  15 tokens  - {STOPPED}",
        f"└── main/1:par  failed  2.000s  1 attempt  $0.00  0 tokens  - {STOPPED}",
        "    └── main/1:par/a  cancelled  2.000s  1 attempt  $0.00  0 tokens  - branch 'b' failed",
    ]

    assert trioflow("trace", run_id, "--db", str(db), "--path", "main/7") == ExitCode.OK
    _, *rest = capsys.readouterr().out.splitlines()
    assert rest == ["no actor matches"]


def test_json_gives_the_tree_for_machines(
    db: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, events = failed_run

    assert trioflow("trace", run_id, "--db", str(db), "--json", "--path", "main/0") == ExitCode.OK

    document = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in document.items() if k != "started_at"} == {
        "run_id": run_id,
        "pipeline": "pipeline",
        "status": "failed",
        "events": events,
        "nodes": [
            {
                "path": "main",
                "name": "main",
                "kind": "pipeline",
                "status": "failed",
                "start_s": 0.0,
                "end_s": 3.0,
                "duration_s": 3.0,
                "started_at": document["started_at"],
                "attempts": 1,
                "cost_usd": "0.25",
                "tokens": 15,
                "reason": STOPPED,
                "restored": False,
                "children": [
                    {
                        "path": "main/0:draft",
                        "name": "0:draft",
                        "kind": "step",
                        "status": "ok",
                        "start_s": 0.0,
                        "end_s": 1.0,
                        "duration_s": 1.0,
                        "started_at": document["started_at"],
                        "attempts": 1,
                        "cost_usd": "0.25",
                        "tokens": 15,
                        "reason": None,
                        "restored": False,
                        "children": [],
                    }
                ],
            }
        ],
    }


def test_perfetto_writes_a_trace_event_file(
    db: Path, tmp_path: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = failed_run
    target = tmp_path / "run.json"

    assert trioflow("trace", run_id, "--db", str(db), "--perfetto", str(target)) == ExitCode.OK

    assert capsys.readouterr().out == f"wrote {target}: open it in https://ui.perfetto.dev\n"
    events = json.loads(target.read_text(encoding="utf-8"))["traceEvents"]
    threads = [e["args"]["name"] for e in events if e["name"] == "thread_name"]
    assert threads == [
        "governor",
        "main",
        "main/0:draft",
        "main/1:par",
        "main/1:par/a",
        "main/1:par/b",
    ]
    [process] = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert process == f"pipeline (run {run_id})"


# -- bad input: a clear message and its own exit code, never a traceback -----------------------


def assert_error(capsys: pytest.CaptureFixture[str], message: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {message}\n"


def test_an_unknown_run(
    db: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("trace", "nope", "--db", str(db)) == ExitCode.UNKNOWN_RUN
    assert_error(capsys, "no run with id 'nope' is stored")


def test_a_run_without_a_trace(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def store_a_bare_run() -> None:
        async with SQLiteStore.open(db) as store:
            await store.create_run(RunRecord("quiet", "p", "running", STARTED, None))

    trio.run(store_a_bare_run)

    assert trioflow("trace", "quiet", "--db", str(db)) == ExitCode.NO_TRACE == 8
    assert_error(
        capsys,
        "run 'quiet' has no trace (status: running): a trace is stored when a run ends, "
        "pauses or is interrupted, so it is still running or its process was killed",
    )


def test_a_file_that_is_not_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "broken.db"
    db.write_bytes(b"not a database, " * 100)

    assert trioflow("trace", "any", "--db", str(db)) == ExitCode.STORE_ERROR

    assert_error(
        capsys,
        f"{db} is not a trioflow journal (it does not start as an SQLite database); it was left "
        "untouched: give --db (store=) the path of a journal, or of a file that does not exist yet",
    )
    assert db.read_bytes() == b"not a database, " * 100
    assert os.listdir(tmp_path) == ["broken.db"]


def test_a_journal_path_that_is_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("trace", "any", "--db", str(tmp_path)) == ExitCode.STORE_ERROR
    assert_error(
        capsys,
        f"{tmp_path} is not a trioflow journal (not a regular file); it was left untouched: "
        "give --db (store=) the path of a journal, or of a file that does not exist yet",
    )


def test_perfetto_does_not_combine_with_the_tree_options(
    db: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = failed_run
    for extra in (["--json"], ["--failed"], ["--path", "main"]):
        arguments = ["trace", run_id, "--db", str(db), "--perfetto", "out.json", *extra]
        assert trioflow(*arguments) == ExitCode.BAD_ARGUMENTS
        assert_error(
            capsys, "--perfetto writes the whole trace: give it without --json, --failed or --path"
        )


def test_perfetto_to_a_place_that_cannot_be_written(
    db: Path, tmp_path: Path, failed_run: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = failed_run
    target = tmp_path / "no" / "such" / "folder" / "run.json"

    assert trioflow("trace", run_id, "--db", str(db), "--perfetto", str(target)) == 2

    assert_error(capsys, f"cannot write {target}: [Errno 2] No such file or directory: '{target}'")
