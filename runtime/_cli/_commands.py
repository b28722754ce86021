"""The ``trioflow`` command line.

* ``trioflow run FILE.py:NAME`` runs a pipeline defined in a Python file
  (importing FILE runs it, like ``python FILE``).
  The input comes from ``--input TEXT``, ``--input-file PATH`` or standard
  input; it is passed as text when the first step takes ``str`` (or is
  untyped) and parsed as JSON into the step's input type otherwise (see
  ``_cli_input``: at most ``--max-input-bytes`` of UTF-8, JSON nested at
  most 100 deep).
* ``trioflow resume RUN [--input ANSWER]`` goes on with a paused or
  interrupted run; an answer is read as JSON when it parses as JSON, as
  text otherwise, and validated against the pause's schema.
  ``resume`` and ``replay`` import the run's file again only while its
  sha256 is the one journaled when the run started; ``--pipeline
  FILE.py:NAME`` names the pipeline instead (a file edited since).
* ``trioflow runs list`` (the newest 50 runs; ``--page``, ``--limit``,
  ``--all``) and ``trioflow runs show RUN`` read the journal;
  ``trioflow runs prune`` removes old runs (``--older-than``,
  ``--keep-last``, ``--status``; ``--dry-run`` to look first).
* ``trioflow replay RUN`` runs a stored run again with every model call
  answered from its journal (no model called, nothing paid) and reports the
  first step whose code now gives a different result (exit code 1) or that
  everything is the same (0).
* ``trioflow trace RUN`` shows a run's trace as a tree of its actors
  (status, duration, attempts, cost, tokens, and why anything failed or was
  cancelled); ``--json`` for machines, ``--failed`` and ``--path PREFIX`` to
  narrow it; ``--perfetto FILE`` writes Chrome/Perfetto trace-event JSON
  instead, for ui.perfetto.dev.

* ``trioflow graph FILE.py:NAME`` prints the pipeline's structure as a
  Mermaid flowchart (``--format dot`` for Graphviz), running nothing.

* ``trioflow doctor`` checks every page of the journal (opening one never
  does): exit code 0 when it is sound, 7 when it is damaged.
* ``trioflow submit``, ``trioflow worker`` and ``trioflow resume --queue``
  are the run queue's, on a PostgreSQL journal (``_queue_commands``).

``-v`` logs what runs do (their start, end, retries, failures, pauses)
to standard error, ``-vv`` every step's outcome too.

Runs are journaled in ``--db PATH`` (an SQLite file, or a
``postgresql://`` URL), else ``$TRIOFLOW_DB``, else
``.trioflow/trioflow.db``. A damaged journal is refused (exit code 7) and
left in place until ``--recover`` repairs it or moves it aside (never
deleting it) for a fresh one. ``--busy-timeout SECONDS`` is how long a
write waits for another process's lock on the journal. These options go
before or after the command's name. ``--json`` (run, resume, runs list,
runs show, replay, trace) prints one ASCII JSON document (``_documents``);
text for people prints stored text inert (``_safe_text``). Error messages
name what a command-line user types (``--recover``, ``--path``), not
Python arguments.

Exit codes: 0 success; 1 the pipeline failed; 2 bad arguments or input;
3 a usage limit stopped the run; 4 the pipeline file raised while being
imported; 5 the run is paused, waiting for human input; 6 no such run;
7 the journal cannot be used (corrupt, too new, unreadable); 8 the run
has no trace (still running, or its process stopped first); 130
interrupted by Ctrl-C; 143 stopped by SIGTERM (the run is stored
``interrupted`` either way, and resumable).
"""

from __future__ import annotations

import argparse
import datetime
import enum
import math
import signal
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
    CorruptDatabase,
    PauseRecord,
    PrunePolicy,
    RunRecord,
    RunSummary,
    SQLiteStore,
    StoreError,
    UnknownRun,
    UnreadableRuns,
    prune_runs,
)

