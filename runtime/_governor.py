"""The governor: one actor per run that owns the usage ledger.

Every change to a run's usage goes through the governor's mailbox, so
updates are serialized by construction: no two branches ever race on a
total. Before a call with a known upper-bound estimate a step sends
:class:`Reserve` and gets a :class:`Grant`, a :class:`Denial`, or
:class:`Wait`: the governor grants only when committed plus reserved usage
plus the estimate stays within every limit (strict mode: no overshoot
under any schedule); when the call would fit but for other calls in
flight, the step waits for them to settle and asks again (concurrency is
throttled by the budget, not failed by it); a call that could exceed a
limit even alone is denied.
After the call the step sends :class:`Commit` with what was actually
spent; without an estimate (optimistic mode) this is where a breach is
found, and the reply names it. What was spent is counted as reported even
when it is more than the reservation (an estimate that was not a true
bound): the trace then notes the ``excess``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import attrs
import trio
from trioflow.actors import Actor, Ask, TraceSink
from trioflow.persistence import LedgerEntry

from ._journal import Journal
from ._money import format_usd
from ._notes import Committed, NoteKind, note
from ._paths import is_within
from ._usage import NO_USAGE, Usage, UsageLimits


@attrs.frozen(slots=True)
class Reserve(Ask["Grant | Denial | Wait"]):
    """Ask to set aside ``estimate`` for a call by the step at ``path``.

    Without an estimate (optimistic mode) nothing is set aside: the call is
    only refused once a limit was exceeded.
    """

    path: str
    estimate: Usage | None
    step_limits: UsageLimits | None


@attrs.frozen(slots=True)
class Grant:
    """A reservation; pass it back with the :class:`Commit`."""

    id: int
    #: The upper bound set aside; None in optimistic mode.
    estimate: Usage | None


@attrs.frozen(slots=True)
class Wait:
    """The reservation fits once calls in flight settle: wait for ``settled``, then ask again.

    Strict budgets throttle concurrent calls instead of failing them: a call
    is refused only when it could exceed a limit even with nothing else in
    flight.
    """

    settled: trio.Event


@attrs.frozen(slots=True)
class Denial:
    """The reservation would exceed a limit; the call must not happen."""

    message: str


@attrs.frozen(slots=True)
class Commit(Ask[str | None]):
    """``actual`` was spent by ``path``; settles ``grant`` if there was one.

    The reply is the breach message if a limit is now exceeded, else None.
    """

    path: str
    grant: Grant | None
    actual: Usage
    step_limits: UsageLimits | None
    #: The call's ledger key (see :class:`~trioflow.runtime.CallInfo`): a call
    #: that runs again after a crash replaces its entry instead of adding one.
    key: str


@attrs.frozen(slots=True)
class Release(Ask[None]):
    """Nothing was spent under ``grant`` (the call failed before paying)."""

    grant: Grant


@attrs.frozen(slots=True)
class Totals(Ask[Usage]):
    """Ask for the run's committed usage."""


@attrs.frozen(slots=True)
class UsageUnder(Ask[Usage]):
    """Ask for the usage committed by ``path`` and every step beneath it.

    A supervisor asks this for its own total: it covers branches that were
    cancelled or failed, whose results never reached it.
    """

    path: str


GovernorMessage = Reserve | Commit | Release | Totals | UsageUnder


