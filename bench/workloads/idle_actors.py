"""Workload 9, idle actors: the memory a waiting step holds.

What is measured, per repetition one run:

* **trioflow**: ``Step.parallel`` of ``waiters`` branches, each a step that
  awaits one shared ``trio.Event`` (passed as the run's ``resources``).
  Once every step waits and every task of the run is blocked
  (``trio.testing.wait_all_tasks_blocked``) the event is set and the run
  completes. Each waiting step is one kernel actor (a one-step branch
  runs as its step): a task with a mailbox (a trio memory channel), the
  coroutine frames of the step's attempt, its call context, and the
  trace events the run keeps.
* **floor**: ``waiters`` plain trio tasks in one nursery waiting on an
  Event, set the same way.

The value is the peak traced memory of one untimed repetition
(tracemalloc), and from it the kilobytes per waiting step beyond the floor:
``(trioflow peak - floor peak) / waiters``. The memory held at the moment
everything is blocked is noted too: the peak also covers building the
10,000 step results once the event is set. Why: agent pipelines spend
most of their time waiting on models; how many can wait at once is
bounded by what a waiting step holds. Target: at most 3 KB per waiting step
(the design calls each one an actor; issue 16). The wall time of the run is timed as
well.
"""

from __future__ import annotations

import functools

import attrs
import harness
import trio
import trio.testing
from harness import Report, Workload
from trioflow.runtime import Pipeline, Step

TARGET_KB = 3.0


@attrs.frozen
class Size:
    waiters: int = 10_000

    def describe(self) -> str:
        return f"{self.waiters:,} steps waiting on one Event"


async def wait_for_event(x: int, *, resources: Gate) -> int:
    """A waiting step: idle until the shared event is set."""
    await resources.wait()
    return x


def build_pipeline(waiters: int) -> Pipeline:
    waiter = Step.from_callable(wait_for_event, name="wait")
    return Pipeline.of(Step.parallel("idle", {f"w{index}": waiter for index in range(waiters)}))


@attrs.define
class Held:
    """Traced MB at the start of the run and once everything waits (memory runs only)."""

    start: float | None = None
    blocked: float | None = None

    def note_start(self) -> None:
        self.start = _traced_or(self.start)

    def note_blocked(self) -> None:
        self.blocked = _traced_or(self.blocked)

    @property
    def mb(self) -> float | None:
        if self.start is None or self.blocked is None:
            return None
        return self.blocked - self.start


def _traced_or(kept: float | None) -> float | None:
    """Traced MB now, or what was kept when tracemalloc is off (a timed repetition)."""
    now = harness.traced_mb()
    return kept if now is None else now


@attrs.define
class Gate:
    """The event every waiter waits on, and how many are waiting."""

    event: trio.Event = attrs.field(factory=trio.Event)
    waiting: int = 0

    async def wait(self) -> None:
        self.waiting += 1
        await self.event.wait()

    async def release_when_all_wait(self, waiters: int, held: Held) -> None:
        """Set the event once ``waiters`` wait and every task of the run is blocked.

        Counting as well as ``wait_all_tasks_blocked``: a task waiting for a
        worker thread counts as blocked too, though it has more to do.
        """
        await trio.testing.wait_all_tasks_blocked()
        while self.waiting < waiters:
            await trio.sleep(0.001)
            await trio.testing.wait_all_tasks_blocked()
        held.note_blocked()
        self.event.set()


async def trioflow_idle(pipeline: Pipeline, waiters: int, held: Held) -> None:
    """One run of ``waiters`` waiting steps, released once all wait."""
    held.note_start()
    gate = Gate()
    async with harness.in_memory_runtime() as runtime, trio.open_nursery() as nursery:
        nursery.start_soon(gate.release_when_all_wait, waiters, held)
        result = await runtime.run(pipeline, 1, resources=gate)
    if not result.success or len(result.output) != waiters:
        raise RuntimeError(f"the trioflow run of waiting steps failed: {result.error}")


async def _floor_waiter(gate: Gate, done: list[int]) -> None:
    await gate.wait()
    done.append(1)


async def floor_idle(waiters: int, held: Held) -> None:
    """``waiters`` plain trio tasks waiting on one Event, released the same way."""
    held.note_start()
    gate = Gate()
    done: list[int] = []
    async with trio.open_nursery() as nursery:
        for _ in range(waiters):
            nursery.start_soon(_floor_waiter, gate, done)
        nursery.start_soon(gate.release_when_all_wait, waiters, held)
    if len(done) != waiters:
        raise RuntimeError(f"the floor released {len(done)} of {waiters} waiters")


def _kb_each(mb: float, waiters: int) -> float:
    return mb * 1e3 / waiters


def measure(size: Size, repeats: int) -> Report:
    pipeline = build_pipeline(size.waiters)
    trioflow_held = Held()
    floor_held = Held()
    comparison = harness.compare(
        "ms wall",
        harness.timed(
            functools.partial(trioflow_idle, pipeline, size.waiters, trioflow_held),
            scale=harness.MS,
        ),
        harness.timed(functools.partial(floor_idle, size.waiters, floor_held), scale=harness.MS),
        repeats,
    )
    extra = comparison.trioflow_peak_mb - comparison.floor_peak_mb
    kb = _kb_each(extra, size.waiters)
    notes = [
        f"peak: trioflow {comparison.trioflow_peak_mb:.2f} MB, floor "
        f"{comparison.floor_peak_mb:.2f} MB: {kb:.2f} KB per waiting step beyond the floor "
        f"(floor {_kb_each(comparison.floor_peak_mb, size.waiters):.2f} KB per task).",
    ]
    # The memory-measuring repetition of each variant ran first and recorded what it held.
    if trioflow_held.mb is not None and floor_held.mb is not None:
        held = _kb_each(trioflow_held.mb - floor_held.mb, size.waiters)
        notes.append(
            f"held while all wait: trioflow {trioflow_held.mb:.2f} MB, floor "
            f"{floor_held.mb:.2f} MB: {held:.2f} KB per waiting step beyond the floor."
        )
    notes.append(
        f"ms wall trioflow {harness.spread(comparison.trioflow)}, "
        f"floor {harness.spread(comparison.floor)}."
    )
    return Report(
        9,
        "idle_actors",
        size.describe(),
        comparison,
        f"{kb:.2f} KB/step",
        f"<= {TARGET_KB:.0f} KB/step",
        kb <= TARGET_KB,
        tuple(notes),
    )


WORKLOAD = Workload(9, "idle_actors", measure, default=Size(), tiny=Size(waiters=5))
