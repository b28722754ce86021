"""The ``trioflow`` command line.

* ``trioflow run FILE.py:NAME`` runs a pipeline defined in a Python file.
  The input comes from ``--input TEXT``, ``--input-file PATH`` or standard
  input; it is passed as text when the first step takes ``str`` (or is
  untyped) and parsed as JSON into the step's input type otherwise.
* ``trioflow resume RUN [--input ANSWER]`` goes on with a paused or
  interrupted run; an answer is read as JSON when it parses as JSON, as
  text otherwise, and validated against the pause's schema.
* ``trioflow runs list`` and ``trioflow runs show RUN`` read the journal.
* ``trioflow replay RUN`` runs a stored run again with every model call
  answered from its journal (no model called, nothing paid) and reports the
  first step whose code now gives a different result (exit code 1) or that
  everything is the same (0).
* ``trioflow trace RUN`` shows a run's trace as a tree of its actors
  (status, duration, attempts, cost, tokens, and why anything failed or was
  cancelled); ``--json`` for machines, ``--failed`` and ``--path PREFIX`` to
  narrow it; ``--perfetto FILE`` writes Chrome/Perfetto trace-event JSON
  instead, for ui.perfetto.dev.

* ``trioflow doctor`` checks every page of the journal (opening one never
  does): exit code 0 when it is sound, 7 when it is damaged.

Runs are journaled in ``--db PATH``, else ``$TRIOFLOW_DB``, else
``.trioflow/trioflow.db``. A damaged journal is refused (exit code 7) and
left in place until ``--recover`` repairs it or moves it aside (never
deleting it) for a fresh one. ``--busy-timeout SECONDS`` is how long a
write waits for another process's lock on the journal.

Exit codes: 0 success; 1 the pipeline failed; 2 bad arguments or input;
3 a usage limit stopped the run; 4 the pipeline file raised while being
imported; 5 the run is paused, waiting for human input; 6 no such run;
7 the journal cannot be used (corrupt, too new, unreadable); 8 the run
has no trace (still running, or its process stopped first); 130
interrupted.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pydantic
import trio
from rich.console import Console
from trioflow.persistence import (
    DEFAULT_BUSY_TIMEOUT_S,
    SQLiteStore,
    StoreError,
    UnknownRun,
    UnreadableRuns,
)

from ._doctor import doctor
from ._errors import (
    ConfigurationError,
    HumanInputRequired,
    RunNotResumable,
    RunTakenOver,
    UsageLimitExceeded,
)
from ._human import HumanInputInvalid
from ._loading import TargetError, UserImportError, load_target
from ._perfetto import perfetto_json
from ._pipeline import Pipeline
from ._progress import RunProgress
from ._replay import Replay
from ._report import print_result, print_run, result_json, runs_table
from ._results import PipelineResult, RunStatus
from ._runtime import Runtime, default_db_path, open_runtime
from ._trace_tree import NoTrace, RunTrace
from ._trace_view import print_trace, trace_json
from ._types import type_name
from ._usage import UsageLimits

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    OK = 0
    PIPELINE_FAILED = 1
    BAD_ARGUMENTS = 2
    USAGE_LIMIT = 3
    IMPORT_ERROR = 4
    PAUSED = 5
    UNKNOWN_RUN = 6
    STORE_ERROR = 7
    NO_TRACE = 8
    TAKEN_OVER = 9
    INTERRUPTED = 130


class _Fail(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioflow", description="Run trioflow pipelines.")
    journal = argparse.ArgumentParser(add_help=False)
    journal.add_argument(
        "--db", metavar="PATH", help="the journal (default: $TRIOFLOW_DB or .trioflow/trioflow.db)"
    )
    journal.add_argument(
        "--recover",
        action="store_true",
        help="repair a damaged journal, or move it aside for a fresh one (nothing is deleted)",
    )
    journal.add_argument(
        "--busy-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_BUSY_TIMEOUT_S,
        help="how long to wait for another process's lock on the journal "
        f"(default: {DEFAULT_BUSY_TIMEOUT_S:g})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[journal], help="run a pipeline from a Python file")
    run.add_argument("target", metavar="FILE.py:NAME", help="the file and the pipeline's name")
    _input_arguments(run)
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--quiet", action="store_true", help="plain progress lines, no live panel")
    run.add_argument("--max-cost", metavar="USD", help="stop the run above this cost")
    run.add_argument("--max-tokens", metavar="N", type=int, help="stop the run above N tokens")

    resume = commands.add_parser("resume", parents=[journal], help="go on with a paused run")
    resume.add_argument("run_id", metavar="RUN")
    _input_arguments(resume)
    resume.add_argument("--path", help="which pause to answer, when several wait")
    resume.add_argument("--json", action="store_true", help="print the result as JSON")
    resume.add_argument("--quiet", action="store_true", help="plain progress lines, no live panel")

    replay = commands.add_parser(
        "replay", parents=[journal], help="run a stored run again, models answered from it"
    )
    replay.add_argument("run_id", metavar="RUN")

    runs = commands.add_parser("runs", help="list or show journaled runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_commands.add_parser("list", parents=[journal], help="every run, oldest first")
    show = runs_commands.add_parser("show", parents=[journal], help="one run and its steps")
    show.add_argument("run_id", metavar="RUN")

    trace = commands.add_parser("trace", parents=[journal], help="a run's trace, actor by actor")
    trace.add_argument("run_id", metavar="RUN")
    trace.add_argument("--json", action="store_true", help="print the tree as JSON")
    trace.add_argument("--failed", action="store_true", help="only what failed or was cancelled")
    trace.add_argument("--path", metavar="PREFIX", help="only actors whose path starts so")
    trace.add_argument(
        "--perfetto", metavar="FILE", help="write Chrome/Perfetto trace-event JSON to FILE"
    )
    commands.add_parser("doctor", parents=[journal], help="check every page of the journal")
    return parser


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return seconds


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", help="the input, as text (JSON for non-text inputs)")
    source.add_argument("--input-file", metavar="PATH", help="read the input from a file")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``trioflow`` console script."""
    arguments = _parser().parse_args(argv)
    # Piped output is read by people too: do not squeeze tables into 80 columns.
    width = None if sys.stdout.isatty() else 140
    console = Console(highlight=False, soft_wrap=True, width=width)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = _COMMANDS[_command(arguments)](arguments, console)
    except _Fail as failure:
        errors.print(f"[bold red]error:[/] {failure.message}")
        code = failure.code
    except KeyboardInterrupt:
        errors.print("interrupted")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code))


