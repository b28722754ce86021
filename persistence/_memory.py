"""A store that keeps everything in memory: for tests and throwaway runs."""

from __future__ import annotations

from collections.abc import Sequence

from trioflow.actors import TraceEvent

from ._records import RunRecord, StepRecord
from ._store import UnknownRun


class InMemoryStore:
    """Implements :class:`RunStore` with dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, list[StepRecord]] = {}
        self._traces: dict[str, list[TraceEvent]] = {}

    async def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise ValueError(f"a run with id {run.run_id!r} is already stored")
        self._runs[run.run_id] = run
        self._steps[run.run_id] = []

    async def record_step(self, step: StepRecord) -> None:
        self._require(step.run_id)
        self._steps[step.run_id].append(step)

    async def finish_run(self, run: RunRecord) -> None:
        self._require(run.run_id)
        self._runs[run.run_id] = run

    async def save_trace(self, run_id: str, events: Sequence[TraceEvent]) -> None:
        self._require(run_id)
        self._traces[run_id] = list(events)

    async def get_run(self, run_id: str) -> RunRecord:
        return self._require(run_id)

    async def list_runs(self) -> list[RunRecord]:
        return sorted(self._runs.values(), key=lambda run: run.started_at)

    async def steps_of(self, run_id: str) -> list[StepRecord]:
        self._require(run_id)
        return list(self._steps[run_id])

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        return list(self._traces.get(run_id, ()))

    def _require(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(run_id) from None
