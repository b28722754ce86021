"""Records as table rows: what a SQL store writes for a record, and reads back.

Shared by the SQLite and PostgreSQL stores, so the two keep records the
same way: every row holds the whole record as the codec's text (a journal
is data, never code: reads decode it with the caller's trusted types,
exactly as :meth:`~trioflow.persistence.Codec.decode` allows), plus query
columns repeating parts of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from trioflow.actors import TraceEvent, TraceKind

from ._codec import CODEC, CorruptJournal, parse
from ._records import RunRecord, RunSummary
from ._schema import utc_text
from ._store import StoreError
from ._summary import run_summary
from ._trusted import TrustedTypes
from ._writer import RunRow

R = TypeVar("R")


class UnreadableRuns(StoreError):
    """Some stored runs cannot be decoded; ``readable`` holds all the others, in order."""

    def __init__(self, unreadable: dict[str, str], readable: list[RunSummary]) -> None:
        named = "; ".join(f"run {run_id!r}: {reason}" for run_id, reason in unreadable.items())
        super().__init__(
            f"{len(unreadable)} stored run(s) cannot be read and were left out ({named}); "
            f"the other {len(readable)} run(s) are intact"
        )
        self.unreadable = unreadable
        self.readable = readable


def run_row(run: RunRecord) -> RunRow:
    """``run`` encoded, with its query columns (times as :func:`utc_text`)."""
    return RunRow(
        run.run_id,
        run.pipeline_name,
        run.status,
        utc_text(run.started_at),
        None if run.finished_at is None else utc_text(run.finished_at),
        CODEC.encode(run, where="run"),
        run.revision,
        run.owner,
        run.epoch,
        None if run.lease_expires_at is None else utc_text(run.lease_expires_at),
    )


def text_of(payload: Any, kind: type[Any]) -> str:
    """A stored payload, which must be text."""
    if not isinstance(payload, str):
        raise CorruptJournal(f"expected a stored {kind.__name__} as text, read {payload!r}")
    return payload


def decoded(payload: Any, kind: type[R], types: TrustedTypes) -> R:
    """A stored record of class ``kind``, decoded with ``types``."""
    record: Any = CODEC.decode(text_of(payload, kind), types=types)
    if not isinstance(record, kind):
        raise CorruptJournal(f"expected a {kind.__name__}, read {type(record).__name__}")
    return record


def summaries(rows: Iterable[tuple[Any, Any]]) -> list[RunSummary]:
    """The summaries of ``(run_id, payload)`` rows; :class:`UnreadableRuns` names bad ones.

    One unreadable run does not hide the others: the error holds them.
    """
    runs: list[RunSummary] = []
    unreadable: dict[str, str] = {}
    for run_id, payload in rows:
        try:
            runs.append(run_summary(parse(text_of(payload, RunRecord))))
        except CorruptJournal as error:
            unreadable[str(run_id)] = str(error)
    if unreadable:
        raise UnreadableRuns(unreadable, runs)
    return runs


def trace_event(row: tuple[Any, ...]) -> TraceEvent:
    """A trace event from its row ``(kind, path, time, label, peer, detail)``."""
    kind, path, time, label, peer, detail = row
    try:
        known = TraceKind(kind)
    except ValueError:
        raise CorruptJournal(f"the journal holds a trace event of unknown kind {kind!r}") from None
    return TraceEvent(known, path, time, label, peer, detail)