from .._dsl._human import HumanInputInvalid
from .._dsl._nesting import check_nesting
from .._dsl._pipeline import Pipeline
from .._dsl._type_checks import type_name
from .._errors import (
    ConfigurationError,
    HumanInputRequired,
    RunNotResumable,
    RunTakenOver,
    UsageLimitExceeded,
)
from .._interrupts import CTRL_C, StopSignals, was_interrupted
from .._lease import DEFAULT_LEASE_S
from .._logging import set_verbosity
from .._replay import Replay
from .._results import PipelineResult, RunStatus
from .._runtime import Runtime, open_runtime
from .._safe_text import inert, shown
from .._store_choice import JournalLocation, journal_location
from .._stored import reading_run
from .._usage import UsageLimits
from ..traces._perfetto import perfetto_json
from ..traces._progress import RunProgress
from ..traces._tree import NoTrace, RunTrace
from ..traces._tree_view import print_trace, trace_json
from . import _queue_commands
from ._doctor import doctor
from ._documents import json_text, replay_document, run_document, summary_document
from ._graph import add_graph_command, picture
from ._input import (
    MAX_INPUT_BYTES,
    InputRejected,
    cli_input_type,
    input_from_argument,
    input_from_file,
    input_from_stdin,
    parse_answer,
    parse_input,
)
from ._loading import LoadedPipeline, TargetError, UserImportError, load_recorded, load_target
from ._report import print_result, print_run, result_json, runs_table

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
    TERMINATED = 143


class _Fail(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioflow", description="Run trioflow pipelines.")
    _global_options(parser)
    # The same options after a (sub)command: SUPPRESS keeps a value given before it.
    journal = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(journal)
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
    _pipeline_argument(resume)
    resume.add_argument("--json", action="store_true", help="print the result as JSON")
    resume.add_argument("--quiet", action="store_true", help="plain progress lines, no live panel")
    resume.add_argument(
        "--queue", action="store_true", help="store the answer and queue the run for a worker"
    )

    replay = commands.add_parser(
        "replay", parents=[journal], help="run a stored run again, models answered from it"
    )
    replay.add_argument("run_id", metavar="RUN")
    _pipeline_argument(replay)
    replay.add_argument("--json", action="store_true", help="print the outcome as JSON")

    runs = commands.add_parser("runs", parents=[journal], help="list or show journaled runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_commands.add_parser(
        "list", parents=[journal], help="the newest runs (a page at a time), oldest first"
    )
    listing.add_argument("--limit", type=_positive, default=50, help="runs per page (50)")
    listing.add_argument("--page", type=_positive, default=1, help="1 is the newest runs")
    listing.add_argument("--all", action="store_true", help="every run, on one page")
    listing.add_argument("--json", action="store_true", help="print the runs as JSON")
    prune = runs_commands.add_parser(
        "prune", parents=[journal], help="remove old runs and everything stored for them"
    )
    prune.add_argument("--older-than", metavar="AGE", type=_age, help="e.g. 90s, 45m, 12h, 30d, 2w")
    prune.add_argument("--keep-last", metavar="N", type=int, help="never the newest N runs")
    prune.add_argument(
        "--status", action="append", help="only runs with this status (repeat for several)"
    )
    prune.add_argument(
        "--force", action="store_true", help="also running, paused and interrupted runs"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    show = runs_commands.add_parser("show", parents=[journal], help="one run and its steps")
    show.add_argument("run_id", metavar="RUN")
    show.add_argument("--json", action="store_true", help="print the run as JSON")

    trace = commands.add_parser("trace", parents=[journal], help="a run's trace, actor by actor")
    trace.add_argument("run_id", metavar="RUN")
    trace.add_argument("--json", action="store_true", help="print the tree as JSON")
    trace.add_argument("--failed", action="store_true", help="only what failed or was cancelled")
    trace.add_argument("--path", metavar="PREFIX", help="only actors whose path starts so")
    trace.add_argument(
        "--perfetto", metavar="FILE", help="write Chrome/Perfetto trace-event JSON to FILE"
    )
    commands.add_parser("doctor", parents=[journal], help="check every page of the journal")
    add_graph_command(commands)
    _queue_commands.add_queue_commands(commands, journal)
    return parser


def _global_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after the command's name."""
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="the journal: an SQLite file or a postgresql:// URL "
        "(default: $TRIOFLOW_DB or .trioflow/trioflow.db)",
    )
    parser.add_argument(
        "--recover",
        action="store_true",
        help="repair a damaged journal, or move it aside for a fresh one (nothing is deleted)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="log what runs do to standard error: -v INFO, -vv DEBUG (every step)",
    )
    parser.add_argument(
        "--busy-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_BUSY_TIMEOUT_S,
        help="how long to wait for another process's lock on the journal "
        f"(default: {DEFAULT_BUSY_TIMEOUT_S:g})",
    )


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
    parser.add_argument(
        "--max-input-bytes",
        metavar="N",
        type=_byte_count,
        default=MAX_INPUT_BYTES,
        help=f"refuse a longer input (default {MAX_INPUT_BYTES:,}: 1 MiB)",
    )


def _byte_count(text: str) -> int:
    """``--max-input-bytes``: a whole number of bytes, at least 1."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"takes a number of bytes, 1 or more, got {text!r}")
    return count


def _pipeline_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        metavar="FILE.py:NAME",
        help="the run's pipeline, when its file changed since the run started",
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``trioflow`` console script."""
    arguments = _parser().parse_args(argv)
    set_verbosity(getattr(arguments, "verbose", None) or 0)
    # Piped output is read by people too: do not squeeze tables into 80 columns.
    width = None if sys.stdout.isatty() else 140
    console = Console(highlight=False, soft_wrap=True, width=width)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = _COMMANDS[_command(arguments)](arguments, console)
    except _Fail as failure:
        errors.print(f"[bold red]error:[/] {shown(failure.message)}")
        code = failure.code
    except (KeyboardInterrupt, BaseExceptionGroup) as error:
        if not was_interrupted(error):
            raise
        errors.print(CTRL_C)  # before a run started, or after it ended
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
    *,
    lease_s: float = DEFAULT_LEASE_S,
) -> T:
    """Run ``work`` in a runtime over the chosen journal, mapping errors to exit codes."""

    async def main() -> T:
        opening = open_runtime(
            store=_db(arguments),
            limits=limits,
            recover=arguments.recover,
            busy_timeout_s=arguments.busy_timeout,
            lease_s=lease_s,
        )
        async with opening as runtime:
            if arguments.recover:
                _report_recovery(runtime)
            with runtime.stop_on(signal.SIGTERM) as stops:
                try:
                    return await work(runtime)
                except (KeyboardInterrupt, BaseExceptionGroup) as error:
                    if not was_interrupted(error):
                        raise
                    raise _interrupted(stops, error) from error

    try:
        return trio.run(main)
    except UnknownRun as error:
        raise _Fail(ExitCode.UNKNOWN_RUN, str(error)) from error
    except CorruptDatabase as error:  # its own message names Python's recover=True too
        raise _Fail(
            ExitCode.STORE_ERROR,
            f"the journal {error.path} is damaged ({error.reason}); it was left in place: "
            f"`trioflow doctor --db {error.path}` shows the damage, and --recover repairs it "
            "or moves it aside (nothing is deleted)",
        ) from error
    except StoreError as error:
        raise _Fail(ExitCode.STORE_ERROR, str(error)) from error
    except (ConfigurationError, HumanInputInvalid, HumanInputRequired, RunNotResumable) as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    except RunTakenOver as error:
        raise _Fail(ExitCode.TAKEN_OVER, str(error)) from error
    except InputRejected as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error


