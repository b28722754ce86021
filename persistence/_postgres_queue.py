"""The run queue in a PostgreSQL journal: which runs a worker may take, and waking workers.

A run is **runnable** when it is ``queued`` (submitted, or answered and
re-queued), ``interrupted`` (its process was stopped), or ``running``
with a lease that has run out (its process died). Workers **pick**
runnable runs with ``SELECT ... FOR UPDATE SKIP LOCKED``: of workers
picking at once none waits for another and none gets a run another got,
and a picked run is not picked again until ``picked_until``. A pick is
only a hint, though: the worker then claims the run under the lease
protocol (:mod:`._store`, a compare-and-set), which is what guarantees one
owner at a time; a worker that dies between its pick and its claim only
delays the run until the pick runs out.

Waking: whoever makes a run runnable sends ``NOTIFY trioflow_runnable``;
an idle worker waits for it on a listening connection of its own, at most
its polling interval. A notification that is lost (a worker reconnecting,
say) only delays a run until the next poll; runs whose lease ran out are
found by polling alone.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from ._schema import utc_text

if TYPE_CHECKING:
    import psycopg

#: The notification channel of runs becoming runnable.
CHANNEL = "trioflow_runnable"

_PICK = """
UPDATE trioflow.runs SET picked_by = %(worker)s, picked_until = %(until)s
WHERE run_id IN (
    SELECT run_id FROM trioflow.runs
    WHERE (status IN ('queued', 'interrupted')
           OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s)))
      AND (picked_until IS NULL OR picked_until < %(now)s)
    ORDER BY created
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING run_id, created
"""


def pick(
    connection: psycopg.Connection[Any],
    worker: str,
    limit: int,
    now: datetime.datetime,
    until: datetime.datetime,
) -> list[str]:
    """Pick up to ``limit`` runnable runs for ``worker`` until ``until``; ids, oldest first."""
    rows = connection.execute(
        _PICK,
        {"worker": worker, "limit": limit, "now": utc_text(now), "until": utc_text(until)},
    ).fetchall()
    return [run_id for run_id, _ in sorted(rows, key=lambda row: row[1])]


def notify(connection: psycopg.Connection[Any]) -> None:
    """Wake the workers waiting for runnable runs."""
    connection.execute(f"NOTIFY {CHANNEL}")


def listen(connection: psycopg.Connection[Any]) -> None:
    """Make ``connection`` (autocommit, used for nothing else) receive the notifications."""
    connection.execute(f"LISTEN {CHANNEL}")


def wait(connection: psycopg.Connection[Any], timeout_s: float) -> bool:
    """Wait at most ``timeout_s`` for a notification on a listening connection; whether one came."""
    return any(True for _ in connection.notifies(timeout=timeout_s, stop_after=1))
