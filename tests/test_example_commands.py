"""Every command the examples' docstrings and the README's examples table tell a user to type.

The commands are read from the files themselves (a docstring's ``Run it::``
block, the table's ``run`` column), so a command edited there is tested as
written; each must have an expectation below (exit code and a line of its
output), so a new command cannot go untested. ``RUN`` in a command is the
run id the file's previous command printed. They run as a user runs them
from the repository root with the virtual environment active: ``trioflow``
is this Python's ``trioflow`` and ``python`` is this Python.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: command -> (exit code, a line its standard output must contain).
EXPECTED: dict[str, tuple[int, str]] = {
    "python examples/batch_map.py": (0, "total spent: $0.00198, 88 tokens (budget $0.005)"),
    """trioflow run examples/batch_map.py:pipeline --input '["a", "b", "c"]' --max-cost 0.005""": (
        0,
        "output: ['tags for a', 'tags for b', 'tags for c']\n"
        "status: completed   cost: $0.0003   tokens: 12",
    ),
    "python examples/budgeted_research.py": (0, "  total spent: $0.011415, 217 tokens"),
    'trioflow run examples/budgeted_research.py:pipeline --input "trio nurseries" '
    "--max-cost 0.015": (3, "status: usage_limit   cost: $0.011415   tokens: 217"),
    "python examples/crash_resume.py": (0, "status: completed\n"),
    'trioflow run examples/draft_critique_revise.py:pipeline --input "structured concurrency"': (
        0,
        "status: completed   cost: $0.002178   tokens: 270",
    ),
    "python examples/draft_critique_revise.py": (0, "total: $0.002178, 270 tokens"),
    'trioflow run examples/human_approval.py:pipeline --input "launch notes"': (
        5,
        "paused: waiting for input at main/1:approve: Publish this draft?",
    ),
    """trioflow resume RUN --input '{"approved": true, "note": "ship it"}'""": (
        0,
        "output: published after 1 review(s): ship it\n"
        "status: completed   cost: $0.000114   tokens: 10",
    ),
    'python examples/real_model.py "structured concurrency"': (
        0,
        "total: $0.000738, 54 tokens (budget $0.05)",
    ),
    'trioflow run examples/real_model.py:pipeline --input "structured concurrency"': (
        0,
        "output: TRIAL: 2 strengths, 2 risks\nstatus: completed   cost: $0.000738   tokens: 54",
    ),
    "python examples/refine_loop.py": (0, "total: $0.001827, 237 tokens"),
    'trioflow run examples/refine_loop.py:pipeline --input "structured concurrency"': (
        0,
        "status: completed   cost: $0.001827   tokens: 237",
    ),
    "python examples/research_fanout.py": (0, "total: $0.000396, 36 tokens"),
    'trioflow run examples/research_fanout.py:pipeline --input "trio nurseries"': (
        0,
        "output: 3 findings from history, pitfalls, practice\n"
        "status: completed   cost: $0.000396   tokens: 36",
    ),
    "python examples/router.py": (0, "'what is the weather?': chose [], completed, $0.00003, 6"),
    'trioflow run examples/router.py:pipeline --input "integrate x squared, then write a haiku"': (
        0,
        "status: completed   cost: $0.0006   tokens: 64",
    ),
}

#: Commands that need a model endpoint: tests/test_examples.py runs them against a fake one.
NEEDS_AN_ENDPOINT = {
    'OPENAI_API_KEY=sk-... python examples/real_model.py "structured concurrency"',
    "OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=llama3.2 "
    'python examples/real_model.py "structured concurrency"',
}


def docstring_commands(path: Path) -> list[str]:
    """The commands in the literal blocks (``::``) of ``path``'s docstring, in order."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    commands: list[str] = []
    for block in re.findall(r"::\n\n((?:    .*\n?|\n)+)", docstring):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def readme_commands() -> list[str]:
    """The commands in the ``run`` column of the README's examples table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Examples", 1)[1].split("\n\n", 2)[1:3]
    rows = [line for part in table for line in part.splitlines() if line.startswith("| `")]
    return [
        command
        for row in rows
        for command in re.findall(r"`([^`]+)`", row.rsplit("|", 2)[1])
        if command.split()[0] in ("python", "trioflow")
    ]


def files_and_commands() -> list[tuple[str, list[str]]]:
    return [(path.name, docstring_commands(path)) for path in sorted(EXAMPLES.glob("*.py"))]


def test_every_command_has_an_expectation() -> None:
    written = {command for _, commands in files_and_commands() for command in commands}
    assert written == set(EXPECTED) | NEEDS_AN_ENDPOINT
    assert set(readme_commands()) <= set(EXPECTED)
    assert len(readme_commands()) == 11


def _environment(tmp_path: Path) -> dict[str, str]:
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL")
    }
    return {**kept, "TRIOFLOW_DB": str(tmp_path / "runs.db")}


def _argv(command: str) -> list[str]:
    program, *arguments = shlex.split(command)
    runner = {"trioflow": [sys.executable, "-m", "trioflow.runtime"], "python": [sys.executable]}
    return [*runner[program], *arguments]


@pytest.mark.parametrize(
    ("example", "commands"),
    [(name, commands) for name, commands in files_and_commands() if commands],
)
def test_the_commands_of_an_example_work_as_written(
    example: str, commands: list[str], tmp_path: Path
) -> None:
    run_id = None
    for command in commands:
        if command in NEEDS_AN_ENDPOINT:
            continue
        code, line = EXPECTED[command]
        typed = command if run_id is None else command.replace(" RUN ", f" {run_id} ")
        done = subprocess.run(
            _argv(typed),
            cwd=ROOT,
            env=_environment(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (done.returncode, done.stderr if done.returncode != code else "") == (code, "")
        assert line in done.stdout, f"{command}\n{done.stdout}"
        found = re.search(r"run: ([0-9a-f]{32})", done.stdout)
        run_id = found.group(1) if found else run_id