def _interrupted(stops: StopSignals, error: BaseException) -> _Fail:
    code = ExitCode.INTERRUPTED if stops.received is None else ExitCode.TERMINATED
    return _Fail(
        code,
        f"{stops.reason(error)}: a run it had started is stored as interrupted "
        "(`trioflow runs list` shows it, `trioflow resume RUN` goes on with it)",
    )


def _db(arguments: argparse.Namespace) -> JournalLocation:
    return journal_location(arguments.db or None)


def _report_recovery(runtime: Runtime) -> None:
    """Say what ``--recover`` did: where a damaged journal went, or that it was sound."""
    store = runtime.store
    if isinstance(store, SQLiteStore):
        errors = Console(stderr=True, highlight=False, soft_wrap=True)
        done = store.recovered_from
        said = f"the journal {store.path} is sound: nothing to recover" if done is None else done
        errors.print(f"--recover: {said}", markup=False)


def _run_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    loaded = _load(arguments.target)
    _require_default_context(loaded.pipeline)
    data = _parse_input(loaded.pipeline, _read_input(arguments))
    limits = _limits(arguments)
    with _progress(arguments) as progress:
        result, pauses, code = _outcome(
            arguments,
            lambda runtime: runtime.run(
                loaded.pipeline,
                data,
                target=loaded.target,
                target_sha256=loaded.sha256,
                watch=progress,
            ),
            limits,
        )
    _show(console, result, arguments.json, pauses)  # once the live progress has gone
    return code


