"""Retention: which stored runs to forget, so a journal does not grow without bound.

A journal keeps every run it is given (about 12 KB a run in SQLite), so a
long-lived deployment must forget some. The choice is made here, once, for
every store: a store only has to page through its runs
(``list_runs(limit=, offset=)``, ``count_runs()``) and delete one run with
everything stored for it (``delete_run``). A run that may still go on
(``running``, ``paused`` or ``interrupted``: a resume would continue it) is
never chosen unless the policy says ``force``: forgetting it would lose the
work a person or a crashed process left for later.

Deleting is a compare-and-delete on the run's revision, like
:meth:`RunStore.swap_run`: a run a resume claimed after it was chosen (its
revision moved on) is left alone, so pruning cannot delete a run from under
the process now driving it.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection

import attrs

from ._records import RunSummary
from ._store import RunStore

#: Statuses of runs that a resume would continue: pruned only when forced.
RESUMABLE_STATUSES = frozenset({"queued", "running", "paused", "interrupted"})

#: Every status a stored run can have.
RUN_STATUSES = frozenset(
    {
        "queued",
        "running",
        "completed",
        "failed",
        "paused",
        "usage_limit",
        "cancelled",
        "interrupted",
    }
)

#: How many runs are read at a time while choosing, so memory stays flat at any journal size.
_PAGE = 500


@attrs.frozen
class PrunePolicy:
    """Which runs :func:`prune_runs` removes: those matching every criterion given.

    ``older_than``: started more than this long ago. ``keep_last``: never
    the newest N runs (whatever their status). ``statuses``: only runs with
    one of these statuses. ``force``: also runs that may still go on
    (:data:`RESUMABLE_STATUSES`), which are kept otherwise. At least one of
    the first three must be given: a policy that names no criterion would
    remove every run, which nobody asks for by leaving options out.
    """

    older_than: datetime.timedelta | None = None
    keep_last: int | None = None
    statuses: frozenset[str] | None = None
    force: bool = False

    def __attrs_post_init__(self) -> None:
        if self.older_than is None and self.keep_last is None and self.statuses is None:
            raise ValueError(
                "say which runs to prune: an age (older_than), a number to keep (keep_last) "
                "or statuses"
            )
        if self.older_than is not None and self.older_than < datetime.timedelta(0):
            raise ValueError(f"older_than must not be negative, got {self.older_than}")
        if self.keep_last is not None and self.keep_last < 0:
            raise ValueError(f"keep_last must not be negative, got {self.keep_last}")
        if self.statuses is not None:
            _check_statuses(self.statuses)

    def selects(self, run: RunSummary, now: datetime.datetime) -> bool:
        """Whether ``run`` is removed (``keep_last`` is applied by :func:`prune_runs`)."""
        if run.status in RESUMABLE_STATUSES and not self.force:
            return False
        if self.statuses is not None and run.status not in self.statuses:
            return False
        return self.older_than is None or now - run.started_at > self.older_than


def _check_statuses(statuses: Collection[str]) -> None:
    unknown = sorted(set(statuses) - RUN_STATUSES)
    if not statuses or unknown:
        raise ValueError(
            f"unknown run status {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(sorted(RUN_STATUSES))}"
        )


async def prune_runs(
    store: RunStore,
    policy: PrunePolicy,
    *,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
) -> list[RunSummary]:
    """Remove the runs ``policy`` selects from ``store``; the runs removed, oldest first.

    With ``dry_run`` nothing is removed and the runs that would be are
    returned. A run that changed after it was chosen (a resume claimed it,
    or another prune removed it) is skipped and not returned.
    """
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    chosen = await _choose(store, policy, moment)
    if dry_run:
        return chosen
    return [run for run in chosen if await store.delete_run(run.run_id, revision=run.revision)]


async def _choose(store: RunStore, policy: PrunePolicy, now: datetime.datetime) -> list[RunSummary]:
    """The runs ``policy`` selects, read a page at a time, the newest ``keep_last`` spared."""
    candidates = await store.count_runs() - (policy.keep_last or 0)
    chosen: list[RunSummary] = []
    offset = 0
    while offset < candidates:
        page = await store.list_runs(limit=min(_PAGE, candidates - offset), offset=offset)
        if not page:
            break
        chosen.extend(run for run in page if policy.selects(run, now))
        offset += len(page)
    return chosen
