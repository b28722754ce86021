"""A crash and a resume: a killed run goes on from its journal.

What it shows:

* a run killed mid-way (here the process SIGKILLs itself during the third
  step, the way a machine dies) leaves its committed steps in the journal,
  and the run ``running`` under the dead process's lease;
* once that lease has run out (nobody renews it any more; here it lasts
  2 seconds, by default 30), another process may take the run over;
* ``trioflow resume RUN`` (or ``rt.resume``) in a new process re-walks the
  pipeline: the committed steps are replayed, not run again, and the step
  that was running runs again with the same idempotency key, so an agent
  can recognise the repeat (``current_call().idempotency_key``);
* the result equals an uninterrupted run's: same output, same totals.

Run it::

    python examples/crash_resume.py

It runs the pipeline in a child process that dies, then resumes it, and
prints which steps ran in which process.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import trio
from trioflow.runtime import Completion, Pipeline, Usage, current_call, open_runtime, step

LOG = "CRASH_DEMO_LOG"

#: How long a run's lease lasts unless its process renews it (the default is 30 s).
LEASE_S = 2.0


def _note(text: str) -> None:
    with open(os.environ[LOG], "a", encoding="utf-8") as log:
        log.write(text + "\n")


def _ran() -> None:
    call = current_call()
    _note(f"pid {os.getpid()} ran {call.path} key={call.idempotency_key.split('/', 1)[1]}")


@step
async def fetch(topic: str) -> Completion:
    _ran()
    return Completion(f"facts about {topic}", Usage(Decimal("0.01"), 20, 10))


@step
async def analyse(facts: str) -> Completion:
    _ran()
    return Completion(f"analysis of {facts}", Usage(Decimal("0.02"), 30, 15))


@step
async def report(analysis: str) -> Completion:
    _ran()
    if os.environ.get("CRASH_DEMO_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-call
    return Completion(f"report: {analysis}", Usage(Decimal("0.03"), 40, 20))


pipeline = Pipeline.of(fetch, analyse, report, name="report")


async def start(db: str) -> None:
    async with open_runtime(store=db, lease_s=LEASE_S) as rt:
        await rt.run(pipeline, "trio")


async def resume(db: str) -> None:
    async with open_runtime(store=db, lease_s=LEASE_S) as rt:
        [listed] = await rt.store.list_runs()  # summaries: read the whole record
        interrupted = await rt.store.get_run(listed.run_id)
        print(f"run {interrupted.run_id} was left {interrupted.status!r}")
        if interrupted.lease_expires_at is not None:
            # Until then a resume is refused (RunClaimed): the owner might be alive.
            wait = interrupted.lease_expires_at - datetime.datetime.now(datetime.UTC)
            print("waiting for the dead process's lease to run out")
            await trio.sleep(max(wait.total_seconds(), 0) + 0.05)
        print("resuming")
        result = await rt.resume(interrupted.run_id, pipeline=pipeline)
        print(f"status: {result.status.value}")
        print(f"output: {result.output}")
        print(f"total: {result.usage}")


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="trioflow-crash-"))
    db, log = str(folder / "journal.db"), folder / "ran.log"
    env = {**os.environ, LOG: str(log), "CRASH_DEMO_DIE": "1"}
    child = subprocess.run([sys.executable, __file__, "--child", db], env=env, check=False)
    print(f"the first process died (exit {child.returncode})")
    os.environ[LOG] = str(log)
    trio.run(resume, db)
    print("steps run, by process:")
    for line in log.read_text().splitlines():
        print(f"  {line}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        trio.run(start, sys.argv[2])
    else:
        main()