class Governor(Actor[GovernorMessage]):
    """Serializes a run's usage; see the module docstring."""

    def __init__(
        self,
        limits: UsageLimits | None,
        trace: TraceSink,
        journal: Journal,
        ledger: Sequence[LedgerEntry] = (),
    ) -> None:
        self._limits = limits
        self._trace = trace
        self._journal = journal
        self._committed = NO_USAGE
        self._reserved: dict[int, Usage] = {}
        self._by_path: defaultdict[str, Usage] = defaultdict(Usage)
        self._entries: dict[str, tuple[str, Usage]] = {}
        self._ids = itertools.count(1)
        self._breach: str | None = None
        # Set (and replaced) whenever a reservation settles: reservations told
        # to Wait try again then.
        self._settled = trio.Event()
        for entry in ledger:  # a resumed run starts from what its journal committed
            usage = Usage(Decimal(entry.cost_usd), entry.input_tokens, entry.output_tokens)
            self._settle(entry.key, entry.path, usage)

    def _settle(self, key: str, path: str, usage: Usage) -> None:
        """Count ``usage`` under ``key``, replacing what an earlier run of that call counted."""
        earlier = self._entries.get(key)
        if earlier is not None:
            self._committed = _minus(self._committed, earlier[1])
            self._by_path[earlier[0]] = _minus(self._by_path[earlier[0]], earlier[1])
        self._entries[key] = (path, usage)
        self._committed += usage
        self._by_path[path] += usage

    async def receive(self, message: GovernorMessage) -> Grant | Denial | Wait | str | Usage | None:
        match message:
            case Reserve():
                return self._reserve(message)
            case Commit():
                # Journal first: if the write fails, the totals were not changed either.
                await self._journal.record_usage(message.key, message.path, message.actual)
                return self._commit(message)
            case Release(grant=grant):
                self._reserved.pop(grant.id, None)
                self._wake_waiters()
                return None
            case Totals():
                return self._committed
            case UsageUnder(path=path):
                return sum(
                    (usage for step, usage in self._by_path.items() if is_within(step, path)),
                    NO_USAGE,
                )
        raise TypeError(f"governor cannot handle {message!r}")

    def _reserve(self, request: Reserve) -> Grant | Denial | Wait:
        estimate = NO_USAGE if request.estimate is None else request.estimate
        reserved = sum(self._reserved.values(), NO_USAGE)
        if self._breach is not None:
            detail = f"{self._breach}: no more calls are granted"
            self._note(NoteKind.DENY, request.path, detail)
            return Denial(detail)
        crowded = _exceeded(self._limits, self._committed + reserved + estimate)
        if crowded is not None and _exceeded(self._limits, self._committed + estimate) is None:
            self._note(NoteKind.WAIT, request.path, str(estimate))
            return Wait(self._settled)
        limit = crowded
        step_limit = _step_exceeded(
            request.step_limits, self._by_path[request.path] + estimate, request.path
        )
        breach = limit or step_limit
        if breach is not None:
            detail = (
                f"{breach} would be exceeded: step {request.path!r} needs up to {estimate} "
                f"with {format_usd(self._committed.cost_usd)} committed and "
                f"{format_usd(reserved.cost_usd)} reserved"
            )
            self._note(NoteKind.DENY, request.path, detail)
            return Denial(detail)
        grant = Grant(next(self._ids), request.estimate)
        self._reserved[grant.id] = estimate
        self._note(NoteKind.GRANT, request.path, str(estimate))
        return grant

    def _wake_waiters(self) -> None:
        self._settled.set()
        self._settled = trio.Event()

    def _commit(self, commit: Commit) -> str | None:
        if commit.grant is not None:
            self._reserved.pop(commit.grant.id, None)
            self._wake_waiters()
        self._settle(commit.key, commit.path, commit.actual)
        self._note(NoteKind.COMMIT, commit.path, commit.key, Committed(commit.key, commit.actual))
        reserved = None if commit.grant is None else commit.grant.estimate
        if reserved is not None and _beyond(commit.actual, reserved):
            self._note(NoteKind.EXCESS, commit.path, f"{commit.actual} spent, {reserved} reserved")
        limit = _exceeded(self._limits, self._committed) or _step_exceeded(
            commit.step_limits, self._by_path[commit.path], commit.path
        )
        if limit is None:
            return None
        breach = f"{limit} exceeded"
        self._breach = self._breach or breach
        self._note(NoteKind.BREACH, commit.path, breach)
        return breach

    def _note(self, kind: NoteKind, about: str, detail: str, data: object = None) -> None:
        self._trace.record(note(kind, self.path, detail, about=about, data=data))


def _minus(total: Usage, part: Usage) -> Usage:
    return Usage(
        total.cost_usd - part.cost_usd,
        total.input_tokens - part.input_tokens,
        total.output_tokens - part.output_tokens,
    )


def _beyond(actual: Usage, reserved: Usage) -> bool:
    """Whether ``actual`` is more than ``reserved`` in cost or in either kind of token."""
    return (
        actual.cost_usd > reserved.cost_usd
        or actual.input_tokens > reserved.input_tokens
        or actual.output_tokens > reserved.output_tokens
    )


def _exceeded(limits: UsageLimits | None, usage: Usage) -> str | None:
    return None if limits is None else limits.exceeded_by(usage)


def _step_exceeded(limits: UsageLimits | None, usage: Usage, path: str) -> str | None:
    limit = _exceeded(limits, usage)
    return None if limit is None else f"{limit} for step {path!r}"
