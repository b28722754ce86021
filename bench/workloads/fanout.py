"""Workload 2, fan-out: a parallel step of many branches whose context writes are merged.

What is measured, per repetition one run:

* **trioflow**: ``Step.parallel`` of ``branches`` branches, each a step
  returning ``WithPatch(x, [SetKey("results", key, index)])``, so every
  branch writes one key of a dict field of the context. The parallel
  supervisor spawns one step actor per branch (a one-step body runs as
  its step), each with its mailbox and journal record, collects
  the replies, merges the patches in declaration order (checking for
  conflicts) and the run validates the merged context. The run must end
  with every key present, in declaration order.
* **floor**: plain trio: one nursery, a task per branch that receives its
  input over a memory channel and sends ``(index, key, value)`` back over a
  shared one; the parent puts the replies in declaration order and merges
  them into a dict.

Why: fan-out is where the per-branch costs (spawns, asks, patches, the
merge) add up, and where Flujo lost branch updates; the wall time and peak
memory of a wide fan-out show whether merging by construction is cheap.
Reported as wall milliseconds per run (target: at most 1.5x the floor).
"""

from __future__ import annotations

import functools

import attrs
import harness
import pydantic
import trio
from harness import Report, Workload
from trioflow.runtime import AgentStep, BaseContext, Pipeline, SetKey, Step, WithPatch

#: At most this many times the floor's median (issue 16).
TARGET_RATIO = 1.5


@attrs.frozen
class Size:
    branches: int = 1_000

    def describe(self) -> str:
        return f"{self.branches:,} branches, 1 run"


class FanoutContext(BaseContext):
    """The context every branch writes one key of."""

    results: dict[str, int] = pydantic.Field(default_factory=dict)


def _key(index: int) -> str:
    return f"b{index}"


def writer(index: int) -> AgentStep:
    """A branch step that sets ``results[key] = index`` and passes its input on."""
    key = _key(index)

    async def write(x: int) -> WithPatch:
        # WithPatch's ``converter=tuple`` makes mypy's attrs plugin expect Iterable[_T_co].
        return WithPatch(x, [SetKey("results", key, index)])  # type: ignore[list-item]

    return Step.from_callable(write, name=key)


def build_pipeline(branches: int) -> Pipeline:
    parallel = Step.parallel("fanout", {_key(i): writer(i) for i in range(branches)})
    return Pipeline.of(parallel, name="fanout", context_type=FanoutContext)


def _check(merged: dict[str, int], branches: int, who: str) -> None:
    expected = {_key(i): i for i in range(branches)}
    if merged != expected or list(merged) != list(expected):
        raise RuntimeError(f"{who}: the merged dict is not every branch's key in order")


async def trioflow_fanout(pipeline: Pipeline, branches: int) -> None:
    """One run of the fan-out pipeline; its merged context is checked."""
    async with harness.in_memory_runtime() as runtime:
        result = await runtime.run(pipeline, 1)
    if not result.success:
        raise RuntimeError(f"the trioflow fan-out failed: {result.error}")
    assert isinstance(result.context, FanoutContext)
    _check(result.context.results, branches, "trioflow")


async def _floor_branch(
    index: int,
    inbox: trio.MemoryReceiveChannel[int],
    replies: trio.MemorySendChannel[tuple[int, str, int]],
) -> None:
    """One floor branch: receive the input, reply with its key and value."""
    async with inbox, replies:
        await inbox.receive()
        await replies.send((index, _key(index), index))


async def floor_fanout(branches: int) -> None:
    """The fan-out in plain trio: a task per branch, merged into a dict in order."""
    send_reply, receive_reply = trio.open_memory_channel[tuple[int, str, int]](branches)
    writes: list[tuple[str, int]] = [("", 0)] * branches
    async with trio.open_nursery() as nursery:
        async with send_reply:
            for index in range(branches):
                send_input, receive_input = trio.open_memory_channel[int](1)
                nursery.start_soon(_floor_branch, index, receive_input, send_reply.clone())
                async with send_input:
                    await send_input.send(1)
        async with receive_reply:
            async for index, key, value in receive_reply:
                writes[index] = (key, value)
    _check(dict(writes), branches, "floor")


def measure(size: Size, repeats: int) -> Report:
    pipeline = build_pipeline(size.branches)
    comparison = harness.compare(
        "ms wall",
        harness.timed(
            functools.partial(trioflow_fanout, pipeline, size.branches), scale=harness.MS
        ),
        harness.timed(functools.partial(floor_fanout, size.branches), scale=harness.MS),
        repeats,
    )
    value, target, met = harness.ratio_target(comparison, TARGET_RATIO)
    per_branch = comparison.trioflow.median * 1e3 / size.branches
    return Report(
        2,
        "fanout",
        size.describe(),
        comparison,
        value,
        target,
        met,
        (
            f"ms trioflow {harness.spread(comparison.trioflow)}, "
            f"floor {harness.spread(comparison.floor)}; "
            f"trioflow {per_branch:.1f} µs per branch.",
            "every run checked: the merged context holds every branch's key, in declaration order.",
        ),
    )


WORKLOAD = Workload(2, "fanout", measure, default=Size(), tiny=Size(branches=5))