def _command(arguments: argparse.Namespace) -> str:
    return str(
        arguments.command if arguments.command != "runs" else f"runs {arguments.runs_command}"
    )


def _with_runtime(
    arguments: argparse.Namespace,
    work: Callable[[Runtime], Awaitable[T]],
    limits: UsageLimits | None = None,
) -> T:
    """Run ``work`` in a runtime over the chosen journal, mapping errors to exit codes."""

    async def main() -> T:
        opening = open_runtime(
            store=_db(arguments),
            limits=limits,
            recover=arguments.recover,
            busy_timeout_s=arguments.busy_timeout,
        )
        async with opening as runtime:
            if arguments.recover:
                _report_recovery(runtime)
            return await work(runtime)

    try:
        return trio.run(main)
    except UnknownRun as error:
        raise _Fail(ExitCode.UNKNOWN_RUN, str(error)) from error
    except StoreError as error:
        raise _Fail(ExitCode.STORE_ERROR, str(error)) from error
    except (ConfigurationError, HumanInputInvalid, HumanInputRequired, RunNotResumable) as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    except RunTakenOver as error:
        raise _Fail(ExitCode.TAKEN_OVER, str(error)) from error


def _db(arguments: argparse.Namespace) -> Path:
    return Path(arguments.db) if arguments.db else default_db_path()


def _report_recovery(runtime: Runtime) -> None:
    """Say what ``--recover`` did: where a damaged journal went, or that it was sound."""
    store = runtime.store
    if isinstance(store, SQLiteStore):
        errors = Console(stderr=True, highlight=False, soft_wrap=True)
        done = store.recovered_from
        said = f"the journal {store.path} is sound: nothing to recover" if done is None else done
        errors.print(f"--recover: {said}", markup=False)


def _run_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    target = arguments.target
    pipeline = _load(target)
    data = _parse_input(pipeline, _read_input(arguments))
    stored_target = _absolute_target(target)
    limits = _limits(arguments)
    with _progress(arguments) as progress:
        return _finish(
            console,
            arguments,
            lambda runtime: runtime.run(pipeline, data, target=stored_target, watch=progress),
            limits,
        )


def _replay_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def replay(runtime: Runtime) -> Replay:
        record = await runtime.store.get_run(arguments.run_id)
        pipeline = _load(record.target) if record.target else None
        return await runtime.replay(arguments.run_id, pipeline=pipeline)

    outcome = _with_runtime(arguments, replay)
    console.print(
        f"replayed run {outcome.run_id}: {outcome.steps} step(s), no model called", markup=False
    )
    if outcome.difference is None:
        console.print("same outputs and context as the original", markup=False)
        return ExitCode.OK
    console.print(f"first difference: {outcome.difference}", markup=False)
    return ExitCode.PIPELINE_FAILED


