"""The store protocol: what the runtime needs from wherever runs are kept.

One owner at a time. A ``running`` run is driven by exactly one process,
its owner, which holds a lease on it. The protocol, the same for every
store (memory, SQLite, and the PostgreSQL store to come):

* **Claim.** An owner takes a run by replacing the run record it read with
  :meth:`RunStore.swap_run` (a compare-and-set on ``revision``), the
  replacement made with :meth:`RunRecord.claimed_by`: its own ``owner``
  token, ``epoch`` one more than the record's, and ``lease_expires_at``.
  Of claimants that read one record, exactly one succeeds. A ``running``
  run whose lease has not run out (:meth:`RunRecord.leased_at`) is not
  claimed at all: its owner is taken to be alive.
* **Heartbeat.** While it drives the run, the owner renews its lease
  (:meth:`RunStore.renew_lease`) well before it runs out; a renewal is
  refused once another claim has replaced the owner's record, which is how
  an owner learns that it lost the run.
* **Fencing.** Every write the owner makes for the run (step records,
  ledger entries, pauses, trace events) carries its ``epoch``, and the
  store accepts it only if the stored run is still at that epoch,
  checked and written in one atomic step; otherwise :class:`StaleEpoch`
  is raised and nothing is stored. The owner's last record (its outcome)
  is a compare-and-set again. So after a takeover the old owner can
  write nothing, whatever it is still doing.
  A lease that ran out is forfeit: a claimant that read it expired wins
  even if the late owner renews it between that read and the claim (the
  renewal keeps the revision); the owner then finds out at its next
  renewal or write.
* **Release.** The outcome an owner stores (its last compare-and-set)
  has no ``owner`` and no ``lease_expires_at``: the next claim need not
  wait for the lease to run out.

Lease times are wall-clock moments (UTC) compared by the claimant, so the
processes sharing a store need clocks that agree to well within a lease.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Protocol

from trioflow.actors import TraceEvent

from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._trusted import NO_TYPES, TrustedTypes


class StoreError(Exception):
    """Base class of the store's errors."""


class UnknownRun(StoreError, LookupError):
    """No run with this id is stored."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r} is stored")
        self.run_id = run_id


class StaleEpoch(StoreError):
    """A write for a run under an epoch that is no longer the run's: nothing was stored.

    Another owner claimed the run since the writer did (its lease ran out),
    so the writer no longer owns it and must stop.
    """

    def __init__(self, run_id: str, epoch: int) -> None:
        super().__init__(
            f"run {run_id!r} is no longer at epoch {epoch}: another owner claimed it since, "
            "so this write was refused (nothing was stored)"
        )
        self.run_id = run_id
        self.epoch = epoch


def require_same_run(expected: RunRecord, replacement: RunRecord) -> None:
    """Refuse a swap that would put one run's record in place of another's."""
    if replacement.run_id != expected.run_id:
        raise ValueError(
            f"cannot replace run {expected.run_id!r} with the record of run {replacement.run_id!r}"
        )


class RunStore(Protocol):
    """Keeps runs, their step completion records, pauses, ledger and traces.

    Every write is committed when the awaited call returns (the default
    durability): a step's completion record is stored before anything that
    depends on it proceeds. Writing a value the codec cannot store raises
    :class:`~trioflow.persistence.UnstorableValue` and stores nothing.
    """

    async def create_run(self, run: RunRecord) -> None:
        """Store a new run; an existing id raises ``ValueError``."""

    async def swap_run(self, expected: RunRecord, replacement: RunRecord) -> RunRecord | None:
        """Replace the stored run with ``replacement`` if it is still at ``expected``'s revision.

        A compare-and-set: comparing and writing are one atomic step, so of
        callers that read the same record only the first to swap it
        succeeds. What is stored, and returned, is ``replacement`` with
        revision ``expected.revision + 1``. ``None`` means the stored run
        has another revision (someone swapped it since ``expected`` was
        read): nothing was written. :class:`UnknownRun` for an unknown id;
        ``ValueError`` if the two records are of different runs.
        """
        ...

    async def renew_lease(self, run: RunRecord, until: datetime.datetime) -> RunRecord | None:
        """Extend the lease of ``run``, the record its owner last stored, to ``until``.

        A compare-and-set on ``run``'s revision and epoch that does not
        count as a revision: what is stored, and returned, is ``run`` with
        ``lease_expires_at=until``. ``None`` means the stored run was
        replaced since (another owner claimed it): nothing was written.
        :class:`UnknownRun` for an unknown id.
        """
        ...

    async def record_step(self, step: StepRecord, *, epoch: int | None = None) -> None:
        """Store a step's completion record, replacing one at the same path.

        With ``epoch``, only if the stored run is at that epoch (else
        :class:`StaleEpoch`); the same holds for every write below.

        It finishes even when the calling task is cancelled meanwhile: the
        record is committed and the call returns normally. Why: the step's
        parent must hear of every step whose record exists, or a resume
        would replay a step its parent reported as cancelled. (A store
        whose write never yields to the scheduler has nothing to do; one
        that waits shields the wait.)
        """

    async def record_usage(self, entry: LedgerEntry, *, epoch: int | None = None) -> None:
        """Store a ledger entry, replacing one with the same key."""

    async def record_pause(self, pause: PauseRecord, *, epoch: int | None = None) -> None:
        """Store a pause, replacing one at the same path (to record its answer)."""

    async def save_trace(
        self, run_id: str, events: Sequence[TraceEvent], *, epoch: int | None = None
    ) -> None:
        """Append trace events to the run's trace."""

    async def get_run(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> RunRecord:
        """The run; :class:`UnknownRun` if there is none.

        Stored values are decoded with ``types`` (see
        :meth:`~trioflow.persistence.Codec.from_document`): a class neither
        there nor registered comes back :class:`~trioflow.persistence.Unresolved`.
        """
        ...

    async def list_runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        """Runs' summaries, oldest first (by start, then by creation): every one, or a page.

        No input, output or context is decoded. ``offset`` skips that many
        of the oldest; ``limit`` caps how many are returned. A page costs
        what its runs cost, not what the journal holds, so a caller can
        walk any number of runs in flat memory.
        """
        ...

    async def count_runs(self) -> int:
        """How many runs are stored."""
        ...

    async def delete_run(self, run_id: str, *, revision: int) -> bool:
        """Delete the run and everything stored for it, if it is still at ``revision``.

        Steps, pauses, ledger entries and trace events go with it, in one
        atomic step. ``False`` means the run was swapped since that revision
        was read (a resume claimed it, say): nothing was deleted.
        :class:`UnknownRun` if there is no such run.
        """
        ...

    async def steps_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[StepRecord]:
        """The run's completion records, in the order they were first written (see ``get_run``)."""
        ...

    async def pauses_of(self, run_id: str, *, types: TrustedTypes = NO_TYPES) -> list[PauseRecord]:
        """The run's pauses, in the order they were first written (see ``get_run``)."""
        ...

    async def ledger_of(self, run_id: str) -> list[LedgerEntry]:
        """The run's ledger, in the order entries were first written."""
        ...

    async def trace_of(self, run_id: str) -> list[TraceEvent]:
        """The run's trace events in order (empty if none were saved)."""
        ...
