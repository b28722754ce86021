"""A store that keeps everything in memory: for tests and throwaway runs.

It keeps each record as the codec's document (the JSON-ready structure
the SQLite store prints as text), so a value that cannot be stored fails
here too, and what comes back is a decoded copy, never the object that
was written. The exception is a step record or ledger entry made only of
immutable values and plain dicts and lists (see :class:`_KeptRecord`): it
is kept with copies of its containers, which is as safe and spares an
encoding per step.
"""

from __future__ import annotations

import datetime
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from math import isfinite
from typing import Any, TypeVar

import attrs
from trioflow.actors import TraceEvent

from ._codec import CODEC, CorruptJournal
from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._store import StaleEpoch, UnknownRun, require_same_run

R = TypeVar("R")


class InMemoryStore:
    """Implements :class:`RunStore` with dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, Any] = {}
        self._steps: dict[str, dict[str, Any]] = {}
        self._pauses: dict[str, dict[str, Any]] = {}
        self._ledger: dict[str, dict[str, Any]] = {}
        self._traces: dict[str, list[TraceEvent]] = {}
        #: Each stored run's revision and epoch, so a swap or a fenced write
        #: compares without decoding the run.
        self._revisions: dict[str, int] = {}
        self._epochs: dict[str, int] = {}

    async def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise ValueError(f"a run with id {run.run_id!r} is already stored")
        encoded = CODEC.to_document(run, where="run")
        self._runs[run.run_id] = encoded
        self._revisions[run.run_id] = run.revision
        self._epochs[run.run_id] = run.epoch
        for table in (self._steps, self._pauses, self._ledger):
            table[run.run_id] = {}
        self._traces[run.run_id] = []

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        # No checkpoint between the comparison and the write: atomic under trio.
        self._require(expected.run_id)
        require_same_run(expected, replacement)
        if self._revisions[expected.run_id] != expected.revision:
            return None
        swapped = attrs.evolve(replacement, revision=expected.revision + 1)
        self._runs[swapped.run_id] = CODEC.to_document(swapped, where="run")
        self._revisions[swapped.run_id] = swapped.revision
        self._epochs[swapped.run_id] = swapped.epoch
        return swapped

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        self._require(run.run_id)
        if (self._revisions[run.run_id], self._epochs[run.run_id]) != (run.revision, run.epoch):
            return None
        renewed = attrs.evolve(run, lease_expires_at=until)
        self._runs[run.run_id] = CODEC.to_document(renewed, where="run")
        return renewed

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        self._require_epoch(step.run_id, epoch)
        kept = _KeptRecord.of(step)
        self._steps[step.run_id][step.path] = (
            kept if kept is not None else CODEC.to_document(step, where=f"step {step.path!r}")
        )

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        self._require_epoch(entry.run_id, epoch)
        kept = _KeptRecord.of(entry)
        self._ledger[entry.run_id][entry.key] = (
            kept if kept is not None else CODEC.to_document(entry, where="ledger")
        )

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        self._require_epoch(pause.run_id, epoch)
        self._pauses[pause.run_id][pause.path] = CODEC.to_document(
            pause, where=f"pause {pause.path!r}"
        )

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        self._require_epoch(run_id, epoch)
        self._traces[run_id].extend(events)

    async def get_run(self, run_id: str) -> RunRecord:
        return _decoded(self._require(run_id), RunRecord)

    async def list_runs(self) -> list[RunRecord]:
        runs = [_decoded(text, RunRecord) for text in self._runs.values()]
        return sorted(runs, key=lambda run: run.started_at)

    async def steps_of(self, run_id: str) -> list[StepRecord]:
        self._require(run_id)
        return [_read(stored, StepRecord) for stored in self._steps[run_id].values()]

    async def pauses_of(self, run_id: str) -> list[PauseRecord]:
        self._require(run_id)
        return [_decoded(text, PauseRecord) for text in self._pauses[run_id].values()]

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        self._require(run_id)
        return [_read(stored, LedgerEntry) for stored in self._ledger[run_id].values()]

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        return list(self._traces[run_id])

    def _require(self, run_id: str) -> Any:
        """The run's stored document; :class:`UnknownRun` if there is none."""
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRun(run_id) from None

    def _require_epoch(self, run_id: str, epoch: int | None) -> None:
        """The fence: :class:`StaleEpoch` unless the run is at ``epoch`` (if one is given).

        No checkpoint between this check and the write that follows it: atomic under trio.
        """
        self._require(run_id)
        if epoch is not None and self._epochs[run_id] != epoch:
            raise StaleEpoch(run_id, epoch)


#: The scalars the codec stores as they are (floats are checked: NaN and infinities are not).
_PLAIN_SCALARS = frozenset({str, int, bool, Decimal, type(None)})


