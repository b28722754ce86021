"""A store that keeps everything in memory: for tests and throwaway runs.

It keeps each record as the codec's document (the JSON-ready structure
the SQLite store prints as text), so a value that cannot be stored fails
here too, and what comes back is a decoded copy, never the object that
was written, with the same classes constructed as a read from SQLite
(the same ``types``). The exception is a step record or ledger entry made
only of immutable values, frozen attrs values of classes every read may
construct, and plain dicts and lists (see :class:`_KeptRecord`): it is
kept with copies of its containers, which is as safe and spares an
encoding per step.
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from math import isfinite
from typing import Any, TypeVar

import attrs
from trioflow.actors import TraceEvent

from ._codec import CODEC, CorruptJournal
from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._retention import RESUMABLE_STATUSES
from ._store import StaleEpoch, UnknownRun, require_same_run
from ._summary import run_summary
from ._trusted import NO_TYPES, TrustedTypes

R = TypeVar("R")

#: Where a run sits in the list order: when it started, then which was created first.
_OrderKey = tuple[datetime.datetime, int, str]


class InMemoryStore:
    """Implements :class:`RunStore` with dicts; lost when the process ends.

    ``max_ended_runs`` bounds what a long-lived process keeps: once more
    than that many runs have ended (completed, failed, stopped by a usage
    limit, cancelled), the one that ended first is forgotten with all its
    records. Runs that may still go on (running, paused, interrupted) are
    never forgotten. ``None`` (the default) keeps every run.
    """

    def __init__(self, *, max_ended_runs: int | None = None) -> None:
        if max_ended_runs is not None and max_ended_runs < 0:
            raise ValueError(f"max_ended_runs must not be negative, got {max_ended_runs}")
        self._max_ended_runs = max_ended_runs
        #: Ended runs' ids, the first to have ended first: the order they are forgotten in.
        self._ended: dict[str, None] = {}
        #: ``(started_at, creation number, run id)`` of every run, kept sorted: the list order.
        self._order: list[_OrderKey] = []
        self._order_keys: dict[str, _OrderKey] = {}
        self._created = itertools.count()
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
        self._place(run.run_id, (run.started_at, next(self._created), run.run_id))
        self._note_status(run)

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
        self._reorder(swapped)
        self._note_status(swapped)
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

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        return _decoded(self._require(run_id), RunRecord, types)

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        end = None if limit is None else offset + limit
        return [run_summary(self._runs[run_id]) for *_, run_id in self._order[offset:end]]

    async def count_runs(self) -> int:
        return len(self._runs)

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        self._require(run_id)
        if self._revisions[run_id] != revision:
            return False
        self._forget(run_id)
        return True

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        self._require(run_id)
        return [_read(stored, StepRecord, types) for stored in self._steps[run_id].values()]

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        self._require(run_id)
        return [_decoded(text, PauseRecord, types) for text in self._pauses[run_id].values()]

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        self._require(run_id)
        return [_read(stored, LedgerEntry, NO_TYPES) for stored in self._ledger[run_id].values()]

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        self._require(run_id)
        return list(self._traces[run_id])

    def _note_status(self, run: RunRecord) -> None:
        """Track which runs have ended, and forget the first to end beyond the bound."""
        self._ended.pop(run.run_id, None)
        if run.status in RESUMABLE_STATUSES:
            return
        self._ended[run.run_id] = None
        if self._max_ended_runs is None:
            return
        while len(self._ended) > self._max_ended_runs:
            self._forget(next(iter(self._ended)))

    def _place(self, run_id: str, key: _OrderKey) -> None:
        bisect.insort(self._order, key)
        self._order_keys[run_id] = key

    def _unplace(self, run_id: str) -> _OrderKey:
        key = self._order_keys.pop(run_id)
        del self._order[bisect.bisect_left(self._order, key)]
        return key

    def _reorder(self, run: RunRecord) -> None:
        """Move ``run`` in the list order if a swap changed when it started (rare)."""
        started, created, _ = self._order_keys[run.run_id]
        if started != run.started_at:
            self._unplace(run.run_id)
            self._place(run.run_id, (run.started_at, created, run.run_id))

    def _forget(self, run_id: str) -> None:
        """Drop the run and everything stored for it."""
        tables = (self._runs, self._revisions, self._epochs, self._steps, self._pauses)
        for table in (*tables, self._ledger, self._traces):
            del table[run_id]
        self._ended.pop(run_id, None)
        self._unplace(run_id)

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
    """The fields of a frozen attrs class every read may construct, else ``None``.

    Only such a class (the runtime's own, a registered one) may be kept as it
    is: a read from SQLite constructs any other only when the reader vouches
    for it, and an in-memory read must give the same answer.
    """
    try:
        return _FROZEN_FIELDS[cls]
    except KeyError:
        pass
    frozen = attrs.has(cls) and cls.__setattr__ is _FROZEN_SETATTR and CODEC.trusts(cls)
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


def _read(stored: Any, kind: type[Kept], types: TrustedTypes) -> Kept:
    """A stored step record or ledger entry: kept (see :class:`_KeptRecord`) or encoded."""
    if isinstance(stored, _KeptRecord):
        return stored.read(kind)
    return _decoded(stored, kind, types)


def _decoded(document: Any, kind: type[R], types: TrustedTypes) -> R:
    record: Any = CODEC.from_document(document, types=types)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record
