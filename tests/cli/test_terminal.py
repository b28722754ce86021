"""The command line on a real terminal: a pseudo-terminal, its screen read by a terminal emulator.

Each test starts ``python -m trioflow.runtime`` in a new session whose
controlling terminal is a pseudo-terminal (so Ctrl-C typed there is
SIGINT), reads everything it draws into pyte, and checks the final screen
as a person would see it, the exit code and the journal.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyte
import pytest
import trio
from trioflow.persistence import PauseRecord, RunRecord, SQLiteStore, StepRecord
from trioflow.runtime._cli._commands import ExitCode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PIPELINES = Path(__file__).resolve().parent / "terminal_pipelines.py"
COLUMNS, LINES = 200, 60
#: How long a command may take before the test gives up on it (a deadline, not a measurement).
PATIENCE_S = 120.0
PROGRESS_LINE = re.compile(
    r"^(done|failed|refused|over limit|paused|cancelled|restored) +(\S+) +\d+\.\d{3}s +spent (\S+)$"
)


class Terminal:
    """One command under a pseudo-terminal of COLUMNS x LINES, drawn into a pyte screen."""

    def __init__(self, *arguments: str) -> None:
        self.screen = pyte.Screen(COLUMNS, LINES)
        self._stream = pyte.ByteStream(self.screen)
        self._master, tty = os.openpty()
        fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE")
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trioflow.runtime", *arguments],
            stdin=tty,
            stdout=tty,
            stderr=tty,
            env={**environment, "TERM": "xterm-256color"},
            preexec_fn=_own_terminal,
        )
        os.close(tty)
        self._closed = False

    def wait_for(self, text: str) -> None:
        """Read what the command draws until ``text`` is on the screen."""
        while text not in self.text():
            if not self._read(PATIENCE_S):
                raise AssertionError(f"{text!r} never appeared; the screen:\n{self.text()}")

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def finish(self) -> int:
        """Read the rest of the output; the exit code."""
        while self._read(PATIENCE_S):
            pass
        return self.process.wait(PATIENCE_S)

    def close(self) -> None:
        """End the command if a failed test left it running; close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PATIENCE_S)
        os.close(self._master)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def progress(self) -> list[tuple[str, str, str]]:
        """The progress lines on the screen: ``(status, step path, spent so far)``."""
        return [
            (found[1], found[2], found[3])
            for line in self.text().splitlines()
            if (found := PROGRESS_LINE.match(line)) is not None
        ]

    def line_starting(self, prefix: str) -> str:
        (found,) = [line for line in self.text().splitlines() if line.startswith(prefix)]
        return found

    def _read(self, patience: float) -> bool:
        """Feed the screen what the command wrote; False once it has closed the terminal."""
        if self._closed:
            return False
        ready, _, _ = select.select([self._master], [], [], patience)
        if not ready:
            raise AssertionError(f"the command drew nothing for {patience}s:\n{self.text()}")
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: every end of the terminal is closed, the command is gone
            data = b""
        if not data:
            self._closed = True
            return False
        self._stream.feed(data)
        return True


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pseudo-terminal.

    Ctrl-C typed there then reaches it as SIGINT, and SIGINT and SIGTERM
    have their default handling even when the test runner ignores them.
    """
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _journal(db: Path, run_id: str) -> tuple[RunRecord, list[StepRecord], list[PauseRecord]]:
    async def read() -> tuple[RunRecord, list[StepRecord], list[PauseRecord]]:
        async with SQLiteStore.open(db) as store:
            return (
                await store.get_run(run_id),
                list(await store.steps_of(run_id)),
                list(await store.pauses_of(run_id)),
            )

    return trio.run(read)


def _only_run(db: Path) -> str:
    async def runs() -> list[str]:
        async with SQLiteStore.open(db) as store:
            return [run.run_id for run in await store.list_runs()]

    (run_id,) = trio.run(runs)
    return run_id


def _steps(steps: Sequence[StepRecord]) -> list[tuple[str, bool, int, str]]:
    return [(step.path, step.success, step.attempts, step.cost_usd) for step in steps]


def _run_id(terminal: Terminal) -> str:
    found = re.search(r"run: ([0-9a-f]{32})$", terminal.line_starting("status: "))
    assert found is not None, terminal.text()  # narrows Optional: the id is random
    return found[1]


Start = Callable[..., Terminal]


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts commands under pseudo-terminals; each is ended and closed after the test."""
    started: list[Terminal] = []

    def starting(*arguments: str) -> Terminal:
        started.append(Terminal(*arguments))
        return started[-1]

    yield starting
    for terminal in started:
        terminal.close()


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file that lets ``gated``'s second step finish; ``first``'s runs are counted beside it."""
    monkeypatch.setenv("TRIOFLOW_TEST_GATE", str(tmp_path / "gate"))
    monkeypatch.setenv("TRIOFLOW_TEST_RUNS", str(tmp_path / "first-ran"))
    return tmp_path / "gate"


def _first_ran(gate: Path) -> int:
    return len((gate.parent / "first-ran").read_text().splitlines())


def test_run_shows_each_step_and_the_result(start: Start, journal_in_tmp_path: Path) -> None:
    terminal = start(
        "run", f"{EXAMPLES}/draft_critique_revise.py:pipeline", "--input", "structured concurrency"
    )

    assert terminal.finish() == ExitCode.OK
    assert terminal.progress() == [
        ("done", "main/0:draft", "$0.000318"),
        ("done", "main/1:keep_draft", "$0.000318"),
        ("done", "main/2:critique", "$0.000483"),
        ("done", "main/3:revision_prompt", "$0.000483"),
        ("done", "main/4:revise", "$0.00159"),
        ("done", "main/5:polish", "$0.002178"),
    ]
    screen = terminal.text()
    assert "Traceback" not in screen
    assert "step(s) finished" not in screen  # the live panel is gone once the run ends
    rows = [line.split("│")[1:3] for line in screen.splitlines() if line.startswith("│ ")]
    assert [(path.strip(), status.strip()) for path, status in rows] == [
        ("main/0:draft", "ok"),
        ("main/1:keep_draft", "ok"),
        ("main/2:critique", "ok"),
        ("main/3:revision_prompt", "ok"),
        ("main/4:revise", "ok"),
        ("main/5:polish", "ok"),
        ("main/5:polish#1-2", "failed"),
        ("main/5:polish/fallback:polish_backup", "ok"),
    ]
    assert terminal.line_starting("output: ") == (
        "output: A short essay on structured concurrency: it matters because tasks end together. "
        "In conclusion, structure beats callbacks. [polished]"
    )
    run_id = _run_id(terminal)
    assert terminal.line_starting("status: ") == (
        f"status: completed   cost: $0.002178   tokens: 270   run: {run_id}"
    )
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.total_cost_usd, run.error) == ("completed", "0.002178", None)
    assert [step.path for step in steps] == [
        "main/0:draft",
        "main/1:keep_draft",
        "main/2:critique",
        "main/3:revision_prompt",
        "main/4:revise",
        "main/5:polish",
        "main",
    ]


def test_a_failed_step_says_failed(start: Start, journal_in_tmp_path: Path, gate: Path) -> None:
    terminal = start("run", f"{PIPELINES}:failing", "--input", "x")

    assert terminal.finish() == ExitCode.PIPELINE_FAILED
    assert terminal.progress() == [
        ("done", "main/0:first", "$0.00"),
        ("failed", "main/1:boom", "$0.00"),
    ]
    error = "step 'main/1:boom' failed (agent_error): ValueError: no luck with 'x!'"
    assert terminal.line_starting("error: ") == f"error: {error}"
    run_id = _run_id(terminal)
    assert terminal.line_starting("status: ") == (
        f"status: failed   cost: $0.00   tokens: 0   run: {run_id}"
    )
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.error) == ("failed", error)
    assert _steps(steps)[:2] == [("main/0:first", True, 1, "0"), ("main/1:boom", False, 2, "0")]


def test_a_step_the_budget_refuses_says_refused(start: Start, journal_in_tmp_path: Path) -> None:
    terminal = start(
        "run",
        f"{EXAMPLES}/budgeted_research.py:pipeline",
        "--input",
        "trio nurseries",
        "--max-cost",
        "0.015",
    )

    assert terminal.finish() == ExitCode.USAGE_LIMIT
    assert terminal.progress() == [
        ("done", "main/0:plan", "$0.00096"),
        ("done", "main/1:search", "$0.00594"),
        ("done", "main/2:summarize", "$0.011415"),
        ("refused", "main/3:write_report", "$0.011415"),
    ]
    run_id = _run_id(terminal)
    assert terminal.line_starting("status: ") == (
        f"status: usage_limit   cost: $0.011415   tokens: 217   run: {run_id}"
    )
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.total_cost_usd) == ("usage_limit", "0.011415")
    assert _steps(steps)[:4] == [
        ("main/0:plan", True, 1, "0.00096"),
        ("main/1:search", True, 1, "0.00498"),
        ("main/2:summarize", True, 1, "0.005475"),
        ("main/3:write_report", False, 0, "0"),
    ]


def test_a_pause_then_its_resume(start: Start, journal_in_tmp_path: Path) -> None:
    paused = start("run", f"{EXAMPLES}/human_approval.py:pipeline", "--input", "launch notes")

    assert paused.finish() == ExitCode.PAUSED
    assert paused.progress() == [
        ("done", "main/0:draft", "$0.000114"),
        ("paused", "main/1:approve", "$0.000114"),
    ]
    run_id = _run_id(paused)
    assert paused.line_starting("paused: ") == (
        "paused: waiting for input at main/1:approve: Publish this draft?"
    )
    assert paused.line_starting("resume with: ") == (
        f"resume with: trioflow resume {run_id} --input ANSWER"
    )
    run, steps, pauses = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.paused_at) == ("paused", ("main/1:approve",))
    assert [(pause.path, pause.answered_at) for pause in pauses] == [("main/1:approve", None)]

    answer = json.dumps({"approved": True, "note": "ship it"})
    resumed = start("resume", run_id, "--input", answer)

    assert resumed.finish() == ExitCode.OK
    # The draft is not run again, and what it cost before the pause is counted.
    assert resumed.progress() == [
        ("restored", "main/0:draft", "$0.000114"),
        ("done", "main/1:approve", "$0.000114"),
        ("done", "main/2:publish", "$0.000114"),
    ]
    assert resumed.line_starting("output: ") == "output: published after 1 review(s): ship it"
    assert resumed.line_starting("status: ") == (
        f"status: completed   cost: $0.000114   tokens: 10   run: {run_id}"
    )
    run, steps, pauses = _journal(journal_in_tmp_path, run_id)
    assert run.status == "completed"
    assert [(step.path, step.success) for step in steps] == [
        ("main/0:draft", True),
        ("main/1:approve", True),
        ("main/2:publish", True),
        ("main", True),
    ]
    # Answered (its time is the clock's); the output above shows the answer was the one given.
    assert [(pause.path, pause.answered_at is not None) for pause in pauses] == [
        ("main/1:approve", True)
    ]


def _stopped_mid_run(start: Start, journal: Path, stop: Any) -> tuple[Terminal, str]:
    terminal = start("run", f"{PIPELINES}:gated", "--input", "x")
    terminal.wait_for("running main/1:wait_for_gate")
    stop(terminal)
    return terminal, _only_run(journal)


def test_ctrl_c_stores_the_run_interrupted(
    start: Start, journal_in_tmp_path: Path, gate: Path
) -> None:
    terminal, run_id = _stopped_mid_run(start, journal_in_tmp_path, lambda t: t.type(b"\x03"))

    assert terminal.finish() == ExitCode.INTERRUPTED
    assert terminal.progress() == [
        ("done", "main/0:first", "$0.00"),
        ("cancelled", "main/1:wait_for_gate", "$0.00"),
    ]
    assert terminal.line_starting("error: ") == (
        "error: interrupted by Ctrl-C: a run it had started is stored as interrupted "
        "(`trioflow runs list` shows it, `trioflow resume RUN` goes on with it)"
    )
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.error) == ("interrupted", "interrupted by Ctrl-C")
    assert _steps(steps) == [("main/0:first", True, 1, "0")]

    shown = start("runs", "show", run_id)
    assert shown.finish() == ExitCode.OK
    assert shown.line_starting("error: ") == "error: interrupted by Ctrl-C"


def test_sigterm_stores_the_run_interrupted_and_resume_finishes_it(
    start: Start, journal_in_tmp_path: Path, gate: Path
) -> None:
    terminal, run_id = _stopped_mid_run(
        start, journal_in_tmp_path, lambda t: t.process.send_signal(signal.SIGTERM)
    )

    assert terminal.finish() == ExitCode.TERMINATED
    assert terminal.progress() == [
        ("done", "main/0:first", "$0.00"),
        ("cancelled", "main/1:wait_for_gate", "$0.00"),
    ]
    assert terminal.line_starting("error: ") == (
        "error: interrupted by SIGTERM: a run it had started is stored as interrupted "
        "(`trioflow runs list` shows it, `trioflow resume RUN` goes on with it)"
    )
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.error) == ("interrupted", "interrupted by SIGTERM")
    assert _steps(steps) == [("main/0:first", True, 1, "0")]

    gate.touch()
    resumed = start("resume", run_id)

    assert resumed.finish() == ExitCode.OK
    assert resumed.progress() == [
        ("restored", "main/0:first", "$0.00"),
        ("done", "main/1:wait_for_gate", "$0.00"),
    ]
    assert resumed.line_starting("output: ") == "output: x! (through the gate)"
    assert _first_ran(gate) == 1  # the committed step did not run again
    run, steps, _ = _journal(journal_in_tmp_path, run_id)
    assert (run.status, run.error, run.output) == ("completed", None, "x! (through the gate)")
    assert [step.path for step in steps] == ["main/0:first", "main/1:wait_for_gate", "main"]
