"""A store that keeps everything in memory: for tests and throwaway runs.

It keeps each record as the codec's document (the JSON-ready structure
the SQLite store prints as text), so a value that cannot be stored fails
here too, and what comes back is a decoded copy, never the object that
was written. The exception is a step record or ledger entry made only of
immutable values (see :func:`_frozen_record`): it is kept as it is, which
is as safe as a copy and spares an encoding per step.
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
from ._store import UnknownRun, require_same_run

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

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        # No checkpoint between the comparison and the write: atomic under trio.
        stored = _decoded(self._require(expected.run_id), RunRecord)
        require_same_run(expected, replacement)
        if stored.revision != expected.revision:
            return None
        swapped = attrs.evolve(replacement, revision=expected.revision + 1)
        self._runs[swapped.run_id] = CODEC.to_document(swapped, where="run")
        return swapped

    async def record_step(self, step: StepRecord) -> None:
        self._require(step.run_id)
        steps = self._steps[step.run_id]
        if _frozen_record(step):  # nothing to copy, nothing that could fail to store
            steps[step.path] = (
                attrs.evolve(step, metadata=dict(step.metadata)) if step.metadata else step
            )
        else:
            steps[step.path] = CODEC.to_document(step, where=f"step {step.path!r}")

    async def record_usage(self, entry: LedgerEntry) -> None:
        self._require(entry.run_id)
        ledger = self._ledger[entry.run_id]
        if _frozen_record(entry):
            ledger[entry.key] = entry
        else:
            ledger[entry.key] = CODEC.to_document(entry, where="ledger")

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
        return [_kept(stored, LedgerEntry) for stored in self._ledger[run_id].values()]

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        return list(self._traces[run_id])

    def _require(self, run_id: str) -> Any:
        """The run's stored document; :class:`UnknownRun` if there is none."""
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(run_id) from None


_SCALARS = frozenset({str, int, float, bool, Decimal, type(None)})


@attrs.frozen
class _Probe:
    """A frozen attrs class: its ``__setattr__`` is the one every frozen attrs class shares."""


_FROZEN_SETATTR = _Probe.__setattr__


def _frozen_record(record: StepRecord | LedgerEntry) -> bool:
    """Whether ``record`` holds only immutable plain values, so it can be kept as it is.

    Why: encoding a record only to decode it again on read is most of what an
    in-memory journal costs per step. A record made of scalars, tuples and
    frozen attrs values (a context patch) cannot change after it is written
    and is storable by construction, so keeping it is as safe as a copy. Its
    one mutable field, ``metadata``, is copied on write and on read.
    """
    for name in _frozen_fields(type(record)) or ():
        value = getattr(record, name)
        if name == "metadata":
            if not all(type(key) is str and _frozen(item) for key, item in value.items()):
                return False
        elif not _frozen(value):
            return False
    return True


def _frozen(value: Any) -> bool:
    cls = type(value)
    if cls in _SCALARS:
        return cls is not float or isfinite(value)
    if cls is tuple:
        return all(map(_frozen, value))
    names = _frozen_fields(cls)
    return names is not None and all(_frozen(getattr(value, name)) for name in names)


#: Per class: its field names if it is a frozen attrs class, else ``None``.
_FROZEN_FIELDS: dict[type[Any], tuple[str, ...] | None] = {}


def _frozen_fields(cls: type[Any]) -> tuple[str, ...] | None:
    """The fields of a frozen attrs class the codec would find again by its name, else ``None``."""
    try:
        return _FROZEN_FIELDS[cls]
    except KeyError:
        pass
    frozen = (
        attrs.has(cls) and cls.__setattr__ is _FROZEN_SETATTR and "<locals>" not in cls.__qualname__
    )
    names = tuple(field.name for field in attrs.fields(cls)) if frozen else None
    _FROZEN_FIELDS[cls] = names
    return names


def _step(stored: Any) -> StepRecord:
    if isinstance(stored, StepRecord):  # kept as it was written (see _frozen_record)
        return attrs.evolve(stored, metadata=dict(stored.metadata))
    return _decoded(stored, StepRecord)


def _kept(stored: Any, kind: type[R]) -> R:
    """A record kept as it was written (see :func:`_frozen_record`), or decoded."""
    if isinstance(stored, kind):
        return stored
    return _decoded(stored, kind)


def _decoded(document: Any, kind: type[R]) -> R:
    record: Any = CODEC.from_document(document)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record
