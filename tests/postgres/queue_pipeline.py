"""The pipeline the worker tests queue: a step, a pause for approval, a slow step, a last step.

Every step appends one line to ``$QUEUE_LOG`` as it starts (flushed: a
SIGKILL cannot lose it): the process id, the run, the step path and the
idempotency key, so a test can count how often each step of each run ran,
and in which worker. ``slow`` sleeps ``$QUEUE_SLOW_S`` seconds after its
line, so a test can stop its worker in the middle of it.
"""

from __future__ import annotations

import os
from decimal import Decimal

import trio
from trioflow.runtime import Completion, Pipeline, Step, Usage, current_call, step


def executed() -> None:
    call = current_call()
    line = f"{os.getpid()} {call.run_id} {call.path} {call.idempotency_key}\n"
    with open(os.environ["QUEUE_LOG"], "a", encoding="utf-8") as log:
        log.write(line)
        log.flush()


def paid(output: object, cost: str) -> Completion:
    return Completion(output, Usage(Decimal(cost), 10, 5))


@step
async def draft(topic: str) -> Completion:
    executed()
    return paid(f"draft of {topic}", "0.01")


approve = Step.human_in_the_loop("approve", "publish this draft?", bool)


@step
async def slow(approved: bool) -> Completion:
    executed()
    await trio.sleep(float(os.environ.get("QUEUE_SLOW_S", "0")))
    return paid(f"approved={approved}", "0.02")


@step
async def publish(text: str) -> Completion:
    executed()
    return paid(f"published {text}", "0.04")


pipeline = Pipeline.of(draft, approve, slow, publish, name="queued")
