"""A run's owner: the lease it holds while it drives the run, and its heartbeat.

The protocol is the store's (see :mod:`trioflow.persistence._store`): a
drive claims the run with a new epoch and a lease, renews the lease while
it runs, writes everything under its epoch, and releases the run with its
outcome. This module is the runtime's side of it: :class:`Ownership`
holds the record the owner last stored, so each compare-and-set starts
from it, and :class:`LeaseKeeper`, one heartbeat task per runtime, renews
the lease of every run the runtime drives. A renewal that finds the run
taken over stops that drive at once
(:class:`~trioflow.persistence.StaleEpoch`), rather than letting it run
on until its next write is refused.

Lease times come from :class:`LeaseClock`: wall-clock time measured by
trio's clock, so a test on trio's ``MockClock`` sees leases run out in
virtual time.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import trio
from trioflow.persistence import RunRecord, RunStore, StaleEpoch, StoreError

#: How long a lease lasts unless renewed, by default.
DEFAULT_LEASE_S = 30.0

#: Renewals per lease: a heartbeat every third of the lease, so two can be late.
BEATS_PER_LEASE = 3


#: Where lease time starts in this ``trio.run``: the wall clock, and trio's clock, then.
_ANCHOR: trio.lowlevel.RunVar[tuple[datetime.datetime, float]] = trio.lowlevel.RunVar(
    "trioflow_lease_anchor"
)


class LeaseClock:
    """Wall-clock time (UTC) as trio's clock advances from the first reading in a ``trio.run``.

    Anchored to the wall clock once per ``trio.run`` (so every runtime in it
    agrees), then advanced by ``trio.current_time``: lease moments are
    comparable across processes (wall clock), yet follow a ``MockClock`` in
    tests and ignore wall-clock jumps during a run.
    """

    def now(self) -> datetime.datetime:
        try:
            wall, start = _ANCHOR.get()
        except LookupError:
            wall, start = datetime.datetime.now(datetime.UTC), trio.current_time()
            _ANCHOR.set((wall, start))
        return wall + datetime.timedelta(seconds=trio.current_time() - start)


@attrs.frozen
class LeaseTerms:
    """How long a lease lasts (``lease_s``), measured by ``clock``: one per runtime."""

    lease_s: float
    clock: LeaseClock

    def until(self) -> datetime.datetime:
        """When a lease taken or renewed now runs out."""
        return self.clock.now() + datetime.timedelta(seconds=self.lease_s)

    def claim(self, record: RunRecord) -> RunRecord:
        """``record`` claimed by a new owner (a fresh token naming this drive), leased from now."""
        return record.claimed_by(uuid.uuid4().hex, self.until())


@attrs.define(eq=False)
class Ownership:
    """One drive's hold on its run: the record it last stored, and its lease.

    ``record`` is replaced by every renewal, so the drive's final
    compare-and-set (:meth:`end`) starts from the record it stored last.
    ``scope`` is the cancel scope of the drive, which the keeper cancels
    when it finds the run taken over (``lost``) or cannot renew the lease
    (``failure``).
    """

    store: RunStore
    record: RunRecord
    terms: LeaseTerms
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    lost: bool = False
    failure: StoreError | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def epoch(self) -> int:
        return self.record.epoch

    async def end(self, **outcome: Any) -> bool:
        """Store the run record with ``outcome``'s fields, released; whether it was still ours.

        This owner's last write: how the run ended, with no owner, so the next
        resume need not wait for the lease to run out (one evolve of the record
        for both: this runs once per run). Shielded, so a cancellation cannot
        leave this owner unsure of what it stored.
        """
        ended = attrs.evolve(self.record, owner=None, lease_expires_at=None, **outcome)
        with trio.CancelScope(shield=True):
            swapped = await self.store.swap_run(self.record, ended)
        if swapped is None:
            self.lost = True
            return False
        self.record = swapped
        return True

    async def renew(self) -> bool:
        """Extend the lease by a whole lease from now; false if the run was replaced since.

        Shielded, like :meth:`end`: the owner always knows whether its renewal
        was stored, so its next compare-and-set starts from the right record.
        """
        with trio.CancelScope(shield=True):
            renewed = await self.store.renew_lease(self.record, self.terms.until())
        if renewed is None:
            return False
        if renewed.revision == self.record.revision:  # not ended meanwhile
            self.record = renewed
        return True

    def stop(self, *, failure: StoreError | None = None) -> None:
        """Cancel the drive: its run was taken over, or (``failure``) its lease cannot be kept."""
        if failure is None:
            self.lost = True
        else:
            self.failure = failure
        self.scope.cancel()


class LeaseKeeper:
    """Renews the lease of every run a runtime drives, every third of a lease.

    One task per runtime (see :meth:`running`), not one per run: a drive
    only registers its :class:`Ownership` for the time it runs
    (:meth:`keeping`), which costs next to nothing. A renewal that is
    refused stops that drive (:meth:`Ownership.stop`); the others go on.
    """

    def __init__(self, terms: LeaseTerms) -> None:
        self.terms = terms
        self._held: set[Ownership] = set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the heartbeat while the block runs; the block's exception propagates unchanged."""
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._beat)
                yield
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _sole(group)
        if error is not None:
            raise error

    @contextmanager
    def keeping(self, ownership: Ownership) -> Iterator[None]:
        """Keep ``ownership``'s lease alive for the block, which it stops if the lease is lost.

        A drive stopped that way raises :class:`StaleEpoch` (the run was taken
        over), or the store's error that kept the lease from being renewed.
        """
        self._held.add(ownership)
        try:
            with ownership.scope:
                yield
        finally:
            self._held.discard(ownership)
        if ownership.failure is not None:
            raise ownership.failure
        if ownership.lost:
            raise StaleEpoch(ownership.run_id, ownership.epoch)

    async def _beat(self) -> None:
        while True:
            await trio.sleep(self.terms.lease_s / BEATS_PER_LEASE)
            for ownership in list(self._held):
                await self._renew(ownership)

    async def _renew(self, ownership: Ownership) -> None:
        if ownership not in self._held:
            return  # its drive ended while an earlier one was renewed
        try:
            renewed = await ownership.renew()
        except StoreError as error:  # the journal is failing: that drive stops, with the error
            ownership.stop(failure=error)
            return
        if not renewed and ownership in self._held:
            ownership.stop()


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a nursery's group stands for: its one error, or one cancellation.

    Cancellations next to an error are dropped (the error says more; a
    cancellation still pending is delivered at the next checkpoint); a group
    of cancellations only (the drive and its heartbeat, both cancelled from
    outside) is one cancellation. Several errors stay a group.
    """
    _cancelled, errors = group.split(trio.Cancelled)
    error: BaseException = group if errors is None else errors
    while isinstance(error, BaseExceptionGroup) and (errors is None or len(error.exceptions) == 1):
        error = error.exceptions[0]
    return error
