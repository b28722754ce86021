"""``trioflow run``: output, exit codes and clear errors for bad arguments."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from cli_in_process import trioflow
from trioflow.runtime._cli._commands import ExitCode

PIPELINES = """
from decimal import Decimal
from trioflow.runtime import Completion, Step, Usage, step


@step
async def shout(text: str) -> str:
    return text.upper()


@step
async def exclaim(text: str) -> str:
    return text + "!"


@step
async def increment(number: int) -> int:
    return number + 1


@step
async def broken(text: str) -> str:
    raise ValueError("no luck")


async def _paid(text: str) -> Completion:
    return Completion(text, Usage(Decimal("0.75"), 10, 5))


paid = Step.from_callable(_paid, name="paid", output_type=str)

loud = shout >> exclaim
failing = shout >> broken
expensive = paid >> paid
not_a_pipeline = 42
"""


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return path


def test_run_prints_output_totals_and_steps(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:loud", "--input", "hi") == ExitCode.OK
    out = capsys.readouterr().out
    assert "output: HI!" in out
    assert "status: completed   cost: $0.00   tokens: 0   run: " in out
    assert "main/0:shout" in out
    assert "main/1:exclaim" in out


def test_json_output(pipelines: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("run", f"{pipelines}:expensive", "--input", "x", "--json") == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "completed"
    assert document["output"] == "x"
    assert document["total_cost_usd"] == "1.50"
    assert document["total_tokens"] == 30
    assert [step["path"] for step in document["steps"]] == ["main/0:paid", "main/1:paid"]
    assert [step["cost_usd"] for step in document["steps"]] == ["0.75", "0.75"]
    assert len(document["run_id"]) == 32


def test_a_failing_step_exits_1_and_says_why(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:failing", "--input", "hi") == ExitCode.PIPELINE_FAILED
    out = capsys.readouterr().out
    assert "error: step 'main/1:broken' failed (agent_error): ValueError: no luck" in out
    assert "status: failed" in out


def test_a_usage_limit_exits_3(pipelines: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = trioflow("run", f"{pipelines}:expensive", "--input", "x", "--max-cost", "1.20")
    assert code == ExitCode.USAGE_LIMIT
    out = capsys.readouterr().out
    assert "error: Cost limit of $1.20 exceeded" in out
    assert "status: usage_limit   cost: $1.50   tokens: 30" in out


def test_input_parsed_as_json_for_typed_first_step(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:increment", "--input", "41") == ExitCode.OK
    assert "output: 42" in capsys.readouterr().out


def test_input_of_the_wrong_type_is_a_bad_argument(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:increment", "--input", "forty") == ExitCode.BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert "the input does not fit the first step 'increment', which expects int" in err
    assert "Traceback" not in err


def test_input_file_and_stdin(
    pipelines: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "input.txt"
    source.write_text("from a file\n")
    assert trioflow("run", f"{pipelines}:loud", "--input-file", str(source)) == ExitCode.OK
    assert "output: FROM A FILE!" in capsys.readouterr().out
    # Standard input as Python opens it: text over a byte buffer, which the CLI reads.
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"piped\n")))
    assert trioflow("run", f"{pipelines}:loud") == ExitCode.OK
    assert "output: PIPED!" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{dir}/missing.py:loud", "no such file: {dir}/missing.py"),
        ("{file}:nothing", "{file} has no name 'nothing'"),
        ("{file}:not_a_pipeline", "{file}:not_a_pipeline is a int, not a Pipeline or Step"),
        ("{file}", "expected FILE.py:NAME, got '{file}'"),
    ],
)
def test_bad_targets(
    pipelines: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    values = {"dir": str(pipelines.parent), "file": str(pipelines)}
    code = trioflow("run", target.format(**values), "--input", "x")
    assert code == ExitCode.BAD_ARGUMENTS
    assert f"error: {message.format(**values)}" in capsys.readouterr().err


def test_an_import_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import math\n\nvalue = math.sqrt(-1)\n")
    assert trioflow("run", f"{path}:value", "--input", "x") == ExitCode.IMPORT_ERROR
    err = capsys.readouterr().err
    assert f"{path}, line 3: ValueError: math domain error" in err
    assert "Traceback" not in err


def test_a_sync_step_is_reported_where_it_is_defined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sync_step.py"
    path.write_text(
        textwrap.dedent(
            """
            from trioflow.runtime import step

            @step
            def not_async(text: str) -> str:
                return text
            """
        )
    )
    assert trioflow("run", f"{path}:not_async", "--input", "x") == ExitCode.IMPORT_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}, line 4: ConfigurationError: step 'not_async':" in err
    assert "must be an async function (defined with 'async def')" in err


def test_progress_is_plain_lines_on_standard_error_when_not_on_a_terminal(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("run", f"{pipelines}:expensive", "--input", "x", "--quiet") == ExitCode.OK
    captured = capsys.readouterr()
    lines = [line.split() for line in captured.err.splitlines()]
    assert [(line[0], line[1], line[-1]) for line in lines] == [
        ("done", "main/0:paid", "$0.75"),
        ("done", "main/1:paid", "$1.50"),
    ]
    assert "done" not in captured.out
