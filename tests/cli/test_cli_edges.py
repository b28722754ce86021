"""The command line at its edges: option order, JSON for scripts, CLI words, bad input.

Every test calls ``trioflow``'s ``main`` in this process over a journal in a
temporary directory. Bad input must give one line on standard error saying
what was wrong, exit code 2, and leave the journal as it was.
"""

from __future__ import annotations

import datetime
import io
import json
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
from cli_in_process import trioflow
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import PauseRecord, RunRecord, SQLiteStore, StepRecord
from trioflow.runtime import ConfigurationError, Pipeline, open_runtime, step
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime._cli._loading import module_name_for
from trioflow.runtime.lowlevel import MAX_NESTING_DEPTH

PIPELINES = """
from trioflow.runtime import BaseContext, Pipeline, Step, step


class Ctx(BaseContext):
    topic: str = ""


@step
async def echo(text: str) -> str:
    return text


@step
async def upper(text: str) -> str:
    return text.upper()


@step(updates_context=True)
async def remember(topic: str) -> dict:
    return {"topic": topic}


@step
async def evil(text: str) -> str:
    return text + "\\x1b]0;pwned\\x07\\x1b[2J\\ud800"


@step
async def broken(text: str) -> str:
    raise ValueError("bad \\x1b[31mred")


class Needy(BaseContext):
    owner: str


tag_all = Step.map_over("tag_all", upper)
approve = Step.human_in_the_loop("approve", "Publish the draft?", bool)
note = Step.human_in_the_loop("note", "Any note?", str)
review = Pipeline.of(remember, approve, name="review").with_context(Ctx)
noted = Pipeline.of(echo, note, name="noted")
both = Step.parallel(
    "both",
    {
        "a": Step.human_in_the_loop("a", "First?", bool),
        "b": Step.human_in_the_loop("b", "Second?", bool),
    },
)
needy = Pipeline.of(echo, name="needy").with_context(Needy)
"""


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture(autouse=True)
def empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input as a pipe with nothing in it: no answer, no input."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))


def stored(db: Path) -> list[tuple[RunRecord, list[StepRecord], list[PauseRecord]]]:
    async def read() -> list[tuple[RunRecord, list[StepRecord], list[PauseRecord]]]:
        async with SQLiteStore.open(db) as store:
            return [
                (
                    await store.get_run(run.run_id),
                    await store.steps_of(run.run_id),
                    await store.pauses_of(run.run_id),
                )
                for run in await store.list_runs()
            ]

    return trio.run(read)


def only_run(db: Path) -> RunRecord:
    [(run, _, _)] = stored(db)
    return run


def assert_error(capsys: pytest.CaptureFixture[str], message: str) -> None:
    captured = capsys.readouterr()
    assert captured.err == f"error: {message}\n"


def start_paused(target: str, db: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert trioflow("run", target, "--input", "trio", "--db", db, "--quiet") == ExitCode.PAUSED
    capsys.readouterr()
    return only_run(db).run_id


# -- 13.15: global options before or after the command ----------------------------------


@pytest.mark.parametrize(
    "order",
    [
        ("--db", "{db}", "runs", "list"),
        ("runs", "--db", "{db}", "list"),
        ("runs", "list", "--db", "{db}"),
        ("--recover", "--db", "{db}", "runs", "list"),
    ],
)
def test_global_options_work_before_or_after_the_command(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str], order: tuple[str, ...]
) -> None:
    assert trioflow("--db", db, "run", f"{pipelines}:echo", "--input", "hi") == ExitCode.OK
    run_id = only_run(db).run_id
    capsys.readouterr()
    assert trioflow(*(part.format(db=db) for part in order), "--json") == ExitCode.OK
    assert run_id in capsys.readouterr().out