def _require_default_context(pipeline: Pipeline) -> None:
    """The command line starts every run from ``context_type()``: it must need no arguments."""
    model = pipeline.context_type
    try:
        model()
    except pydantic.ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"pipeline {pipeline.name!r} starts from a {model.__name__} whose field {field!r} "
            f"has no default ({problem['msg']}); the command line starts runs from "
            f"{model.__name__}(), so give {field!r} a default",
        ) from None


def _replay_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def replay(runtime: Runtime) -> Replay:
        with reading_run(arguments.run_id):
            record = await runtime.store.get_run(arguments.run_id)
        return await runtime.replay(arguments.run_id, pipeline=_pipeline_of(record, arguments))

    outcome = _with_runtime(arguments, replay)
    code = ExitCode.OK if outcome.difference is None else ExitCode.PIPELINE_FAILED
    if arguments.json:
        _print_json(console, replay_document(outcome))
        return code
    console.print(
        f"replayed run {outcome.run_id}: {outcome.steps} step(s), no model called", markup=False
    )
    if outcome.result.status is RunStatus.USAGE_LIMIT:
        console.print(f"stopped by the original run's limits: {outcome.result.error}", markup=False)
    if outcome.difference is None:
        console.print("same outputs and context as the original", markup=False)
    else:
        console.print(f"first difference: {inert(str(outcome.difference))}", markup=False)
    return code


def _resume_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    if arguments.queue:
        return _queue_commands.requeue_command(arguments, console)
    text = _read_input(arguments)

    async def resume(runtime: Runtime) -> PipelineResult:
        with reading_run(arguments.run_id):
            record = await runtime.store.get_run(arguments.run_id)
        pipeline = _pipeline_of(record, arguments)
        given = {}
        if text is not None:
            given["human_input"] = await _answer(runtime, arguments, text)
        elif record.status == RunStatus.PAUSED.value:
            await _require_answer(runtime, record.run_id)
        progress.spent_before(await runtime.store.ledger_of(arguments.run_id))
        return await runtime.resume(
            arguments.run_id, path=arguments.path, pipeline=pipeline, watch=progress, **given
        )

    with _progress(arguments) as progress:
        result, pauses, code = _outcome(arguments, resume)
    _show(console, result, arguments.json, pauses)  # once the live progress has gone
    return code


async def _waiting(runtime: Runtime, run_id: str) -> list[PauseRecord]:
    return [pause for pause in await runtime.store.pauses_of(run_id) if pause.answered_at is None]


async def _require_answer(runtime: Runtime, run_id: str) -> None:
    """Refuse to resume a paused run without an answer, saying how to give one."""
    waiting = "; ".join(f"{p.path} ({p.message})" for p in await _waiting(runtime, run_id))
    if not waiting:
        return
    raise _Fail(
        ExitCode.BAD_ARGUMENTS,
        f"run {run_id} waits for input at {waiting}: give the answer with --input ANSWER",
    )


async def _answer(runtime: Runtime, arguments: argparse.Namespace, text: str) -> Any:
    """The resume answer ``text``, parsed for the pause it answers."""
    waiting = await _waiting(runtime, arguments.run_id)
    if arguments.path is None and len(waiting) > 1:
        paths = ", ".join(pause.path for pause in waiting)
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"run {arguments.run_id} waits for input at several steps ({paths}): "
            "say which this answer is for with --path PATH",
        )
    chosen = [pause for pause in waiting if arguments.path in (None, pause.path)]
    return parse_answer(text, chosen[0].input_schema if chosen else None)


