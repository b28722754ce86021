"""Starts or resumes the ten-step run of the lease tests, in a process of its own.

Usage:

* ``python lease_driver.py DB LOG start``: runs the pipeline with a lease
  of :data:`SHORT_LEASE_S` and SIGKILLs itself inside step ``s3``: no
  clean-up runs, the run stays ``running`` under a lease nobody renews.
* ``python lease_driver.py DB LOG resume RUN``: resumes the run without an
  answer (lease :data:`LEASE_S`) and prints its status, output and cost as
  JSON; if the resume is refused, prints the error's class and message on
  standard error and exits with 2.

Every step appends ``PID NAME`` to the file LOG before it returns, so the
test sees which process ran which step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from decimal import Decimal

import trio
from trioflow.runtime import (
    AgentStep,
    Completion,
    Pipeline,
    RunNotResumable,
    Step,
    Usage,
    open_runtime,
)

#: The killed process's lease: short, so the test soon may take over.
SHORT_LEASE_S = 1.0
#: The resuming processes' lease: long, so a slow machine cannot make one look dead.
LEASE_S = 30.0
STEPS = tuple(f"s{n}" for n in range(10))
KILLED_IN = "s3"


def cost_of(name: str) -> Decimal:
    """``s0`` costs $0.01, ``s1`` $0.02 ... ``s9`` $0.10: $0.55 in all."""
    return Decimal(int(name[1:]) + 1) / 100


def ran(log: str, name: str) -> None:
    with open(log, "a", encoding="utf-8") as file:
        file.write(f"{os.getpid()} {name}\n")


def pipeline(log: str, kill: bool) -> Pipeline:
    def paid(name: str) -> AgentStep:
        async def body(text: str) -> Completion:
            ran(log, name)
            if kill and name == KILLED_IN:
                os.kill(os.getpid(), signal.SIGKILL)
            return Completion(f"{text}>{name}", Usage(cost_of(name), 1, 1))

        return Step.from_callable(body, name=name, output_type=str)

    return Pipeline.of(*(paid(name) for name in STEPS), name="ten")


async def start(db: str, log: str) -> None:
    async with open_runtime(store=db, lease_s=SHORT_LEASE_S) as runtime:
        await runtime.run(pipeline(log, kill=True), "in")


async def resume(db: str, log: str, run_id: str) -> int:
    async with open_runtime(store=db, lease_s=LEASE_S) as runtime:
        try:
            result = await runtime.resume(run_id, pipeline=pipeline(log, kill=False))
        except RunNotResumable as refused:  # RunClaimed included
            print(f"{type(refused).__name__}: {refused}", file=sys.stderr)
            return 2
    print(json.dumps([result.status.value, result.output, str(result.usage.cost_usd)]))
    return 0


if __name__ == "__main__":
    db, log, command = sys.argv[1:4]
    if command == "start":
        trio.run(start, db, log)
        sys.exit(1)  # not reached: the process kills itself in s3
    sys.exit(trio.run(resume, db, log, sys.argv[4]))
