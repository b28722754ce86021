"""The store protocol: what the runtime needs from wherever runs are kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from trioflow.actors import TraceEvent

from ._records import RunRecord, StepRecord


class UnknownRun(LookupError):
    """No run with this id is stored."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r} is stored")
        self.run_id = run_id


class RunStore(Protocol):
    """Keeps runs, their step completion records and their traces."""

    async def create_run(self, run: RunRecord) -> None: ...

    async def record_step(self, step: StepRecord) -> None: ...

    async def finish_run(self, run: RunRecord) -> None: ...

    async def save_trace(self, run_id: str, events: Sequence[TraceEvent]) -> None: ...

    async def get_run(self, run_id: str) -> RunRecord: ...

    async def list_runs(self) -> list[RunRecord]: ...

    async def steps_of(self, run_id: str) -> list[StepRecord]: ...

    async def trace_of(self, run_id: str) -> list[TraceEvent]: ...
