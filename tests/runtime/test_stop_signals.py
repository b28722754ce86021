"""``Runtime.stop_on``: a program embedding the runtime stops its runs on SIGTERM as on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio
from trioflow.persistence import SQLiteStore, StoreError
from trioflow.runtime._interrupts import StopSignals

#: How long the child may take before the test gives up on it (a deadline, not a measurement).
PATIENCE_S = 120

PROGRAM = textwrap.dedent(
    """
    import signal
    import sys

    import trio
    from trioflow.runtime import open_runtime, step


    @step
    async def ready(text: str) -> str:
        return text


    @step
    async def forever(text: str) -> str:
        print("waiting", flush=True)  # the step before is recorded by now
        await trio.sleep_forever()
        return text


    async def main() -> None:
        async with open_runtime(store=sys.argv[1]) as runtime:
            with runtime.stop_on(signal.SIGTERM) as stops:
                try:
                    await runtime.run((ready >> forever).named("waits"), "x")
                finally:
                    print(f"received {stops.received!r}", flush=True)


    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(99)
    """
)


def test_sigterm_stops_the_run_as_ctrl_c_does(tmp_path: Path) -> None:
    program = tmp_path / "embedder.py"
    program.write_text(PROGRAM)
    db = tmp_path / "runs.db"
    child = subprocess.Popen(
        [sys.executable, str(program), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal would have it, even when the test runner ignores it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stdout is not None  # narrows Optional (PIPE gives it); its first line is next
    assert child.stdout.readline() == "waiting\n"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=PATIENCE_S)

    assert (child.returncode, out) == (99, "received <Signals.SIGTERM: 15>\n")

    async def stored() -> tuple[str, str | None, list[str]]:
        async with SQLiteStore.open(db) as store:
            (run,) = await store.list_runs()
            steps = await store.steps_of(run.run_id)
            return run.status, run.error, [step.path for step in steps]

    assert trio.run(stored) == ("interrupted", "interrupted by SIGTERM", ["main/0:ready"])


def test_the_reason_says_what_stopped_the_run() -> None:
    stops = StopSignals()
    # How trio hands on a KeyboardInterrupt that reached a nursery's body.
    grouped = BaseExceptionGroup(
        "Code block inside nursery contextmanager raised exception KeyboardInterrupt()",
        [KeyboardInterrupt()],
    )

    assert stops.reason(grouped) == "interrupted by Ctrl-C"
    assert stops.reason(KeyboardInterrupt()) == "interrupted by Ctrl-C"
    assert stops.reason(StoreError("disk full")) == "StoreError: disk full"
    stops.received = signal.SIGTERM
    assert stops.reason(grouped) == "interrupted by SIGTERM"
