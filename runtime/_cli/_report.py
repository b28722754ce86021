"""How the command line shows a run's result: a table for people, JSON for machines."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from trioflow.persistence import PauseRecord, RunRecord, RunSummary, StepRecord

from .._money import format_usd
from .._paths import is_within
from .._results import PipelineResult, StepResult
from .._safe_text import shown
from ._documents import json_text, pause_document


def _flatten(history: tuple[StepResult, ...], depth: int = 0) -> list[tuple[int, StepResult]]:
    """Every result with its nesting depth: nested pipelines' and fallbacks' inner steps."""
    rows: list[tuple[int, StepResult]] = []
    for result in history:
        rows.append((depth, result))
        rows.extend(_flatten(result.step_history, depth + 1))
    return rows


def _status(step: StepResult, paused_at: tuple[str, ...]) -> str:
    if step.success:
        return "ok"
    waiting = any(is_within(path, step.path) for path in paused_at)
    return "paused" if waiting else "failed"


def steps_table(result: PipelineResult) -> Table:
    table = Table(title="steps", title_justify="left")
    table.add_column("path", overflow="fold")
    for column in ("status", "attempts", "seconds", "cost", "tokens"):
        table.add_column(column, justify="right")
    for depth, step in _flatten(result.step_history):
        table.add_row(
            "  " * depth + shown(step.path),
            _status(step, result.paused_at),
            str(step.attempts),
            f"{step.latency_s:.3f}",
            format_usd(step.usage.cost_usd),
            str(step.usage.total_tokens),
        )
    return table


def print_result(
    console: Console, result: PipelineResult, pauses: Sequence[PauseRecord] = ()
) -> None:
    """The step table, the pauses waiting (``pauses``), then the output, totals, status, run id."""
    console.print(steps_table(result))
    for pause in pauses:
        console.print(
            f"[bold yellow]paused:[/] waiting for input at {shown(pause.path)}: "
            f"{shown(pause.message)}"
        )
    if result.paused_at:
        console.print(f"resume with: trioflow resume {result.run_id} --input ANSWER")
    if result.error is not None:
        console.print(f"[bold red]error:[/] {shown(result.error)}", highlight=False)
    console.print(f"[bold]output:[/] {shown(result.output)}", highlight=False)
    console.print(
        f"[bold]status:[/] {result.status.value}   [bold]cost:[/] "
        f"{format_usd(result.usage.cost_usd)}   [bold]tokens:[/] {result.usage.total_tokens}"
        f"   [bold]run:[/] {result.run_id}",
        highlight=False,
    )


def result_json(result: PipelineResult, pauses: Sequence[PauseRecord] = ()) -> str:
    """The result as one JSON document (money as exact decimal strings), with its ``pauses``."""
    document: dict[str, Any] = {
        "run_id": result.run_id,
        "status": result.status.value,
        "output": result.output,
        "error": result.error,
        "total_cost_usd": str(result.usage.cost_usd),
        "total_tokens": result.usage.total_tokens,
        "steps": [
            {
                "path": step.path,
                "success": step.success,
                "attempts": step.attempts,
                "latency_s": step.latency_s,
                "cost_usd": str(step.usage.cost_usd),
                "input_tokens": step.usage.input_tokens,
                "output_tokens": step.usage.output_tokens,
                "feedback": step.feedback,
            }
            for _, step in _flatten(result.step_history)
        ],
        "paused": [pause_document(pause) for pause in pauses],
    }
    return json_text(document)


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """One line per run: id, pipeline, status, start, cost and tokens."""
    table = Table(title="runs", title_justify="left")
    table.add_column("run", no_wrap=True, min_width=32)
    for column in ("pipeline", "status", "started (UTC)"):
        table.add_column(column, overflow="fold")
    table.add_column("cost", justify="right")
    table.add_column("tokens", justify="right")
    for run in runs:
        table.add_row(
            run.run_id,
            shown(run.pipeline_name),
            run.status,
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            format_usd(Decimal(run.total_cost_usd)),
            str(run.total_tokens),
        )
    return table


def print_run(
    console: Console,
    run: RunRecord,
    steps: Sequence[StepRecord],
    pauses: Sequence[PauseRecord],
) -> None:
    """A journaled run: its record, completion records and pauses."""
    console.print(f"[bold]run:[/] {run.run_id}   [bold]pipeline:[/] {shown(run.pipeline_name)}")
    console.print(
        f"[bold]status:[/] {run.status}   [bold]cost:[/] "
        f"{format_usd(Decimal(run.total_cost_usd))}   [bold]tokens:[/] {run.total_tokens}"
    )
    if run.error is not None:
        console.print(f"[bold red]error:[/] {shown(run.error)}")
    table = Table(title="completed steps", title_justify="left")
    table.add_column("path", overflow="fold")
    for column in ("status", "attempts", "cost", "tokens"):
        table.add_column(column, justify="right")
    for step in steps:
        table.add_row(
            shown(step.path),
            "ok" if step.success else "failed",
            str(step.attempts),
            format_usd(Decimal(step.cost_usd)),
            str(step.input_tokens + step.output_tokens),
        )
    console.print(table)
    for pause in pauses:
        state = "answered" if pause.answered_at is not None else "waiting"
        console.print(f"[bold]pause[/] {shown(pause.path)} ({state}): {shown(pause.message)}")
    console.print(f"[bold]output:[/] {shown(run.output)}")
