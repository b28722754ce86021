"""The run queue's commands: ``trioflow submit``, ``trioflow worker`` and ``resume --queue``.

* ``trioflow submit FILE.py:NAME --input ... --db postgresql://...`` stores
  a queued run (checked as ``run`` checks it, nothing run) and prints its id.
* ``trioflow worker --db postgresql://... --concurrency N`` drives runnable
  runs (:mod:`.._queue`) until stopped (SIGTERM or Ctrl-C: the runs it was
  driving are stored ``interrupted``, and another worker goes on with
  them); one line per run it drove. It imports a run's pipeline from the
  run's stored ``FILE.py:NAME`` only while the file still has the sha256
  journaled when the run was submitted (the rule of ``resume``); a run it
  may not import is left as it is and said so.
* ``trioflow resume RUN --input ANSWER --queue`` stores the answer to a
  paused run and queues it again, for a worker on any host.

The helpers shared with the other commands (input, limits, errors) are
``_commands``'s, reached through the module at call time.
"""

from __future__ import annotations

import argparse
import math
import sys

from rich.console import Console
from trioflow.persistence import RunRecord

from .._dsl._pipeline import Pipeline
from .._lease import DEFAULT_LEASE_S
from .._queue import DEFAULT_POLL_S, PipelineOf, PipelineUnavailable, Worker, require_queue
from .._runtime import Runtime
from .._stored import reading_run
from . import _commands as cli
from ._loading import TargetError, UserImportError, load_recorded


def add_queue_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    journal: argparse.ArgumentParser,
) -> None:
    """``submit`` and ``worker``, next to the other commands."""
    submit = commands.add_parser(
        "submit", parents=[journal], help="queue a run of a pipeline for a worker"
    )
    submit.add_argument("target", metavar="FILE.py:NAME", help="the file and the pipeline's name")
    cli._input_arguments(submit)
    submit.add_argument("--max-cost", metavar="USD", help="stop the run above this cost")
    submit.add_argument("--max-tokens", metavar="N", type=int, help="stop the run above N tokens")
    submit.add_argument("--json", action="store_true", help="print the run's id as JSON")
    worker = commands.add_parser(
        "worker", parents=[journal], help="drive queued runs (a PostgreSQL journal)"
    )
    worker.add_argument(
        "--concurrency", type=cli._positive, default=1, help="runs driven at once (1)"
    )
    worker.add_argument(
        "--poll",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_POLL_S,
        help=f"look for runnable runs this often when not woken (default: {DEFAULT_POLL_S:g})",
    )
    worker.add_argument(
        "--lease",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_LEASE_S,
        help="how long a run this worker drives stays its own unless renewed "
        f"(default: {DEFAULT_LEASE_S:g})",
    )


def _positive_seconds(text: str) -> float:
    seconds = cli._seconds(text)
    if seconds == 0 or not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def submit_command(arguments: argparse.Namespace, console: Console) -> cli.ExitCode:
    loaded = cli._load(arguments.target)
    cli._require_default_context(loaded.pipeline)
    data = cli._parse_input(loaded.pipeline, cli._read_input(arguments))
    limits = cli._limits(arguments)

    async def submit(runtime: Runtime) -> str:
        require_queue(runtime.store)
        return await runtime.submit(
            loaded.pipeline, data, limits=limits, target=loaded.target, target_sha256=loaded.sha256
        )

    run_id = cli._with_runtime(arguments, submit)
    if arguments.json:
        cli._print_json(console, {"run_id": run_id, "status": "queued"})
    else:
        console.print(run_id, markup=False)
    return cli.ExitCode.OK


def worker_command(arguments: argparse.Namespace, console: Console) -> cli.ExitCode:
    def say(line: str) -> None:
        console.print(line, markup=False)
        sys.stdout.flush()  # a worker's lines are read as they come (a log, a pipe)

    async def work(runtime: Runtime) -> None:
        worker = Worker(
            runtime,
            pipeline_finder(),
            say,
            concurrency=arguments.concurrency,
            poll_s=arguments.poll,
        )
        say(f"worker {worker.name}: driving up to {worker.concurrency} run(s) at once")
        await worker.run()

    try:
        cli._with_runtime(arguments, work, lease_s=arguments.lease)
    except cli._Fail as failure:
        if failure.code not in {cli.ExitCode.TERMINATED, cli.ExitCode.INTERRUPTED}:
            raise
        # How a worker is meant to stop: not a failure.
        say("worker stopped: any run it was driving is stored interrupted, for another worker")
    return cli.ExitCode.OK


def pipeline_finder() -> PipelineOf:
    """Finds a run's pipeline by its stored ``FILE.py:NAME``, if the file is unchanged.

    Each file is imported once per content (its sha256): every run of it
    shares the pipeline, as the runs of one ``trioflow run`` would.
    """
    found: dict[tuple[str, str | None], Pipeline] = {}

    def pipeline_of(record: RunRecord) -> Pipeline:
        target = record.target
        if target is None:
            raise PipelineUnavailable(
                f"run {record.run_id} was started from Python, so the journal does not say "
                f"where its pipeline {record.pipeline_name!r} is"
            )
        key = (target, record.target_sha256)
        if key not in found:
            try:
                found[key] = load_recorded(target, record.target_sha256, record.run_id)
            except (TargetError, UserImportError) as error:
                raise PipelineUnavailable(str(error)) from error
        return found[key]

    return pipeline_of


def requeue_command(arguments: argparse.Namespace, console: Console) -> cli.ExitCode:
    """``resume RUN --input ANSWER --queue``: store the answer, queue the run again."""
    text = cli._read_input(arguments)
    if text is None:
        raise cli._Fail(
            cli.ExitCode.BAD_ARGUMENTS, "--queue stores an answer: give it with --input ANSWER"
        )

    async def requeue(runtime: Runtime) -> None:
        require_queue(runtime.store)
        with reading_run(arguments.run_id):
            record = await runtime.store.get_run(arguments.run_id)
        pipeline = cli._pipeline_of(record, arguments)
        answer = await cli._answer(runtime, arguments, text)
        await runtime.requeue(arguments.run_id, answer, path=arguments.path, pipeline=pipeline)

    cli._with_runtime(arguments, requeue)
    console.print(f"run {arguments.run_id}: answered and queued for a worker", markup=False)
    return cli.ExitCode.OK
