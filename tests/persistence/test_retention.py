"""Retention: paging through runs, deleting a run, pruning, and a bounded in-memory store.

The store tests run against both stores, like the contract suite, so the two
cannot drift apart.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import apsw
import attrs
import pytest
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import (
    InMemoryStore,
    LedgerEntry,
    PauseRecord,
    PrunePolicy,
    RunRecord,
    RunStore,
    SQLiteStore,
    StepRecord,
    UnknownRun,
    prune_runs,
)

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)


def a_run(run_id: str, status: str = "completed", day: int = 0) -> RunRecord:
    return RunRecord(run_id, "p", status, T0 + day * DAY, input="in")


async def add_run_with_records(store: RunStore, run: RunRecord) -> None:
    """A run with one record of every kind, so a delete has something in every table."""
    run_id = run.run_id
    await store.create_run(run)
    await store.record_step(StepRecord(run_id, "main/0:a", "a", True, "x", 1, "0.01", 1, 2))
    await store.record_pause(PauseRecord(run_id, "main/1:ask", "ok?", {}, T0))
    await store.record_usage(LedgerEntry(run_id, "main/0:a#1#1", "main/0:a", "0.01", 1, 2))
    await store.save_trace(run_id, [TraceEvent(TraceKind.SPAWN, "main", 0.0, "main")])


async def ids(store: RunStore, **page: int) -> list[str]:
    return [run.run_id for run in await store.list_runs(**page)]


# -- paging ---------------------------------------------------------------------------------


async def test_runs_are_paged_oldest_first_by_start_then_creation(store: RunStore) -> None:
    # Created out of start order, two sharing a start: order is start, then creation.
    for run_id, day in (("c", 2), ("a", 0), ("b1", 1), ("b2", 1), ("d", 3)):
        await store.create_run(a_run(run_id, day=day))
    assert await store.count_runs() == 5
    assert await ids(store) == ["a", "b1", "b2", "c", "d"]
    assert await ids(store, limit=2) == ["a", "b1"]
    assert await ids(store, limit=2, offset=2) == ["b2", "c"]
    assert await ids(store, limit=2, offset=4) == ["d"]
    assert await ids(store, offset=3) == ["c", "d"]
    assert await ids(store, limit=2, offset=5) == []


async def test_count_of_an_empty_store_is_zero(store: RunStore) -> None:
    assert await store.count_runs() == 0
    assert await store.list_runs(limit=10) == []


# -- deleting a run -------------------------------------------------------------------------


async def test_delete_removes_the_run_and_every_record_of_it(store: RunStore) -> None:
    await add_run_with_records(store, a_run("gone"))
    await add_run_with_records(store, a_run("kept", day=1))
    assert await store.delete_run("gone", revision=0) is True
    assert await ids(store) == ["kept"]
    assert await store.count_runs() == 1
    for read in (store.get_run, store.steps_of, store.pauses_of, store.ledger_of, store.trace_of):
        with pytest.raises(UnknownRun, match="no run with id 'gone'"):
            await read("gone")
    # The other run's records are all still there.
    assert [step.path for step in await store.steps_of("kept")] == ["main/0:a"]
    assert [pause.path for pause in await store.pauses_of("kept")] == ["main/1:ask"]
    assert [entry.key for entry in await store.ledger_of("kept")] == ["main/0:a#1#1"]
    assert [event.path for event in await store.trace_of("kept")] == ["main"]


async def test_a_deleted_id_can_be_used_again(store: RunStore) -> None:
    await add_run_with_records(store, a_run("r"))
    assert await store.delete_run("r", revision=0) is True
    await add_run_with_records(store, a_run("r", status="running", day=4))
    assert [run.status for run in await store.list_runs()] == ["running"]
    assert [step.path for step in await store.steps_of("r")] == ["main/0:a"]


async def test_delete_of_a_run_swapped_since_it_was_read_deletes_nothing(store: RunStore) -> None:
    read = a_run("r", status="paused")
    await add_run_with_records(store, read)
    claimed = await store.swap_run(read, attrs.evolve(read, status="running"))
    assert claimed == attrs.evolve(read, status="running", revision=1)
    assert await store.delete_run("r", revision=0) is False
    assert await store.get_run("r") == claimed
    assert [step.path for step in await store.steps_of("r")] == ["main/0:a"]


async def test_delete_of_an_unknown_run_raises(store: RunStore) -> None:
    with pytest.raises(UnknownRun, match="no run with id 'nope'"):
        await store.delete_run("nope", revision=0)


# -- the policy -----------------------------------------------------------------------------


async def seed_statuses(store: RunStore) -> None:
    statuses = ("completed", "failed", "paused", "running", "interrupted", "usage_limit")
    for day, status in enumerate(statuses):
        await store.create_run(a_run(f"{day}-{status}", status=status, day=day))


async def test_prune_by_age_spares_runs_that_may_go_on(store: RunStore) -> None:
    await seed_statuses(store)
    now = T0 + 10 * DAY
    removed = await prune_runs(store, PrunePolicy(older_than=7 * DAY), now=now)
    # Started more than 7 days before day 10: days 0, 1 and 2 (day 3 is exactly 7 days old).
    assert [run.run_id for run in removed] == ["0-completed", "1-failed"]
    assert await ids(store) == [
        "2-paused",
        "3-running",
        "4-interrupted",
        "5-usage_limit",
    ]


async def test_prune_with_force_removes_resumable_runs_too(store: RunStore) -> None:
    await seed_statuses(store)
    policy = PrunePolicy(older_than=5 * DAY, force=True)
    removed = await prune_runs(store, policy, now=T0 + 10 * DAY)
    assert [run.run_id for run in removed] == [
        "0-completed",
        "1-failed",
        "2-paused",
        "3-running",
        "4-interrupted",
    ]
    assert await ids(store) == ["5-usage_limit"]


async def test_prune_keep_last_spares_the_newest_whatever_they_are(store: RunStore) -> None:
    await seed_statuses(store)
    removed = await prune_runs(store, PrunePolicy(keep_last=4))
    assert [run.run_id for run in removed] == ["0-completed", "1-failed"]
    assert await store.count_runs() == 4


async def test_prune_by_status_only(store: RunStore) -> None:
    await seed_statuses(store)
    removed = await prune_runs(store, PrunePolicy(statuses=frozenset({"failed", "usage_limit"})))
    assert [run.run_id for run in removed] == ["1-failed", "5-usage_limit"]
    # A resumable status named explicitly is still spared unless forced.
    assert await prune_runs(store, PrunePolicy(statuses=frozenset({"paused"}))) == []
    forced = await prune_runs(store, PrunePolicy(statuses=frozenset({"paused"}), force=True))
    assert [run.run_id for run in forced] == ["2-paused"]


async def test_dry_run_removes_nothing(store: RunStore) -> None:
    await seed_statuses(store)
    would = await prune_runs(store, PrunePolicy(keep_last=1), dry_run=True)
    assert [run.run_id for run in would] == ["0-completed", "1-failed"]
    assert await store.count_runs() == 6


async def test_prune_walks_many_pages(store: RunStore) -> None:
    # More runs than one page of the walk (500), all old enough.
    for n in range(1203):
        await store.create_run(a_run(f"r{n:04}", day=0))
    removed = await prune_runs(store, PrunePolicy(keep_last=3))
    assert len(removed) == 1200
    assert removed[0].run_id == "r0000"
    assert removed[-1].run_id == "r1199"
    assert await ids(store) == ["r1200", "r1201", "r1202"]


async def test_a_run_claimed_between_choosing_and_deleting_is_kept(store: RunStore) -> None:
    """The compare-and-delete: a resume that claims a chosen run wins over the prune."""
    paused = a_run("r", status="completed")
    await store.create_run(paused)

    class ClaimsDuringPrune:
        """Passes calls to the store, but a resume claims the run just before it is deleted."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def delete_run(self, run_id: str, *, revision: int) -> bool:
            await store.swap_run(paused, attrs.evolve(paused, status="running"))
            return await store.delete_run(run_id, revision=revision)

    removed = await prune_runs(ClaimsDuringPrune(), PrunePolicy(keep_last=0))  # type: ignore[arg-type]
    assert removed == []
    assert [(run.run_id, run.status) for run in await store.list_runs()] == [("r", "running")]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({}, "say which runs to prune"),
        ({"keep_last": -1}, "keep_last must not be negative, got -1"),
        ({"older_than": -DAY}, "older_than must not be negative"),
        ({"statuses": frozenset({"done"})}, "unknown run status 'done'; choose from cancelled"),
        ({"statuses": frozenset()}, r"unknown run status \(none given\)"),
    ],
)
def test_a_policy_that_says_nothing_or_nonsense_is_refused(
    policy: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PrunePolicy(**policy)  # type: ignore[arg-type]


# -- a bounded in-memory store ----------------------------------------------------------------


async def test_memory_store_forgets_the_first_ended_runs_beyond_its_bound() -> None:
    store = InMemoryStore(max_ended_runs=2)
    runs = [a_run(f"r{n}", status="running", day=n) for n in range(5)]
    for run in runs:
        await add_run_with_records(store, run)
    # Nothing has ended: nothing is forgotten, however many there are.
    assert await store.count_runs() == 5
    # r3 ends first, then r0, r4, r1 (r1 is stopped by its budget: ended too).
    for n, status in ((3, "completed"), (0, "failed"), (4, "cancelled"), (1, "usage_limit")):
        await store.swap_run(runs[n], attrs.evolve(runs[n], status=status))
    # The two that ended first are gone, with their records.
    assert await ids(store) == ["r1", "r2", "r4"]
    with pytest.raises(UnknownRun):
        await store.steps_of("r3")
    with pytest.raises(UnknownRun):
        await store.trace_of("r0")


async def test_memory_store_never_forgets_runs_that_may_go_on() -> None:
    store = InMemoryStore(max_ended_runs=0)
    for n, status in enumerate(("paused", "interrupted", "running")):
        await store.create_run(a_run(f"r{n}", status=status, day=n))
    done = a_run("done", status="running", day=9)
    await store.create_run(done)
    await store.swap_run(done, attrs.evolve(done, status="completed"))
    assert await ids(store) == ["r0", "r1", "r2"]


async def test_a_resumed_run_ends_again_at_the_back_of_the_queue() -> None:
    store = InMemoryStore(max_ended_runs=1)
    first = a_run("first", status="paused")
    await store.create_run(first)
    second = a_run("second", status="running", day=1)
    await store.create_run(second)
    # "first" is resumed (running again), then "second" ends, then "first" ends.
    resumed = attrs.evolve(first, status="running")
    running = attrs.evolve(resumed, revision=first.revision + 1)  # what a won swap stores
    assert await store.swap_run(first, resumed) == running  # a lost swap would give None
    await store.swap_run(second, attrs.evolve(second, status="completed"))
    await store.swap_run(running, attrs.evolve(running, status="completed"))
    assert await ids(store) == ["first"]


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_ended_runs must not be negative, got -1"):
        InMemoryStore(max_ended_runs=-1)


# -- SQLite: what a page costs --------------------------------------------------------------


async def test_a_sqlite_page_reads_through_the_start_index(tmp_path: Path) -> None:
    """A page is an index walk, not a scan and sort of the table (flat at any size)."""
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(a_run("r"))
    connection = apsw.Connection(str(path))
    plan = connection.execute(
        "EXPLAIN QUERY PLAN SELECT payload FROM runs ORDER BY started_at, rowid LIMIT 50 OFFSET 10"
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "runs_by_start" in details
    assert "TEMP B-TREE" not in details
    connection.close()


async def test_totals_survive_in_the_kept_runs(tmp_path: Path) -> None:
    """Pruning one run leaves another's totals exactly as they were."""
    async with SQLiteStore.open(tmp_path / "runs.db") as store:
        paid = attrs.evolve(a_run("paid", day=5), total_cost_usd="0.42", input_tokens=7)
        await store.create_run(paid)
        await store.create_run(a_run("old"))
        await prune_runs(store, PrunePolicy(older_than=DAY), now=T0 + 3 * DAY)
        [kept] = await store.list_runs()
        assert (kept.run_id, Decimal(kept.total_cost_usd), kept.input_tokens) == (
            "paid",
            Decimal("0.42"),
            7,
        )
