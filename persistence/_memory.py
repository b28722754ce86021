"""A store that keeps everything in memory: for tests and throwaway runs.

It keeps each record as the codec's document (the JSON-ready structure
the SQLite store prints as text), so a value that cannot be stored fails
here too, and what comes back is a decoded copy, never the object that
was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from math import isfinite
from typing import Any, TypeVar

import attrs
from trioflow.actors import TraceEvent

from ._codec import CODEC, CorruptJournal
from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._store import UnknownRun

R = TypeVar("R")


class InMemoryStore:
    """Implements :class:`RunStore` with dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, Any] = {}
        self._steps: dict[str, dict[str, Any]] = {}
        self._pauses: dict[str, dict[str, Any]] = {}
        self._ledger: dict[str, dict[str, Any]] = {}
        self._traces: dict[str, list[TraceEvent]] = {}

    async def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise ValueError(f"a run with id {run.run_id!r} is already stored")
        encoded = CODEC.to_document(run, where="run")
        self._runs[run.run_id] = encoded
        for table in (self._steps, self._pauses, self._ledger):
            table[run.run_id] = {}
        self._traces[run.run_id] = []

    async def update_run(self, run: RunRecord) -> None:
        self._require(run.run_id)
        self._runs[run.run_id] = CODEC.to_document(run, where="run")

    async def record_step(self, step: StepRecord) -> None:
        self._require(step.run_id)
        steps = self._steps[step.run_id]
        if _immutable(step):  # nothing to copy, nothing that could fail to store
            steps[step.path] = step
        else:
            steps[step.path] = CODEC.to_document(step, where=f"step {step.path!r}")

    async def record_usage(self, entry: LedgerEntry) -> None:
        self._require(entry.run_id)
        self._ledger[entry.run_id][entry.key] = CODEC.to_document(entry, where="ledger")

    async def record_pause(self, pause: PauseRecord) -> None:
        self._require(pause.run_id)
        self._pauses[pause.run_id][pause.path] = CODEC.to_document(
            pause, where=f"pause {pause.path!r}"
        )

    async def save_trace(self, run_id: str, events: Sequence[TraceEvent]) -> None:
        self._require(run_id)
        self._traces[run_id].extend(events)

    async def get_run(self, run_id: str) -> RunRecord:
        return _decoded(self._require(run_id), RunRecord)

    async def list_runs(self) -> list[RunRecord]:
        runs = [_decoded(text, RunRecord) for text in self._runs.values()]
        return sorted(runs, key=lambda run: run.started_at)

    async def steps_of(self, run_id: str) -> list[StepRecord]:
        self._require(run_id)
        return [_step(stored) for stored in self._steps[run_id].values()]

    async def pauses_of(self, run_id: str) -> list[PauseRecord]:
        self._require(run_id)
        return [_decoded(text, PauseRecord) for text in self._pauses[run_id].values()]

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        self._require(run_id)
        return [_decoded(text, LedgerEntry) for text in self._ledger[run_id].values()]

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        return list(self._traces[run_id])

    def _require(self, run_id: str) -> Any:
        """The run's stored document; :class:`UnknownRun` if there is none."""
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(run_id) from None


_SCALARS = (str, int, float, bool, Decimal, type(None))


def _immutable(step: StepRecord) -> bool:
    """Whether ``step`` holds only immutable plain values, so it can be kept as it is.

    The common case of a step that outputs a number or a string and changes
    no context: keeping the frozen record itself costs nothing and is as
    safe as a copy.
    """
    output = step.output
    plain_output = type(output) in _SCALARS and (type(output) is not float or isfinite(output))
    return plain_output and not step.patch and not step.metadata and not step.replies


def _step(stored: Any) -> StepRecord:
    if isinstance(stored, StepRecord):  # kept as it was written (see _immutable)
        return attrs.evolve(stored, metadata={})  # its one mutable field, fresh
    return _decoded(stored, StepRecord)


def _decoded(document: Any, kind: type[R]) -> R:
    record: Any = CODEC.from_document(document)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record
