"""The ``trioflow`` command line.

``trioflow run FILE.py:NAME`` runs a pipeline defined in a Python file.
The input comes from ``--input TEXT``, ``--input-file PATH`` or standard
input; it is passed as text when the first step takes ``str`` (or is
untyped) and parsed as JSON into the step's input type otherwise.

Exit codes: 0 success; 1 the pipeline failed; 2 bad arguments or input
(including a missing file or name); 3 a usage limit was exceeded; 4 the
pipeline file raised while being imported; 130 interrupted.
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NoReturn

import pydantic
import trio
from rich.console import Console

from ._errors import ConfigurationError, UsageLimitExceeded
from ._loading import TargetError, UserImportError, load_target
from ._pipeline import Pipeline
from ._report import print_result, result_json
from ._results import PipelineResult
from ._runtime import open_runtime
from ._types import type_name
from ._usage import UsageLimits


class ExitCode(enum.IntEnum):
    OK = 0
    PIPELINE_FAILED = 1
    BAD_ARGUMENTS = 2
    USAGE_LIMIT = 3
    IMPORT_ERROR = 4
    INTERRUPTED = 130


class _Fail(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioflow", description="Run trioflow pipelines.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline defined in a Python file")
    run.add_argument("target", metavar="FILE.py:NAME", help="the file and the pipeline's name")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--input", help="the input, as text (JSON for non-text inputs)")
    source.add_argument("--input-file", metavar="PATH", help="read the input from a file")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--max-cost", metavar="USD", help="stop the run above this cost")
    run.add_argument("--max-tokens", metavar="N", type=int, help="stop the run above N tokens")
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``trioflow`` console script."""
    arguments = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = _run_command(arguments, console)
    except _Fail as failure:
        errors.print(f"[bold red]error:[/] {failure.message}")
        code = failure.code
    except KeyboardInterrupt:
        errors.print("interrupted")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code))


def _run_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    try:
        pipeline = load_target(arguments.target)
    except TargetError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    except UserImportError as error:
        raise _Fail(ExitCode.IMPORT_ERROR, f"cannot import the pipeline file: {error}") from error
    data = _parse_input(pipeline, _read_input(arguments))
    limits = _limits(arguments)
    try:
        result = trio.run(_run, pipeline, data, limits)
    except UsageLimitExceeded as breach:
        if breach.result is None:  # raised by a step's own code, not by this run's governor
            raise _Fail(ExitCode.USAGE_LIMIT, str(breach)) from breach
        _show(console, breach.result, arguments.json)
        return ExitCode.USAGE_LIMIT
    except ConfigurationError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    _show(console, result, arguments.json)
    return ExitCode.OK if result.success else ExitCode.PIPELINE_FAILED


async def _run(pipeline: Pipeline, data: Any, limits: UsageLimits | None) -> PipelineResult:
    async with open_runtime(limits=limits) as runtime:
        return await runtime.run(pipeline, data)


def _show(console: Console, result: PipelineResult, as_json: bool) -> None:
    if as_json:
        console.print_json(result_json(result))
    else:
        print_result(console, result)


def _read_input(arguments: argparse.Namespace) -> str | None:
    if arguments.input is not None:
        return str(arguments.input)
    if arguments.input_file is not None:
        try:
            with open(arguments.input_file, encoding="utf-8") as file:
                return file.read().removesuffix("\n")
        except OSError as error:
            raise _Fail(ExitCode.BAD_ARGUMENTS, f"cannot read --input-file: {error}") from error
    if not sys.stdin.isatty():
        return sys.stdin.read().removesuffix("\n")
    return None


def _parse_input(pipeline: Pipeline, text: str | None) -> Any:
    expected = pipeline.input_type
    first = pipeline.steps[0].name
    if expected is type(None):
        return None
    if text is None:
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"the first step {first!r} needs an input ({type_name(expected)}): "
            "give --input, --input-file or standard input",
        )
    if expected is str or expected is Any or expected is object:
        return text
    try:
        return pydantic.TypeAdapter(expected).validate_json(text)
    except pydantic.ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"the input does not fit the first step {first!r}, which expects "
            f"{type_name(expected)}: {problem} (input: {text!r:.80})",
        ) from error


def _limits(arguments: argparse.Namespace) -> UsageLimits | None:
    if arguments.max_cost is None and arguments.max_tokens is None:
        return None
    try:
        cost = None if arguments.max_cost is None else Decimal(arguments.max_cost)
        return UsageLimits(total_cost_usd=cost, total_tokens=arguments.max_tokens)
    except (ValueError, ArithmeticError) as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, f"invalid limit: {error}") from error
