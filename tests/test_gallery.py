"""The examples gallery: each example runs offline and shows what its docstring says.

(``tests/test_examples.py`` covers the first examples and checks that
every file in ``examples/`` is tested somewhere.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _python(*arguments: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TRIOFLOW_DB": str(db)},
    )


def test_refine_loop(tmp_path: Path) -> None:
    done = _python(str(EXAMPLES / "refine_loop.py"), db=tmp_path / "j.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:7] == [
        "status: completed",
        "iterations: 3 (exit: condition)",
        "  main/1:refine/loop[1]: edit attempts=2",
        "  main/1:refine/loop[2]: edit attempts=2",
        "  main/1:refine/loop[3]: edit attempts=2",
        "version: 3",
        "output: On structured concurrency. Another detail. Another detail. Another detail. Done.",
    ]


def test_research_fanout(tmp_path: Path) -> None:
    done = _python(str(EXAMPLES / "research_fanout.py"), db=tmp_path / "j.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:5] == [
        "status: completed",
        "branches: ['main/0:research/history', 'main/0:research/practice', "
        "'main/0:research/pitfalls']",
        "findings: ['the history of trio nurseries', 'the practice of trio nurseries', "
        "'the pitfalls of trio nurseries']",
        "sources: {'history': 'history-model', 'practice': 'practice-model', "
        "'pitfalls': 'pitfalls-model'}",
        "output: 3 findings from history, pitfalls, practice",
    ]


def test_batch_map_stops_at_its_budget(tmp_path: Path) -> None:
    done = _python(str(EXAMPLES / "batch_map.py"), db=tmp_path / "j.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "stopped: Cost limit of $0.005 would be exceeded",
        "finished items: 11",
        "never started: 5",
        "total spent: $0.00198, 88 tokens (budget $0.005)",
    ]


def test_router(tmp_path: Path) -> None:
    done = _python(str(EXAMPLES / "router.py"), db=tmp_path / "j.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "'integrate x squared, then write a haiku': chose ['math', 'poetry'], completed, "
        "$0.0006, 64 tokens",
        "  math: math answer to: integrate x squared, then write a haiku",
        "  poetry: poetry answer to: integrate x squared, then write a haiku",
        "'what is the weather?': chose [], completed, $0.00003, 6 tokens",
    ]


def test_crash_and_resume() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "crash_resume.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "the first process died (exit -9)"
    assert re.fullmatch(r"run [0-9a-f]{32} was left 'running'", lines[1])
    assert lines[2:7] == [
        "waiting for the dead process's lease to run out",
        "resuming",
        "status: completed",
        "output: report: analysis of facts about trio",
        "total: $0.06, 135 tokens",
    ]
    ran = [line.split() for line in lines[8:]]
    first, second = ran[0][1], ran[-1][1]
    assert first != second
    # The committed steps ran once, in the first process; the step in flight ran again
    # in the second, with the same idempotency key.
    assert [(pid, path, key) for _, pid, _, path, key in ran] == [
        (first, "main/0:fetch", "key=main/0:fetch#1#1"),
        (first, "main/1:analyse", "key=main/1:analyse#1#1"),
        (first, "main/2:report", "key=main/2:report#1#1"),
        (second, "main/2:report", "key=main/2:report#1#1"),
    ]


def test_human_approval_across_two_processes(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    target = f"{EXAMPLES / 'human_approval.py'}:pipeline"
    paused = _python("-m", "trioflow.runtime", "run", target, "--input", "launch notes", db=db)
    assert paused.returncode == 5, paused.stderr
    [run_id] = re.findall(r"trioflow resume ([0-9a-f]{32}) --input ANSWER", paused.stdout)

    refused = _python(
        "-m", "trioflow.runtime", "resume", run_id, "--input", '{"approved": "perhaps"}', db=db
    )
    assert refused.returncode == 2
    assert "the answer for 'main/1:approve' does not fit its schema" in refused.stderr
    assert "the run stays paused" in refused.stderr

    answer = '{"approved": true, "note": "ship it"}'
    resumed = _python("-m", "trioflow.runtime", "resume", run_id, "--input", answer, db=db)
    assert resumed.returncode == 0, resumed.stderr
    assert "output: published after 1 review(s): ship it" in resumed.stdout
    # The draft was restored from the journal, not paid for again.
    assert f"status: completed   cost: $0.000114   tokens: 10   run: {run_id}" in resumed.stdout