def _progress(arguments: argparse.Namespace) -> RunProgress:
    """Live progress on standard error: a panel on a terminal, plain lines otherwise."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    return RunProgress(errors, live=errors.is_terminal and not arguments.quiet)


def _outcome(
    arguments: argparse.Namespace,
    work: Callable[[Runtime], Awaitable[PipelineResult]],
    limits: UsageLimits | None = None,
) -> tuple[PipelineResult, list[PauseRecord], ExitCode]:
    """The result of a run or resume, the pauses it waits at, and the exit code it calls for."""

    async def with_pauses(runtime: Runtime) -> tuple[PipelineResult, list[PauseRecord]]:
        result = await work(runtime)
        if not result.paused_at:
            return result, []
        pauses = await runtime.store.pauses_of(result.run_id)
        return result, [pause for pause in pauses if pause.path in result.paused_at]

    try:
        result, pauses = _with_runtime(arguments, with_pauses, limits)
    except UsageLimitExceeded as breach:
        if breach.result is None:  # raised by a step's own code, not by this run's governor
            raise _Fail(ExitCode.USAGE_LIMIT, str(breach)) from breach
        return breach.result, [], ExitCode.USAGE_LIMIT
    if result.status is RunStatus.PAUSED:
        return result, pauses, ExitCode.PAUSED
    return result, pauses, ExitCode.OK if result.success else ExitCode.PIPELINE_FAILED


def _runs_list_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def page(runtime: Runtime) -> tuple[int, int, list[RunSummary], UnreadableRuns | None]:
        store = runtime.store
        total = await store.count_runs()
        start = 0
        if not arguments.all:
            end = max(0, total - (arguments.page - 1) * arguments.limit)
            start = max(0, end - arguments.limit)
        try:
            runs = await store.list_runs(limit=None if arguments.all else end - start, offset=start)
        except UnreadableRuns as unreadable:  # list the others, then name the bad ones
            return total, start, unreadable.readable, unreadable
        return total, start, runs, None

    total, start, runs, unreadable = _with_runtime(arguments, page)
    if arguments.json:
        _print_json(console, [summary_document(run) for run in runs])
    else:
        console.print(runs_table(runs))
        _say_page(console, arguments, total, start, len(runs))
    if unreadable is not None:
        raise _Fail(ExitCode.STORE_ERROR, str(unreadable))
    return ExitCode.OK


def _say_page(
    console: Console, arguments: argparse.Namespace, total: int, start: int, shown: int
) -> None:
    """Under a page of ``runs list`` that is not every run: which these are, where the rest."""
    if shown >= total:
        return
    listed = f"runs {start + 1}-{start + shown}" if shown else "no runs"
    older = f"; --page {arguments.page + 1} for older ones" if start > 0 else ""
    console.print(f"{listed} of {total}, oldest first{older}", markup=False)


def _runs_prune_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    try:
        policy = PrunePolicy(
            older_than=arguments.older_than,
            keep_last=arguments.keep_last,
            statuses=None if arguments.status is None else frozenset(arguments.status),
            force=arguments.force,
        )
    except ValueError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, _cli_words(str(error))) from error

    async def prune(runtime: Runtime) -> list[RunSummary]:
        return await prune_runs(runtime.store, policy, dry_run=arguments.dry_run)

    removed = _with_runtime(arguments, prune)
    verb = "would remove" if arguments.dry_run else "removed"
    for run in removed:
        started = run.started_at.strftime("%Y-%m-%d %H:%M")
        console.print(
            f"{verb} {run.run_id}  {run.pipeline_name}  {run.status}  {started}", markup=False
        )
    console.print(f"{verb} {len(removed)} run(s)", markup=False)
    return ExitCode.OK


def _cli_words(message: str) -> str:
    """A prune policy's message in the options a command-line user types."""
    for name, option in (
        ("older_than", "--older-than"),
        ("keep_last", "--keep-last"),
        ("statuses", "--status"),
    ):
        message = message.replace(name, option)
    return message


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _age(text: str) -> datetime.timedelta:
    """``90s``, ``45m``, ``12h``, ``30d`` or ``2w`` as a duration."""
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE_UNITS or not number.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: a whole number and a unit, s, m, h, d or w (30d)"
        )
    return datetime.timedelta(seconds=int(number) * _AGE_UNITS[unit])


def _doctor_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    if arguments.recover:  # repair first, then check what is left
        _with_runtime(arguments, _nothing)
    location = _db(arguments)
    if not isinstance(location, Path):
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            "doctor checks the pages of an SQLite journal file; a PostgreSQL journal is "
            "checked by its server (e.g. pg_amcheck)",
        )
    try:
        sound = doctor(console, location, arguments.busy_timeout)
    except StoreError as error:
        raise _Fail(ExitCode.STORE_ERROR, str(error)) from error
    return ExitCode.OK if sound else ExitCode.STORE_ERROR


async def _nothing(runtime: Runtime) -> None:
    return None