def test_an_option_after_the_command_wins_over_one_before(
    pipelines: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    assert trioflow("--db", other, "run", f"{pipelines}:echo", "--input", "x", "--db", db) == 0
    assert only_run(db).input == "x"
    assert not other.exists()


# -- 13.13: --input parsed against the first step's input type --------------------------


def test_a_map_over_pipeline_takes_a_json_list(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:tag_all", "--input", '["a", "b", "c"]', "--db", db)
    assert code == ExitCode.OK
    assert "output: ['A', 'B', 'C']" in capsys.readouterr().out
    assert only_run(db).input == ["a", "b", "c"]


def test_a_map_over_pipeline_refuses_text_that_is_not_a_list(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:tag_all", "--input", "a b c", "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(
        capsys,
        "the input does not fit the first step 'tag_all', which expects list[str]: not JSON "
        "(Expecting value at character 0) (input: 'a b c')",
    )
    assert not db.exists()  # nothing was started


@pytest.mark.parametrize("text", ['"quoted"', "42", "[1, 2]", "  spaced  "])
def test_a_str_input_takes_the_text_as_is(
    pipelines: Path, db: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:echo", "--input", text, "--db", db) == ExitCode.OK
    assert only_run(db).input == text


def test_a_str_answer_takes_the_text_as_is(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:noted", db, capsys)
    assert trioflow("resume", run_id, "--input", "42", "--db", db, "--quiet") == ExitCode.OK
    assert only_run(db).output == "42"


# -- 13.14: --json for scripts ----------------------------------------------------------


def test_run_json_of_a_paused_run_names_its_pauses_and_questions(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:review", "--input", "trio", "--db", db, "--json")
    assert code == ExitCode.PAUSED
    document = json_of(capsys)
    assert document["status"] == "paused"
    assert document["paused"] == [
        {
            "path": "main/1:approve",
            "message": "Publish the draft?",
            "input_schema": {"type": "boolean"},
            "answered": False,
            "answer": None,
        }
    ]


def test_run_without_json_prints_the_question_too(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:review", "--input", "trio", "--db", db, "--quiet")
    assert code == ExitCode.PAUSED
    out = capsys.readouterr().out
    assert "paused: waiting for input at main/1:approve: Publish the draft?\n" in out


def test_runs_list_json(pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = start_paused(f"{pipelines}:review", db, capsys)
    assert trioflow("runs", "list", "--db", db, "--json") == ExitCode.OK
    run = only_run(db)
    # A pause ends the drive: it has an end time, a wall-clock one (its text is compared below).
    assert run.started_at <= run.finished_at <= datetime.datetime.now(datetime.UTC)
    assert json_of(capsys) == [
        {
            "run_id": run_id,
            "pipeline": "review",
            "status": "paused",
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat(),
            "total_cost_usd": "0",
            "input_tokens": 0,
            "output_tokens": 0,
            "paused_at": ["main/1:approve"],
        }
    ]


def test_runs_show_json(pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = start_paused(f"{pipelines}:review", db, capsys)
    assert trioflow("resume", run_id, "--input", "true", "--db", db, "--quiet") == ExitCode.OK
    capsys.readouterr()
    assert trioflow("runs", "show", run_id, "--db", db, "--json") == ExitCode.OK
    [(run, _, [pause])] = stored(db)
    # A wall-clock end time, after the start (its text is compared below).
    assert run.started_at <= run.finished_at <= datetime.datetime.now(datetime.UTC)
    assert json_of(capsys) == {
        "run_id": run_id,
        "pipeline": "review",
        "status": "completed",
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "total_cost_usd": "0",
        "input_tokens": 0,
        "output_tokens": 0,
        "paused_at": [],
        "target": f"{pipelines}:review",
        "input": "trio",
        "output": True,
        "error": None,
        "steps": [
            step_json("main/0:remember", {"topic": "trio"}),
            step_json("main/1:approve", True),
            step_json("main", True),
        ],
        "pauses": [
            {
                "path": "main/1:approve",
                "message": "Publish the draft?",
                "input_schema": {"type": "boolean"},
                "answered": True,
                "answer": True,
            }
        ],
    }
    assert pause.answer is True


def step_json(path: str, output: Any) -> dict[str, Any]:
    return {
        "path": path,
        "success": True,
        "attempts": 1,
        "cost_usd": "0",
        "input_tokens": 0,
        "output_tokens": 0,
        "output": output,
        "feedback": None,
    }


def test_replay_json(pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("run", f"{pipelines}:echo", "--input", "hi", "--db", db) == ExitCode.OK
    run_id = only_run(db).run_id
    capsys.readouterr()
    assert trioflow("replay", run_id, "--db", db, "--json") == ExitCode.OK
    assert json_of(capsys) == {
        "run_id": run_id,
        "steps": 2,
        "identical": True,
        "difference": None,
    }


def json_of(capsys: pytest.CaptureFixture[str]) -> Any:
    captured = capsys.readouterr()
    assert captured.out.isascii()
    return json.loads(captured.out)


# -- 13.16: CLI errors in the words a CLI user types -------------------------------------


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (
            ["--max-cost", "abc"],
            "--max-cost takes a number of dollars, 0 or more (like 0.50), got 'abc'",
        ),
        (
            ["--max-cost", "-1"],
            "--max-cost takes a number of dollars, 0 or more (like 0.50), got '-1'",
        ),
        (
            ["--max-cost", "NaN"],
            "--max-cost takes a number of dollars, 0 or more (like 0.50), got 'NaN'",
        ),
        (["--max-tokens", "-5"], "--max-tokens takes 0 or more, got -5"),
    ],
)
def test_a_bad_limit_says_which_option(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str], limit: list[str], message: str
) -> None:
    code = trioflow("run", f"{pipelines}:echo", "--input", "x", "--db", db, *limit)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(capsys, message)
    assert not db.exists()


T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)


def test_a_damaged_journal_says_give_recover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The damage message names the options a command-line user types, not recover=True."""
    db = tmp_path / "runs.db"

    async def a_run_with_a_trace() -> None:
        async with SQLiteStore.open(db) as store:
            await store.create_run(RunRecord("r1", "p", "completed", T0, "x"))
            events = [TraceEvent(TraceKind.NOTE, "run", n, "x" * 300) for n in range(100)]
            await store.save_trace("r1", events)

    trio.run(a_run_with_a_trace)
    connection = apsw.Connection(str(db))
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    [(root,)] = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'trace_events'"
    ).fetchall()
    [(size,)] = connection.execute("PRAGMA page_size").fetchall()
    connection.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * size + 200 : root * size] = (bytes(range(256)) * size)[: size - 200]
    db.write_bytes(bytes(data))

    assert trioflow("trace", "r1", "--db", db) == ExitCode.STORE_ERROR
    message = capsys.readouterr().err
    assert message.startswith(f"error: the journal {db} is damaged (")
    assert message.endswith(
        f"); it was left in place: `trioflow doctor --db {db}` shows the damage, and "
        "--recover repairs it or moves it aside (nothing is deleted)\n"
    )
    assert "recover=True" not in message


@step
async def shout(text: str) -> str:
    return text.upper()


def test_replay_of_a_run_started_from_python_says_give_pipeline(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run_from_python() -> str:
        async with open_runtime(store=db) as runtime:
            return (await runtime.run(shout, "hi")).run_id

    run_id = trio.run(run_from_python)
    for command in ("replay", "resume"):
        assert trioflow(command, run_id, "--db", db) == ExitCode.BAD_ARGUMENTS
        assert_error(
            capsys,
            f"run {run_id} was started from Python, so the journal does not say where its "
            "pipeline 'shout' is: give --pipeline FILE:NAME",
        )


def test_an_answer_for_one_of_several_pauses_says_give_path(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:both", db, capsys)
    assert trioflow("resume", run_id, "--input", "true", "--db", db) == ExitCode.BAD_ARGUMENTS
    assert_error(
        capsys,
        f"run {run_id} waits for input at several steps (main/0:both/a, main/0:both/b): "
        "say which this answer is for with --path PATH",
    )
    code = trioflow("resume", run_id, "--input", "true", "--path", "main/0:both/a", "--db", db)
    assert code == ExitCode.PAUSED  # b still waits


def test_a_resume_without_an_answer_says_give_input(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:review", db, capsys)
    assert trioflow("resume", run_id, "--db", db) == ExitCode.BAD_ARGUMENTS
    assert_error(
        capsys,
        f"run {run_id} waits for input at main/1:approve (Publish the draft?): give the answer "
        "with --input ANSWER",
    )


def test_a_context_with_required_fields_says_give_them_defaults(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:needy", "--input", "x", "--db", db) == 2
    assert_error(
        capsys,
        "pipeline 'needy' starts from a Needy whose field 'owner' has no default (Field "
        "required); the command line starts runs from Needy(), so give 'owner' a default",
    )


def test_markup_in_an_error_is_printed_as_is(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:tag_all", "--input", "[bold]x[/]", "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().err.endswith("(input: '[bold]x[/]')\n")


# -- 12: bad input ------------------------------------------------------------------------


def test_a_50_mb_answer_is_refused_and_the_run_stays_paused(
    pipelines: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:noted", db, capsys)
    before = stored(db)
    answer = tmp_path / "answer.txt"
    answer.write_bytes(b"x" * (50 * 1024 * 1024))
    code = trioflow("resume", run_id, "--input-file", answer, "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(
        capsys,
        f"--input-file {answer} is longer than 1,048,576 bytes, the input limit "
        "(--max-input-bytes raises it)",
    )
    assert stored(db) == before


def test_the_input_limit_can_be_raised(
    pipelines: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "input.txt"
    source.write_text("y" * 2000)
    common = ("run", f"{pipelines}:echo", "--input-file", source, "--db", db)
    assert trioflow(*common, "--max-input-bytes", "1999") == ExitCode.BAD_ARGUMENTS
    assert trioflow(*common, "--max-input-bytes", "2000") == ExitCode.OK
    assert only_run(db).input == "y" * 2000


@pytest.mark.parametrize("limit", ["0", "-3", "lots"])
def test_a_bad_input_limit_is_refused(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    arguments = ("run", f"{pipelines}:echo", "--input", "x", "--max-input-bytes", limit)
    assert trioflow(*arguments, "--db", db) == ExitCode.BAD_ARGUMENTS
    assert capsys.readouterr().err.endswith(
        f"error: argument --max-input-bytes: takes a number of bytes, 1 or more, got {limit!r}\n"
    )
    assert not db.exists()


def test_an_answer_nested_100000_deep_is_refused(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:review", db, capsys)
    before = stored(db)
    deep = "[" * 100_000 + "]" * 100_000
    assert trioflow("resume", run_id, "--input", deep, "--db", db) == ExitCode.BAD_ARGUMENTS
    assert_error(
        capsys, "the input nests 100,000 levels deep; JSON input may nest at most 100 levels"
    )
    assert stored(db) == before


def test_invalid_utf8_in_an_argument_is_refused(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What Python makes of the argument bytes b"ab\xffc" (surrogateescape).
    argument = b"ab\xffc".decode("utf-8", "surrogateescape")
    code = trioflow("run", f"{pipelines}:echo", "--input", argument, "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(capsys, "--input is not valid UTF-8: byte 0xff at offset 2")
    assert not db.exists()


def test_a_lone_surrogate_in_an_argument_is_refused(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("run", f"{pipelines}:echo", "--input", "a\ud800", "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(capsys, "--input is not valid UTF-8: a lone surrogate '\\ud800' at character 1")


def test_invalid_utf8_in_an_input_file_is_refused(
    pipelines: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(b"caf\xe9")
    code = trioflow("run", f"{pipelines}:echo", "--input-file", source, "--db", db)
    assert code == ExitCode.BAD_ARGUMENTS
    assert_error(capsys, f"--input-file {source} is not valid UTF-8: byte 0xe9 at offset 3")


def nested(depth: int) -> Pipeline:
    pipeline = Pipeline.of(shout, name="level0")
    for level in range(depth):
        pipeline = Pipeline.of(pipeline.as_step(f"n{level}"), name=f"level{level + 1}")
    return pipeline


def test_a_pipeline_nested_past_the_limit_is_refused_before_it_runs(db: Path) -> None:
    async def run(pipeline: Pipeline) -> str:
        async with open_runtime(store=db) as runtime:
            return str((await runtime.run(pipeline, "x")).output)

    assert trio.run(run, nested(MAX_NESTING_DEPTH - 1)) == "X"  # 100 levels: the limit
    deepest = sys.getrecursionlimit() * 2
    with pytest.raises(ConfigurationError) as refused:
        trio.run(run, nested(deepest))
    assert str(refused.value) == (
        f"pipeline 'level{deepest}' nests {deepest + 1} levels deep; pipelines may nest at "
        f"most {MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH)"
    )
    assert len(stored(db)) == 1


def test_the_cli_refuses_a_pipeline_nested_past_the_limit(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.py"
    path.write_text(
        "from trioflow.runtime import Pipeline, step\n\n"
        "@step\nasync def a(text: str) -> str:\n    return text\n\n"
        "pipeline = Pipeline.of(a)\n"
        "for level in range(3000):\n"
        "    pipeline = Pipeline.of(pipeline.as_step(f'n{level}'), name='deep')\n"
    )
    assert trioflow("run", f"{path}:pipeline", "--input", "x", "--db", db) == 2
    assert_error(
        capsys,
        "pipeline 'deep' nests 3001 levels deep; pipelines may nest at most 100 levels "
        "(MAX_NESTING_DEPTH)",
    )


def test_a_context_model_changed_before_resume_names_the_field(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_paused(f"{pipelines}:review", db, capsys)
    sys.modules.pop(module_name_for(pipelines))  # the journal read without the file's classes
    before = stored(db)
    changed = PIPELINES.replace('    topic: str = ""', "    topic: int = 0\n    owner: str")
    pipelines.write_text(changed)
    # The file changed since the run: only a pipeline named with --pipeline is imported.
    trusted = ("--pipeline", f"{pipelines}:review")
    assert (
        trioflow("resume", run_id, "--input", "true", "--db", db, *trusted)
        == ExitCode.BAD_ARGUMENTS
    )
    assert_error(
        capsys,
        f"run {run_id!r} stored a Ctx that no longer fits the class Ctx in this code "
        "(field 'topic': Input should be a valid integer, unable to parse string as an "
        "integer): the class changed since the run was stored; to go on with the run, "
        "define Ctx as it was then",
    )
    added = PIPELINES.replace('    topic: str = ""', '    topic: str = ""\n    owner: str')
    pipelines.write_text(added)
    sys.modules.pop(module_name_for(pipelines))
    assert (
        trioflow("resume", run_id, "--input", "true", "--db", db, *trusted)
        == ExitCode.BAD_ARGUMENTS
    )
    assert capsys.readouterr().err.endswith(
        "(field 'owner': Field required): the class changed since the run was stored; to go "
        "on with the run, define Ctx as it was then (or give 'owner' a default)\n"
    )
    pipelines.write_text(PIPELINES)
    sys.modules.pop(module_name_for(pipelines))
    assert stored(db) == before  # read with the class as it was: nothing changed
    assert trioflow("resume", run_id, "--input", "true", "--db", db, "--quiet") == ExitCode.OK


def test_runs_show_and_trace_print_escape_sequences_and_surrogates_inert(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:evil", "--input", "hi", "--db", db, "--quiet") == 0
    shown = "hi\\x1b]0;pwned\\x07\\x1b[2J\\ud800"
    assert f"output: {shown}\n" in capsys.readouterr().out
    run_id = only_run(db).run_id
    assert trioflow("runs", "show", run_id, "--db", db) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"output: {shown}\n" in out
    assert "\x1b" not in out
    assert trioflow("runs", "show", run_id, "--db", db, "--json") == ExitCode.OK
    assert json_of(capsys)["output"] == "hi\x1b]0;pwned\x07\x1b[2J\ud800"


def test_trace_prints_an_escape_sequence_in_an_error_inert(
    pipelines: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:broken", "--input", "x", "--db", db, "--quiet") == 1
    capsys.readouterr()
    run_id = only_run(db).run_id
    assert trioflow("trace", run_id, "--db", db) == ExitCode.OK
    out = capsys.readouterr().out
    assert "ValueError: bad \\x1b[31mred\n" in out
    assert "\x1b" not in out
    assert trioflow("trace", run_id, "--db", db, "--json") == ExitCode.OK
    document = json_of(capsys)
    assert document["nodes"][0]["children"][0]["reason"] == (
        "step 'main/0:broken' failed (agent_error): ValueError: bad \x1b[31mred"
    )