def _resume_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    text = _read_input(arguments)
    answer = _NO_ANSWER if text is None else _answer(text)

    async def resume(runtime: Runtime) -> PipelineResult:
        record = await runtime.store.get_run(arguments.run_id)
        pipeline = _load(record.target) if record.target else None
        given = {} if answer is _NO_ANSWER else {"human_input": answer}
        return await runtime.resume(
            arguments.run_id, path=arguments.path, pipeline=pipeline, watch=progress, **given
        )

    with _progress(arguments) as progress:
        return _finish(console, arguments, resume)


def _progress(arguments: argparse.Namespace) -> RunProgress:
    """Live progress on standard error: a panel on a terminal, plain lines otherwise."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    return RunProgress(errors, live=errors.is_terminal and not arguments.quiet)


def _finish(
    console: Console,
    arguments: argparse.Namespace,
    work: Callable[[Runtime], Awaitable[PipelineResult]],
    limits: UsageLimits | None = None,
) -> ExitCode:
    try:
        result = _with_runtime(arguments, work, limits)
    except UsageLimitExceeded as breach:
        if breach.result is None:  # raised by a step's own code, not by this run's governor
            raise _Fail(ExitCode.USAGE_LIMIT, str(breach)) from breach
        _show(console, breach.result, arguments.json)
        return ExitCode.USAGE_LIMIT
    _show(console, result, arguments.json)
    if result.status is RunStatus.PAUSED:
        return ExitCode.PAUSED
    return ExitCode.OK if result.success else ExitCode.PIPELINE_FAILED


def _runs_list_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def runs(runtime: Runtime) -> Any:
        try:
            return await runtime.store.list_runs(), None
        except UnreadableRuns as unreadable:  # list the others, then name the bad ones
            return unreadable.readable, unreadable

    listed, unreadable = _with_runtime(arguments, runs)
    console.print(runs_table(listed))
    if unreadable is not None:
        raise _Fail(ExitCode.STORE_ERROR, str(unreadable))
    return ExitCode.OK


def _doctor_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    if arguments.recover:  # repair first, then check what is left
        _with_runtime(arguments, _nothing)
    try:
        sound = doctor(console, _db(arguments), arguments.busy_timeout)
    except StoreError as error:
        raise _Fail(ExitCode.STORE_ERROR, str(error)) from error
    return ExitCode.OK if sound else ExitCode.STORE_ERROR


async def _nothing(runtime: Runtime) -> None:
    return None


def _runs_show_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def show(runtime: Runtime) -> Any:
        store = runtime.store
        run_id = arguments.run_id
        return (
            await store.get_run(run_id),
            await store.steps_of(run_id),
            await store.pauses_of(run_id),
        )

    record, steps, pauses = _with_runtime(arguments, show)
    print_run(console, record, steps, pauses)
    return ExitCode.OK


def _trace_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    narrowed = arguments.json or arguments.failed or arguments.path is not None
    if arguments.perfetto is not None and narrowed:
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            "--perfetto writes the whole trace: give it without --json, --failed or --path",
        )

    async def load(runtime: Runtime) -> RunTrace:
        return await runtime.trace(arguments.run_id)

    try:
        trace = _with_runtime(arguments, load)
    except NoTrace as error:
        raise _Fail(ExitCode.NO_TRACE, str(error)) from error
    if arguments.perfetto is not None:
        try:
            Path(arguments.perfetto).write_text(perfetto_json(trace), encoding="utf-8")
        except OSError as error:
            raise _Fail(
                ExitCode.BAD_ARGUMENTS, f"cannot write {arguments.perfetto}: {error}"
            ) from error
        console.print(
            f"wrote {arguments.perfetto}: open it in https://ui.perfetto.dev", markup=False
        )
        return ExitCode.OK
    roots = trace.filtered(failed=arguments.failed, path=arguments.path)
    if arguments.json:
        console.print_json(trace_json(trace, roots))
    else:
        print_trace(console, trace, roots)
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], ExitCode]] = {
    "run": _run_command,
    "resume": _resume_command,
    "runs list": _runs_list_command,
    "runs show": _runs_show_command,
    "trace": _trace_command,
    "replay": _replay_command,
    "doctor": _doctor_command,
}


def _load(target: str) -> Pipeline:
    try:
        return load_target(target)
    except TargetError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    except UserImportError as error:
        raise _Fail(ExitCode.IMPORT_ERROR, f"cannot import the pipeline file: {error}") from error


def _absolute_target(target: str) -> str:
    file_name, _, name = target.rpartition(":")
    return f"{Path(file_name).resolve()}:{name}"


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
        text = sys.stdin.read().removesuffix("\n")
        return text if text else None
    return None


_NO_ANSWER = object()


def _answer(text: str) -> Any:
    """A resume answer: JSON when it parses as JSON, the text itself otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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