def _runs_show_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    async def show(runtime: Runtime) -> Any:
        store = runtime.store
        run_id = arguments.run_id
        with reading_run(run_id):
            return (
                await store.get_run(run_id),
                await store.steps_of(run_id),
                await store.pauses_of(run_id),
            )

    record, steps, pauses = _with_runtime(arguments, show)
    if arguments.json:
        _print_json(console, run_document(record, steps, pauses))
    else:
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
        console.out(trace_json(trace, roots), highlight=False)
    else:
        print_trace(console, trace, roots)
    return ExitCode.OK


def _graph_command(arguments: argparse.Namespace, console: Console) -> ExitCode:
    sys.stdout.write(picture(_load(arguments.target).pipeline, arguments.format))
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], ExitCode]] = {
    "graph": _graph_command,
    "run": _run_command,
    "resume": _resume_command,
    "runs list": _runs_list_command,
    "runs show": _runs_show_command,
    "runs prune": _runs_prune_command,
    "trace": _trace_command,
    "replay": _replay_command,
    "doctor": _doctor_command,
    "submit": _queue_commands.submit_command,
    "worker": _queue_commands.worker_command,
}


def _load(target: str) -> LoadedPipeline:
    loaded = _loading_errors(lambda: load_target(target))
    try:
        check_nesting(loaded.pipeline)  # before anything walks it recursively
    except ConfigurationError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    return loaded


def _pipeline_of(record: RunRecord, arguments: argparse.Namespace) -> Pipeline:
    """The run's pipeline: ``--pipeline`` if given, else its journaled file if unchanged."""
    if arguments.pipeline is not None:
        return _load(arguments.pipeline).pipeline
    target = record.target
    if target is None:
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"run {record.run_id} was started from Python, so the journal does not say where "
            f"its pipeline {record.pipeline_name!r} is: give --pipeline FILE:NAME",
        )
    return _loading_errors(lambda: load_recorded(target, record.target_sha256, record.run_id))


def _loading_errors(load: Callable[[], T]) -> T:
    try:
        return load()
    except TargetError as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    except UserImportError as error:
        raise _Fail(ExitCode.IMPORT_ERROR, f"cannot import the pipeline file: {error}") from error


def _show(
    console: Console,
    result: PipelineResult,
    as_json: bool,
    pauses: Sequence[PauseRecord] = (),
) -> None:
    if as_json:
        console.out(result_json(result, pauses), highlight=False)
    else:
        print_result(console, result, pauses)


def _print_json(console: Console, document: Any) -> None:
    """``document`` as ASCII JSON: written as is, never re-rendered (see ``_documents``)."""
    console.out(json_text(document), highlight=False)


def _read_input(arguments: argparse.Namespace) -> str | None:
    limit = arguments.max_input_bytes
    try:
        if arguments.input is not None:
            return input_from_argument(arguments.input, limit=limit)
        if arguments.input_file is not None:
            return input_from_file(arguments.input_file, limit=limit)
        if not sys.stdin.isatty():
            return input_from_stdin(limit=limit) or None
    except InputRejected as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error
    return None


def _parse_input(pipeline: Pipeline, text: str | None) -> Any:
    expected = cli_input_type(pipeline)
    first = pipeline.steps[0].name
    if expected is type(None):
        return None
    if text is None:
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"the first step {first!r} needs an input ({type_name(expected)}): "
            "give --input, --input-file or standard input",
        )
    try:
        return parse_input(text, expected, first=first)
    except InputRejected as error:
        raise _Fail(ExitCode.BAD_ARGUMENTS, str(error)) from error


def _limits(arguments: argparse.Namespace) -> UsageLimits | None:
    if arguments.max_cost is None and arguments.max_tokens is None:
        return None
    return UsageLimits(total_cost_usd=_max_cost(arguments), total_tokens=_max_tokens(arguments))


def _max_cost(arguments: argparse.Namespace) -> Decimal | None:
    text = arguments.max_cost
    if text is None:
        return None
    try:
        cost = Decimal(text)
    except ArithmeticError:
        cost = Decimal("NaN")
    if not cost.is_finite() or cost < 0:
        raise _Fail(
            ExitCode.BAD_ARGUMENTS,
            f"--max-cost takes a number of dollars, 0 or more (like 0.50), got {text!r}",
        )
    return cost


def _max_tokens(arguments: argparse.Namespace) -> int | None:
    tokens: int | None = arguments.max_tokens
    if tokens is not None and tokens < 0:
        raise _Fail(ExitCode.BAD_ARGUMENTS, f"--max-tokens takes 0 or more, got {tokens}")
    return tokens
