"""A run's owner: the lease it holds while it drives the run, and its heartbeat.

The protocol is the store's (see :mod:`trioflow.persistence._store`): a
drive claims the run with a new epoch and a lease, renews the lease while
it runs, writes everything under its epoch, and releases the run with its
outcome. This module is the runtime's side of it: :class:`Ownership`
holds the record the owner last stored, so each compare-and-set starts
from it, and keeps the lease alive with a heartbeat task next to the
drive. A heartbeat that finds the run taken over stops the drive at once
(:class:`~trioflow.persistence.StaleEpoch`), rather than letting it run
on until its next write is refused.

Lease times come from :class:`LeaseClock`: wall-clock time measured by
trio's clock, so a test on trio's ``MockClock`` sees leases run out in
virtual time.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
from trioflow.persistence import RunRecord, RunStore, StaleEpoch

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


@attrs.define
class Ownership:
    """One drive's hold on its run: the record it last stored, and its lease.

    ``record`` is replaced by every renewal, so the drive's final
    compare-and-set (:meth:`swap`) starts from the revision it stored last.
    ``lost`` is set once a renewal was refused: another owner claimed the run.
    """

    store: RunStore
    record: RunRecord
    terms: LeaseTerms
    lost: bool = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def epoch(self) -> int:
        return self.record.epoch

    async def swap(self, replacement: RunRecord) -> bool:
        """Replace the run record with ``replacement``, released; whether it was still ours.

        Shielded, so a cancellation cannot leave this owner unsure of what it stored.
        """
        with trio.CancelScope(shield=True):
            swapped = await self.store.swap_run(self.record, replacement.released())
        if swapped is None:
            self.lost = True
            return False
        self.record = swapped
        return True

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease while the block runs; a lost lease cancels the block.

        The block's own exception propagates unchanged (not wrapped in an
        exception group); losing the lease raises :class:`StaleEpoch`.
        """
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                yield
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _sole(group)
        if error is not None:
            raise error

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(self.terms.lease_s / BEATS_PER_LEASE)
            await self.renew()

    async def renew(self) -> None:
        """Extend the lease by a whole lease from now; :class:`StaleEpoch` if the run was taken.

        Shielded, like :meth:`swap`: the owner always knows whether its renewal
        was stored, so its next compare-and-set starts from the right record.
        """
        with trio.CancelScope(shield=True):
            renewed = await self.store.renew_lease(self.record, self.terms.until())
        if renewed is None:
            self.lost = True
            raise StaleEpoch(self.run_id, self.epoch)
        self.record = renewed


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a nursery's group stands for: its one error, or one cancellation.

    Cancellations next to an error are dropped (the error says more; a
    cancellation still pending is delivered at the next checkpoint); a group
    of cancellations only (the drive and its heartbeat, both cancelled from
    outside) is one cancellation. Several errors stay a group.
    """
    _cancelled, errors = group.split(trio.Cancelled)
    error: BaseException = group if errors is None else errors
    while isinstance(error, BaseExceptionGroup):
        if errors is None or len(error.exceptions) == 1:
            error = error.exceptions[0]
        else:
            break
    return error