@attrs.frozen
class _Probe:
    """A frozen attrs class: its ``__setattr__`` is the one every frozen attrs class shares."""


_FROZEN_SETATTR = _Probe.__setattr__

Kept = TypeVar("Kept", StepRecord, LedgerEntry)


@attrs.frozen(slots=True)
class _KeptRecord:
    """A record kept as it was written, with private copies of its mutable fields.

    Why: encoding a record only to decode it again on read is most of what an
    in-memory journal costs per step. A record whose fields are scalars,
    tuples and frozen attrs values (a context patch), or plain dicts and
    lists of those, can be kept: the immutable parts as they are, the
    containers as copies taken on write (the writer may change its own
    afterwards) and copied again on read (so may the reader). That is as
    safe as the codec's round trip and returns equal values of the same
    types. Anything else (a pydantic model, a set, a datetime...) is
    encoded as before.
    """

    record: StepRecord | LedgerEntry
    #: Copies of the fields holding dicts or lists, by field name.
    copies: dict[str, Any]

    @classmethod
    def of(cls, record: Kept) -> _KeptRecord | None:
        """``record`` in its kept form, or ``None`` if only the codec can store it."""
        copies: dict[str, Any] = {}
        fields = _frozen_fields(type(record))
        if fields is None:
            return None
        names, values = fields
        for name, value in zip(names, values(record), strict=True):
            if type(value) in _PLAIN_SCALARS:  # most fields: nothing to look into
                continue
            try:
                copied = _plain_copy(value)
            except _NotPlain:
                return None
            if copied is not value:
                copies[name] = copied
        return cls(record, copies)

    def read(self, kind: type[Kept]) -> Kept:
        """A copy of the record, as a read from the codec would give."""
        record = self.record
        if not isinstance(record, kind):
            raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
        if not self.copies:
            return record
        return attrs.evolve(
            record, **{name: _plain_copy(value) for name, value in self.copies.items()}
        )


class _NotPlain(Exception):
    """The value holds something only the codec can store (or refuse)."""


def _plain_copy(value: Any) -> Any:
    """``value`` itself if it is immutable, a copy of its dicts and lists otherwise.

    Raises :class:`_NotPlain` for anything else. Dict keys must be strings.
    """
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return value
    if cls is dict:
        if not all(type(key) is str for key in value):
            raise _NotPlain
        return {key: _plain_copy(item) for key, item in value.items()}
    if cls is list:
        return [_plain_copy(item) for item in value]
    if _frozen(value):
        return value
    raise _NotPlain


def _frozen(value: Any) -> bool:
    """Whether ``value`` is made only of finite scalars, tuples and frozen attrs values."""
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return True
    if cls is float:
        return isfinite(value)
    if cls is tuple:
        items: tuple[Any, ...] = value
    else:
        fields = _frozen_fields(cls)
        if fields is None:
            return False
        items = fields[1](value)
    # A loop, not all(): scalars (most items) are told apart without a call.
    for item in items:  # noqa: SIM110
        if type(item) not in _PLAIN_SCALARS and not _frozen(item):
            return False
    return True


#: A frozen attrs class's field names, and a function giving a value's fields in that order.
_Fields = tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]

#: Per class: its fields if it is a frozen attrs class, else ``None``.
_FROZEN_FIELDS: dict[type[Any], _Fields | None] = {}


def _frozen_fields(cls: type[Any]) -> _Fields | None:
    """The fields of a frozen attrs class the codec would find again by its name, else ``None``."""
    try:
        return _FROZEN_FIELDS[cls]
    except KeyError:
        pass
    frozen = (
        attrs.has(cls) and cls.__setattr__ is _FROZEN_SETATTR and "<locals>" not in cls.__qualname__
    )
    fields = _fields_of(cls) if frozen else None
    _FROZEN_FIELDS[cls] = fields
    return fields


def _fields_of(cls: type[Any]) -> _Fields:
    names = tuple(field.name for field in attrs.fields(cls))
    if len(names) == 1:  # attrgetter of one name gives the value, not a tuple
        (name,) = names
        return names, lambda value: (getattr(value, name),)
    # An attrgetter reads every field in one call (a walk over patches reads thousands).
    return names, operator.attrgetter(*names)


def _read(stored: Any, kind: type[Kept]) -> Kept:
    """A stored step record or ledger entry: kept (see :class:`_KeptRecord`) or encoded."""
    if isinstance(stored, _KeptRecord):
        return stored.read(kind)
    return _decoded(stored, kind)


def _decoded(document: Any, kind: type[R]) -> R:
    record: Any = CODEC.from_document(document)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record
