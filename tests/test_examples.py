"""Every example runs, and does what its docstring says it shows."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_example_is_tested() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == [
        "budgeted_research.py",
        "draft_critique_revise.py",
    ]


def test_draft_critique_revise_as_a_script() -> None:
    done = _run(str(EXAMPLES / "draft_critique_revise.py"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "main/0:draft                 attempts=1 cost=$0.000318, 26 tokens",
        "main/1:keep_draft            attempts=1 cost=$0.00, 0 tokens",
        "main/2:critique              attempts=1 cost=$0.000165, 27 tokens",
        "main/3:revision_prompt       attempts=1 cost=$0.00, 0 tokens",
        "main/4:revise                attempts=2 cost=$0.001107, 153 tokens",
        "main/5:polish                attempts=3 cost=$0.000588, 64 tokens",
    ]
    assert lines[6] == (
        "output: A short essay on structured concurrency: it matters because tasks end "
        "together. In conclusion, structure beats callbacks. [polished]"
    )
    assert lines[7] == "notes: ['Too short; add a conclusion.']"
    total = Decimal("0.000318") + Decimal("0.000165") + Decimal("0.001107") + Decimal("0.000588")
    assert lines[8] == f"total: ${total}, 270 tokens"


def test_budgeted_research_stops_before_the_call_that_could_go_over() -> None:
    done = _run(str(EXAMPLES / "budgeted_research.py"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "stopped: Cost limit of $0.015 would be exceeded: step 'main/3:write_report' needs "
        "up to $0.0057, 124 tokens with $0.011415 committed and $0.00 reserved"
    )
    assert [line.split()[0] for line in lines[1:5]] == [
        "main/0:plan",
        "main/1:search",
        "main/2:summarize",
        "main/3:write_report",
    ]
    assert lines[4].split(maxsplit=1)[1] == "$0.00, 0 tokens"
    assert lines[5] == "  total spent: $0.011415, 217 tokens (budget $0.015)"


@pytest.mark.parametrize(
    ("target", "input_text", "extra", "code"),
    [
        ("draft_critique_revise.py:pipeline", "structured concurrency", [], 0),
        ("budgeted_research.py:pipeline", "trio nurseries", ["--max-cost", "0.015"], 3),
    ],
)
def test_examples_through_the_command_line(
    target: str, input_text: str, extra: list[str], code: int
) -> None:
    done = _run(
        "-m", "trioflow.runtime", "run", str(EXAMPLES / target), "--input", input_text, *extra
    )
    assert done.returncode == code, done.stderr
