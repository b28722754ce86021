"""How the command line shows a run's result: a table for people, JSON for machines."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._money import format_usd
from ._results import PipelineResult, StepResult


def _flatten(history: tuple[StepResult, ...], depth: int = 0) -> list[tuple[int, StepResult]]:
    """Every result with its nesting depth: nested pipelines' and fallbacks' inner steps."""
    rows: list[tuple[int, StepResult]] = []
    for result in history:
        rows.append((depth, result))
        rows.extend(_flatten(result.step_history, depth + 1))
    return rows


def steps_table(result: PipelineResult) -> Table:
    table = Table(title="steps", title_justify="left")
    table.add_column("path", overflow="fold")
    for column in ("status", "attempts", "seconds", "cost", "tokens"):
        table.add_column(column, justify="right")
    for depth, step in _flatten(result.step_history):
        table.add_row(
            "  " * depth + step.path,
            "ok" if step.success else "failed",
            str(step.attempts),
            f"{step.latency_s:.3f}",
            format_usd(step.usage.cost_usd),
            str(step.usage.total_tokens),
        )
    return table


def print_result(console: Console, result: PipelineResult) -> None:
    """The step table, then the output, totals, status and run id."""
    console.print(steps_table(result))
    if result.error is not None:
        console.print(f"[bold red]error:[/] {escape(result.error)}", highlight=False)
    console.print(f"[bold]output:[/] {escape(str(result.output))}", highlight=False)
    console.print(
        f"[bold]status:[/] {result.status.value}   [bold]cost:[/] "
        f"{format_usd(result.usage.cost_usd)}   [bold]tokens:[/] {result.usage.total_tokens}"
        f"   [bold]run:[/] {result.run_id}",
        highlight=False,
    )


def result_json(result: PipelineResult) -> str:
    """The result as one JSON document (money as exact decimal strings)."""
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
    }
    return json.dumps(json.loads(pydantic_core.to_json(document, fallback=repr)), indent=2)
