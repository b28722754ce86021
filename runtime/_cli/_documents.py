"""The JSON documents the command line prints with ``--json``, for scripts.

One shape per command, documented in the README (``The command line``).
Money is an exact decimal string, times are ISO 8601 in UTC, and every
document is ASCII: ``json.dumps`` writes control characters and lone
surrogates from stored text as ``\\u`` escapes, so the output is inert on a
terminal and valid for any JSON parser. Values the journal stores that JSON
does not know (pydantic models, dates, sets...) are written as pydantic
writes them, anything else as its ``repr``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import pydantic_core
from trioflow.persistence import PauseRecord, RunRecord, RunSummary, StepRecord

from .._replay import Replay


def json_text(document: Any) -> str:
    """``document`` as indented, ASCII-only JSON text."""
    plain = pydantic_core.to_jsonable_python(document, fallback=repr)
    return json.dumps(plain, indent=2, ensure_ascii=True)


def pause_document(pause: PauseRecord) -> dict[str, Any]:
    """A pause: where it waits, what it asks, the answer's JSON schema and the answer."""
    return {
        "path": pause.path,
        "message": pause.message,
        "input_schema": pause.input_schema,
        "answered": pause.answered_at is not None,
        "answer": pause.answer,
    }


def summary_document(run: RunSummary) -> dict[str, Any]:
    """A run as ``trioflow runs list --json`` gives it: no stored payloads."""
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline_name,
        "status": run.status,
        "started_at": _utc(run.started_at),
        "finished_at": None if run.finished_at is None else _utc(run.finished_at),
        "total_cost_usd": run.total_cost_usd,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "paused_at": list(run.paused_at),
    }


def run_document(
    run: RunRecord, steps: Sequence[StepRecord], pauses: Sequence[PauseRecord]
) -> dict[str, Any]:
    """A run as ``trioflow runs show RUN --json`` gives it: summary, payloads, steps, pauses."""
    return {
        **summary_document(run.summary()),
        "target": run.target,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "steps": [
            {
                "path": step.path,
                "success": step.success,
                "attempts": step.attempts,
                "cost_usd": step.cost_usd,
                "input_tokens": step.input_tokens,
                "output_tokens": step.output_tokens,
                "output": step.output,
                "feedback": step.feedback,
            }
            for step in steps
        ],
        "pauses": [pause_document(pause) for pause in pauses],
    }


def replay_document(replay: Replay) -> dict[str, Any]:
    """A replay as ``trioflow replay RUN --json`` gives it: the first difference or none."""
    difference = replay.difference
    return {
        "run_id": replay.run_id,
        "steps": replay.steps,
        "identical": difference is None,
        "difference": None
        if difference is None
        else {
            "path": difference.path,
            "field": difference.field,
            "original": difference.original,
            "replayed": difference.replayed,
        },
    }


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat()
