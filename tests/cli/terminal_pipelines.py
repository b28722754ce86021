"""Pipelines for the pseudo-terminal tests (tests/cli/test_terminal.py).

``gated`` waits in its second step until the file named by
``$TRIOFLOW_TEST_GATE`` exists, so a test can stop the run there (Ctrl-C,
SIGTERM) and let a resume finish it; its first step appends a line to
``$TRIOFLOW_TEST_RUNS`` each time it really runs.
"""

from __future__ import annotations

import os

import trio
from trioflow.runtime import step


@step
async def first(text: str) -> str:
    async with await trio.open_file(os.environ["TRIOFLOW_TEST_RUNS"], "a") as runs:
        await runs.write("first\n")
    return text + "!"


@step
async def wait_for_gate(text: str) -> str:
    gate = trio.Path(os.environ["TRIOFLOW_TEST_GATE"])
    # The test creates the file from its own process: no trio.Event can cross that.
    while not await gate.exists():  # noqa: ASYNC110
        await trio.sleep(0.05)
    return text + " (through the gate)"


@step
async def boom(text: str) -> str:
    raise ValueError(f"no luck with {text!r}")


gated = (first >> wait_for_gate).named("gated")
failing = (first >> boom).named("failing")
