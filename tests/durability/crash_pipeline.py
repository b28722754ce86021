"""The representative pipeline of the crash-point suite.

A sequence, a loop, a parallel step, a map-over and a human-input step.
Every leaf appends one line to the execution log (``$CRASH_LOG``):
the process id, the step path, the attempt and the idempotency key, so
the suite can count how many times each step ran, in which process.
"""

from __future__ import annotations

import os
from decimal import Decimal

from pydantic import Field
from trioflow.runtime import (
    AddTo,
    AgentStep,
    AppendTo,
    BaseContext,
    Completion,
    Pipeline,
    Step,
    Usage,
    WithPatch,
    current_call,
    step,
)


class CrashContext(BaseContext):
    total: int = 0
    log: list[str] = Field(default_factory=list)


def executed() -> None:
    """Append this call to the execution log (flushed: a SIGKILL cannot lose it)."""
    call = current_call()
    line = f"{os.getpid()} {call.path} {call.attempt} {call.idempotency_key}\n"
    with open(os.environ["CRASH_LOG"], "a", encoding="utf-8") as log:
        log.write(line)
        log.flush()


def paid(output: object, cost: str, *ops: object) -> Completion:
    return Completion(WithPatch(output, list(ops)), Usage(Decimal(cost), 10, 5))


@step
async def prepare(topic: str) -> Completion:
    executed()
    return paid(topic.upper(), "0.01", AddTo("total", 1))


@step
async def improve(text: str) -> Completion:
    executed()
    return paid(f"{text}+", "0.02", AddTo("total", 1))


def branch(name: str) -> AgentStep:
    async def work(text: str) -> Completion:
        executed()
        return paid(f"{name}:{text}", "0.03", AppendTo("log", name))

    return Step.from_callable(work, name=f"work_{name}", output_type=str)


@step
async def to_items(outputs: dict) -> Completion:  # type: ignore[type-arg]
    executed()
    return paid(sorted(outputs), "0.005")


@step
async def shout(item: str) -> Completion:
    executed()
    return paid(item.upper(), "0.01", AppendTo("log", f"item {item}"))


@step
async def finish(approved: bool, *, context: CrashContext) -> Completion:
    executed()
    summary = f"approved={approved} total={context.total} log={','.join(context.log)}"
    return paid(summary, "0.04")


def _enough(output: object, context: CrashContext) -> bool:
    return context.total >= 4


pipeline = Pipeline.of(
    prepare,
    Step.loop_until("refine", improve, _enough, max_loops=5),
    Step.parallel("fan", {name: branch(name) for name in ("a", "b", "c")}),
    to_items,
    Step.map_over("each", shout, max_concurrency=2),
    Step.human_in_the_loop("approve", "Ship it?", bool),
    finish,
    name="crash",
    context_type=CrashContext,
)
