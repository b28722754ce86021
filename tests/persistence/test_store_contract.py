"""The store contract: one suite, run against every store.

Each test runs with every store (the suite's ``store``: :class:`InMemoryStore`,
:class:`SQLiteStore` in a fresh file, :class:`PostgresStore` in a fresh
database), so they cannot drift apart. Values
are compared exactly (:func:`assert_identical`): same types, enum members
by identity, ``Decimal`` exponents, datetime offsets.
"""

from __future__ import annotations

import collections
import datetime
import enum
import pathlib
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import attrs
import pydantic
import pytest
import trio
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import (
    LedgerEntry,
    PauseRecord,
    RunRecord,
    RunStore,
    StaleEpoch,
    StepRecord,
    TrustedTypes,
    UnknownRun,
    Unresolved,
    UnstorableValue,
    register_type,
)

UTC = datetime.UTC
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


# -- values the journal must keep exactly ---------------------------------------------------


class Status(enum.Enum):
    DRAFT = "draft"
    SENT = "sent"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Ratio(float, enum.Enum):
    HALF = 0.5


class Line(pydantic.BaseModel):
    sku: str
    price: Decimal


class Invoice(pydantic.BaseModel):
    number: int
    total: Decimal
    issued: datetime.datetime
    status: Status
    priority: Priority
    lines: list[Line]
    tags: tuple[str, ...]


@attrs.frozen
class Receipt:
    amount: Any
    parts: Any
    _note: str = "kept"


class Source(pydantic.BaseModel):
    """Standard pydantic field types the codec has no form of its own for."""

    url: pydantic.HttpUrl
    path: pathlib.Path
    email: pydantic.AnyUrl
    found: Decimal


class Money:
    """A user type the codec only knows through ``register_type``."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.cents, self.currency))


register_type(
    Money,
    lambda money: {"cents": money.cents, "currency": money.currency},
    lambda plain: Money(plain["cents"], plain["currency"]),
)

INVOICE = Invoice(
    number=7,
    total=Decimal("12.10"),
    issued=datetime.datetime(2026, 3, 1, 15, 30, 0, 250, tzinfo=IST),
    status=Status.SENT,
    priority=Priority.HIGH,
    lines=[Line(sku="a-1", price=Decimal("2.50")), Line(sku="b-2", price=Decimal("9.60"))],
    tags=("rush", "paper"),
)

ROUND_TRIPS: dict[str, Any] = {
    "pydantic model": INVOICE,
    "attrs with Any fields": Receipt(Decimal("2.50"), (1, "a", Decimal("0.10")), note="n"),
    "enum": Status.DRAFT,
    "int enum": Priority.LOW,
    "float enum": Ratio.HALF,
    "datetime with offset": datetime.datetime(2026, 3, 1, 9, 15, 1, 999999, tzinfo=IST),
    "decimal exponent": Decimal("1.10"),
    "decimal tiny": Decimal("-0E-7"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tuple and list": {"tuple": (1, 2), "list": [1, 2], "nested": ((1,), [(2, 3)])},
    "set and frozenset": {"set": {3, 1, 2}, "frozen": frozenset({"b", "a"})},
    "int keys": {1: {2: "two"}, "s": {3: [4, {5: None}]}},
    "dollar keys": {"$tuple": [1], "$decimal": "x"},
    "bytes": b"\x00\xffbinary",
    "registered type": {"price": Money(120, "USD"), "many": [Money(1, "EUR")]},
    "plain json": {"s": "text", "i": 10**30, "f": 0.1, "b": True, "n": None, "inf": -float("inf")},
    "pydantic field types": Source(
        url="https://example.org/a?b=1",
        path="/tmp/notes.txt",
        email="mailto:a@example.org",
        found=Decimal("0.50"),
    ),
    "counter": collections.Counter({"b": 2, "a": 1, 3: 4}),
    "ordered dict": collections.OrderedDict([("z", 1), ("a", (2,))]),
    "defaultdict": collections.defaultdict(list, {"k": [Decimal("1.0")]}),
}

#: The classes of ``ROUND_TRIPS``, handed to each read as a pipeline's would be.
TYPES = TrustedTypes.reachable_from(Invoice, Receipt, Source, Ratio)


def assert_identical(got: Any, expected: Any, where: str = "value") -> None:
    """``got`` equals ``expected`` and has the same type all the way down."""
    assert type(got) is type(expected), f"{where}: {type(got)} is not {type(expected)}"
    if isinstance(expected, enum.Enum):
        assert got is expected, where
    elif isinstance(expected, Decimal):
        assert got.as_tuple() == expected.as_tuple(), f"{where}: {got!r} != {expected!r}"
    elif isinstance(expected, datetime.datetime):
        assert (got, got.utcoffset()) == (expected, expected.utcoffset()), where
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_identical(g, e, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert list(got) == list(expected), where
        if isinstance(expected, collections.defaultdict):
            assert got.default_factory is expected.default_factory, where
        for key in expected:
            assert_identical(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, pydantic.BaseModel):
        for name in type(expected).model_fields:
            assert_identical(getattr(got, name), getattr(expected, name), f"{where}.{name}")
    elif attrs.has(type(expected)):
        for field in attrs.fields(type(expected)):
            name = field.name
            assert_identical(getattr(got, name), getattr(expected, name), f"{where}.{name}")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


# -- records ----------------------------------------------------------------------------------


def a_run(run_id: str = "r1", **changes: Any) -> RunRecord:
    run = RunRecord(
        run_id=run_id,
        pipeline_name="invoices",
        status="running",
        started_at=T0,
        input={"topic": "trio"},
        context={"user": "ada"},
    )
    return attrs.evolve(run, **changes)


def a_step(path: str, run_id: str = "r1", **changes: Any) -> StepRecord:
    step = StepRecord(
        run_id=run_id,
        path=path,
        name=path.rpartition(":")[2],
        success=True,
        output=f"output of {path}",
        attempts=1,
        cost_usd="0.02",
        input_tokens=10,
        output_tokens=5,
    )
    return attrs.evolve(step, **changes)


def a_pause(path: str, run_id: str = "r1", **changes: Any) -> PauseRecord:
    pause = PauseRecord(
        run_id=run_id,
        path=path,
        message=f"approve {path}?",
        input_schema={"type": "object", "properties": {"approved": {"type": "boolean"}}},
        created_at=T0,
    )
    return attrs.evolve(pause, **changes)


def an_entry(key: str, run_id: str = "r1", **changes: Any) -> LedgerEntry:
    entry = LedgerEntry(
        run_id=run_id,
        key=key,
        path=key.partition("#")[0],
        cost_usd="0.01",
        input_tokens=3,
        output_tokens=4,
    )
    return attrs.evolve(entry, **changes)


# -- runs -------------------------------------------------------------------------------------


async def test_a_created_run_reads_back_equal(store: RunStore) -> None:
    run = a_run(
        status="completed",
        finished_at=T0 + datetime.timedelta(seconds=3),
        output={"answer": Decimal("4.20")},
        final_context={"user": "ada", "notes": ("a", "b")},
        total_cost_usd="1.20",
        input_tokens=100,
        output_tokens=50,
        error=None,
    )
    await store.create_run(run)
    assert_identical(await store.get_run("r1"), run)
    assert (await store.get_run("r1")).total_tokens == 150


async def test_runs_are_listed_oldest_first_across_offsets(store: RunStore) -> None:
    at_10z = datetime.datetime(
        2026, 3, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    at_11z = datetime.datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    at_10_30z = datetime.datetime(
        2026, 3, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-1))
    )
    await store.create_run(a_run("late", started_at=at_11z))
    await store.create_run(a_run("early", started_at=at_10z))
    await store.create_run(a_run("middle", started_at=at_10_30z))
    await store.create_run(a_run("late-too", started_at=at_11z))  # a tie: creation order

    runs = await store.list_runs()

    assert [run.run_id for run in runs] == ["early", "middle", "late", "late-too"]
    assert_identical(runs[0], a_run("early", started_at=at_10z).summary())


async def test_no_runs_list_empty(store: RunStore) -> None:
    assert await store.list_runs() == []


async def test_a_duplicate_run_id_is_refused_and_the_first_kept(store: RunStore) -> None:
    await store.create_run(a_run(input="first"))

    with pytest.raises(ValueError, match=r"^a run with id 'r1' is already stored$"):
        await store.create_run(a_run(input="second"))

    assert_identical(await store.get_run("r1"), a_run(input="first"))
    assert [run.run_id for run in await store.list_runs()] == ["r1"]


# -- swap_run: the compare-and-set that resumes claim runs with ---------------------------------


def finished_run(**changes: Any) -> RunRecord:
    """``a_run()`` as a drive leaves it: failed, with totals."""
    return a_run(
        status="failed",
        finished_at=datetime.datetime(2026, 3, 1, 16, 0, tzinfo=IST),
        total_cost_usd="0.35",
        input_tokens=7,
        output_tokens=8,
        error="boom: step 'main/0:a' failed",
        **changes,
    )


async def test_swap_run_replaces_an_unchanged_run_at_the_next_revision(store: RunStore) -> None:
    await store.create_run(a_run())
    read = await store.get_run("r1")

    swapped = await store.swap_run(read, finished_run())

    assert_identical(swapped, finished_run(revision=1))
    assert_identical(await store.get_run("r1"), finished_run(revision=1))
    assert_identical(await store.list_runs(), [finished_run(revision=1).summary()])


async def test_swap_run_sets_the_revision_whatever_the_replacement_says(store: RunStore) -> None:
    await store.create_run(a_run())

    swapped = await store.swap_run(a_run(), finished_run(revision=41))

    assert_identical(swapped, finished_run(revision=1))
    assert_identical(await store.get_run("r1"), finished_run(revision=1))


async def test_swaps_from_each_revision_read_count_up(store: RunStore) -> None:
    await store.create_run(a_run())

    first = await store.swap_run(await store.get_run("r1"), a_run(status="paused"))
    second = await store.swap_run(await store.get_run("r1"), a_run(status="running"))
    third = await store.swap_run(await store.get_run("r1"), finished_run())

    assert_identical(
        [first, second, third],
        [a_run(status="paused", revision=1), a_run(revision=2), finished_run(revision=3)],
    )
    assert_identical(await store.get_run("r1"), finished_run(revision=3))


async def test_swap_run_from_a_stale_read_loses_and_leaves_the_run_untouched(
    store: RunStore,
) -> None:
    await store.create_run(a_run(status="paused"))
    read_by_one = await store.get_run("r1")
    read_by_other = await store.get_run("r1")
    assert await store.swap_run(read_by_one, a_run(input="one")) == a_run(input="one", revision=1)

    lost = await store.swap_run(read_by_other, a_run(input="other"))

    assert lost is None
    assert_identical(await store.get_run("r1"), a_run(input="one", revision=1))
    assert_identical(await store.list_runs(), [a_run(input="one", revision=1).summary()])


async def test_swap_run_loses_to_any_later_revision_not_only_the_next(store: RunStore) -> None:
    await store.create_run(a_run())
    stale = await store.get_run("r1")
    await store.swap_run(stale, a_run(status="paused"))
    await store.swap_run(await store.get_run("r1"), a_run(status="running"))

    assert await store.swap_run(attrs.evolve(stale, revision=1), finished_run()) is None
    assert await store.swap_run(attrs.evolve(stale, revision=3), finished_run()) is None
    assert_identical(await store.get_run("r1"), a_run(revision=2))


async def test_of_concurrent_swaps_from_one_read_exactly_one_wins(store: RunStore) -> None:
    await store.create_run(a_run(status="paused"))
    read = await store.get_run("r1")
    outcomes: dict[int, RunRecord | None] = {}

    async def swap(number: int) -> None:
        outcomes[number] = await store.swap_run(read, a_run(input=number))

    async with trio.open_nursery() as nursery:
        for number in range(8):
            nursery.start_soon(swap, number)

    [winner] = [number for number, swapped in outcomes.items() if swapped is not None]
    assert sorted(outcomes) == list(range(8))
    assert_identical(outcomes[winner], a_run(input=winner, revision=1))
    assert_identical(await store.get_run("r1"), a_run(input=winner, revision=1))


async def test_swap_run_refuses_the_record_of_another_run(store: RunStore) -> None:
    await store.create_run(a_run())
    await store.create_run(a_run("r2"))

    with pytest.raises(ValueError, match=r"^cannot replace run 'r1' with the record of run 'r2'$"):
        await store.swap_run(a_run(), a_run("r2", status="failed"))

    assert_identical(await store.list_runs(), [a_run().summary(), a_run("r2").summary()])


UNKNOWN_RUN_CALLS: dict[str, Callable[[RunStore], Awaitable[object]]] = {
    "swap_run": lambda store: store.swap_run(a_run("ghost"), a_run("ghost", status="failed")),
    "record_step": lambda store: store.record_step(a_step("main/0:a", run_id="ghost")),
    "record_usage": lambda store: store.record_usage(an_entry("main/0:a#1#1", run_id="ghost")),
    "record_pause": lambda store: store.record_pause(a_pause("main/0:a", run_id="ghost")),
    "save_trace": lambda store: store.save_trace(
        "ghost", [TraceEvent(TraceKind.SPAWN, "main", 0.0)]
    ),
    "renew_lease": lambda store: store.renew_lease(a_run("ghost"), T0),
    "fenced record_step": lambda store: store.record_step(
        a_step("main/0:a", run_id="ghost"), epoch=0
    ),
    "fenced record_usage": lambda store: store.record_usage(
        an_entry("main/0:a#1#1", run_id="ghost"), epoch=0
    ),
    "fenced record_pause": lambda store: store.record_pause(
        a_pause("main/0:a", run_id="ghost"), epoch=0
    ),
    "fenced save_trace": lambda store: store.save_trace("ghost", [], epoch=0),
    "get_run": lambda store: store.get_run("ghost"),
    "steps_of": lambda store: store.steps_of("ghost"),
    "pauses_of": lambda store: store.pauses_of("ghost"),
    "ledger_of": lambda store: store.ledger_of("ghost"),
    "trace_of": lambda store: store.trace_of("ghost"),
}


@pytest.mark.parametrize("method", sorted(UNKNOWN_RUN_CALLS))
async def test_every_method_raises_unknown_run_for_an_unknown_id(
    store: RunStore, method: str
) -> None:
    await store.create_run(a_run("r1"))

    with pytest.raises(UnknownRun, match=r"^no run with id 'ghost' is stored$") as raised:
        await UNKNOWN_RUN_CALLS[method](store)

    assert raised.value.run_id == "ghost"
    assert isinstance(raised.value, LookupError)
    assert [run.run_id for run in await store.list_runs()] == ["r1"]


# -- the lease: claims, renewals, and the epoch every write is fenced with ----------------------

LEASED = T0 + datetime.timedelta(seconds=30)
RENEWED = T0 + datetime.timedelta(seconds=40)


async def owned_run(store: RunStore) -> RunRecord:
    """``r1`` created by its first owner (epoch 1), then claimed by a second (epoch 2)."""
    await store.create_run(a_run().claimed_by("first", LEASED))
    first = await store.get_run("r1")
    claimed = await store.swap_run(first, first.claimed_by("second", RENEWED))
    assert claimed is not None  # narrows the type; checked exactly below
    return claimed


def test_a_claim_takes_the_next_epoch_with_its_owner_and_lease() -> None:
    claimed = a_run(epoch=4).claimed_by("owner", LEASED)

    assert_identical(claimed, a_run(epoch=5, owner="owner", lease_expires_at=LEASED))
    assert claimed.leased_at(LEASED - datetime.timedelta(microseconds=1))
    assert not claimed.leased_at(LEASED)  # a lease runs until, not through, its moment
    assert not a_run().leased_at(T0)  # no lease at all: nothing to wait for


async def test_a_claimed_run_is_stored_with_its_owner_epoch_and_lease(store: RunStore) -> None:
    claimed = await owned_run(store)

    expected = a_run(owner="second", epoch=2, lease_expires_at=RENEWED, revision=1)
    assert_identical(claimed, expected)
    assert_identical(await store.get_run("r1"), expected)


FENCED_WRITES: dict[str, Callable[[RunStore, int], Awaitable[None]]] = {
    "record_step": lambda store, epoch: store.record_step(a_step("main/0:a"), epoch=epoch),
    "record_usage": lambda store, epoch: store.record_usage(an_entry("main/0:a#1#1"), epoch=epoch),
    "record_pause": lambda store, epoch: store.record_pause(a_pause("main/0:a"), epoch=epoch),
    "save_trace": lambda store, epoch: store.save_trace(
        "r1", [TraceEvent(TraceKind.NOTE, "run", 1.0, "written")], epoch=epoch
    ),
}


async def stored_records(store: RunStore) -> tuple[Any, ...]:
    return (
        await store.get_run("r1"),
        await store.steps_of("r1"),
        await store.ledger_of("r1"),
        await store.pauses_of("r1"),
        await store.trace_of("r1"),
    )


@pytest.mark.parametrize("write", sorted(FENCED_WRITES))
async def test_a_write_under_an_older_epoch_is_refused_and_stores_nothing(
    store: RunStore, write: str
) -> None:
    await owned_run(store)
    before = await stored_records(store)

    with pytest.raises(StaleEpoch) as raised:
        await FENCED_WRITES[write](store, 1)

    assert str(raised.value) == (
        "run 'r1' is no longer at epoch 1: another owner claimed it since, so this write "
        "was refused (nothing was stored)"
    )
    assert (raised.value.run_id, raised.value.epoch) == ("r1", 1)
    assert_identical(await stored_records(store), before)
    with pytest.raises(StaleEpoch):  # an epoch the run never reached is no better
        await FENCED_WRITES[write](store, 3)
    assert_identical(await stored_records(store), before)


async def test_writes_under_the_current_epoch_or_none_are_stored(store: RunStore) -> None:
    await owned_run(store)

    for write in FENCED_WRITES.values():
        await write(store, 2)
    await store.record_step(a_step("main/1:b"))  # unfenced: a write outside any lease

    assert_identical(await store.steps_of("r1"), [a_step("main/0:a"), a_step("main/1:b")])
    assert_identical(await store.ledger_of("r1"), [an_entry("main/0:a#1#1")])
    assert_identical(await store.pauses_of("r1"), [a_pause("main/0:a")])
    assert await store.trace_of("r1") == [TraceEvent(TraceKind.NOTE, "run", 1.0, "written")]


async def test_a_renewal_extends_the_lease_without_a_new_revision(store: RunStore) -> None:
    owned = await owned_run(store)
    later = RENEWED + datetime.timedelta(seconds=10)

    renewed = await store.renew_lease(owned, later)

    expected = attrs.evolve(owned, lease_expires_at=later)
    assert_identical(renewed, expected)
    assert_identical(await store.get_run("r1"), expected)
    assert expected.revision == owned.revision == 1
    assert_identical(await store.renew_lease(owned, RENEWED), owned)  # again, from the same


async def test_a_renewal_by_an_owner_whose_run_was_claimed_since_is_refused(
    store: RunStore,
) -> None:
    await store.create_run(a_run().claimed_by("first", LEASED))
    first = await store.get_run("r1")
    claimed = await store.swap_run(first, first.claimed_by("second", RENEWED))

    assert await store.renew_lease(first, RENEWED + datetime.timedelta(seconds=1)) is None
    assert_identical(await store.get_run("r1"), claimed)


async def test_a_claim_from_a_record_read_before_a_renewal_still_wins(store: RunStore) -> None:
    """A lease that ran out is forfeit: the renewal keeps the revision the claim compares."""
    await store.create_run(a_run().claimed_by("first", LEASED))
    read = await store.get_run("r1")
    # Renewed in place: the same revision and epoch, only the lease moved on.
    assert await store.renew_lease(read, RENEWED) == attrs.evolve(read, lease_expires_at=RENEWED)

    claimed = await store.swap_run(read, read.claimed_by("second", RENEWED))

    assert_identical(claimed, a_run(owner="second", epoch=2, lease_expires_at=RENEWED, revision=1))


# -- steps, ledger, pauses ----------------------------------------------------------------------


async def test_record_step_replaces_at_a_path_and_keeps_first_write_order(
    store: RunStore,
) -> None:
    await store.create_run(a_run())
    first, second, third = a_step("main/0:a"), a_step("main/1:b"), a_step("main/2:c")
    for step in (first, second, third):
        await store.record_step(step)
    second_again = a_step(
        "main/1:b",
        output={"retried": True},
        attempts=2,
        patch=({"op": "set", "field": "notes", "value": ("x",)},),
        latency_s=0.125,
        feedback="too short",
        metadata={"model": "fake"},
        children=("main/1:b/0:x",),
        breach="cost",
    )

    await store.record_step(second_again)

    assert_identical(await store.steps_of("r1"), [first, second_again, third])


async def test_steps_belong_to_their_run(store: RunStore) -> None:
    await store.create_run(a_run("r1"))
    await store.create_run(a_run("r2"))
    await store.record_step(a_step("main/0:a", run_id="r2"))
    await store.record_step(a_step("main/0:a", run_id="r1", output="r1's"))
    await store.record_step(a_step("main/1:b", run_id="r2"))

    assert_identical(await store.steps_of("r1"), [a_step("main/0:a", output="r1's")])
    assert_identical(
        await store.steps_of("r2"),
        [a_step("main/0:a", run_id="r2"), a_step("main/1:b", run_id="r2")],
    )
    assert await store.pauses_of("r1") == []
    assert await store.ledger_of("r1") == []


async def test_record_usage_replaces_by_key_in_first_write_order(store: RunStore) -> None:
    await store.create_run(a_run())
    a1, b1, a2 = an_entry("main/0:a#1#1"), an_entry("main/1:b#1#1"), an_entry("main/0:a#2#1")
    for entry in (a1, b1, a2):
        await store.record_usage(entry)
    b1_again = an_entry("main/1:b#1#1", cost_usd="0.07", input_tokens=30, output_tokens=40)

    await store.record_usage(b1_again)

    assert_identical(await store.ledger_of("r1"), [a1, b1_again, a2])


async def test_a_pause_is_recorded_then_answered_in_place(store: RunStore) -> None:
    await store.create_run(a_run())
    approve, review = a_pause("main/1:approve"), a_pause("main/3:loop[2]/0:review")
    await store.record_pause(approve)
    await store.record_pause(review)
    answered = attrs.evolve(
        approve,
        answer={"approved": True, "by": ("ada",)},
        answered_at=datetime.datetime(2026, 3, 2, 8, 0, tzinfo=IST),
    )

    await store.record_pause(answered)

    assert_identical(await store.pauses_of("r1"), [answered, review])


async def test_writes_of_one_run_called_at_once_are_kept_in_call_order(store: RunStore) -> None:
    """Parallel branches pausing at once: the run's pauses read back in the order written."""
    await store.create_run(a_run())
    called: list[str] = []

    async def pause(path: str) -> None:
        called.append(path)  # no checkpoint between this and the call below
        await store.record_pause(a_pause(path))

    async with trio.open_nursery() as nursery:
        for index in range(12):
            nursery.start_soon(pause, f"main/{index}:ask")

    assert sorted(called) == sorted(f"main/{index}:ask" for index in range(12))
    assert [stored.path for stored in await store.pauses_of("r1")] == called


# -- traces -----------------------------------------------------------------------------------


async def test_trace_events_are_appended_in_order_and_read_back_equal(store: RunStore) -> None:
    await store.create_run(a_run())
    assert await store.trace_of("r1") == []
    first = [
        TraceEvent(TraceKind.SPAWN, "run/main", 0.1 + 0.2, peer="run"),
        TraceEvent(TraceKind.SEND, "run", 1e-9, "Execute", "run/main"),
        TraceEvent(TraceKind.RECEIVE, "run/main", 2.5, "Execute", None),
    ]
    second = [
        TraceEvent(TraceKind.CANCEL, "run/main/0:a", 3.0, detail="usage limit: cost $1.20"),
        TraceEvent(TraceKind.EXIT, "run/main", 4.75, "failed", None, "ValueError: ü ✓"),
        TraceEvent(TraceKind.NOTE, "run/governor", 5.0, "reserve", "run/main/0:a", "$0.10"),
        TraceEvent(TraceKind.RESTART, "run/main/1:b", 6.0),
    ]

    await store.save_trace("r1", first)
    await store.save_trace("r1", [])
    await store.save_trace("r1", second)

    trace = await store.trace_of("r1")
    assert trace == first + second
    assert [event.kind for event in trace] == [event.kind for event in first + second]
    assert all(type(event.time) is float for event in trace)


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
async def test_values_round_trip_exactly(store: RunStore, name: str) -> None:
    value = ROUND_TRIPS[name]
    run = a_run(input=value, context=value, output=[value])
    step = a_step("main/0:a", output=value, patch=(value,), metadata={"value": value})

    await store.create_run(run)
    await store.record_step(step)
    await store.record_pause(a_pause("main/1:ask", answer=value))

    assert_identical(await store.get_run("r1", types=TYPES), run)
    assert_identical(await store.steps_of("r1", types=TYPES), [step])
    assert_identical((await store.pauses_of("r1", types=TYPES))[0].answer, value)


async def test_a_class_the_read_is_not_handed_comes_back_unresolved(store: RunStore) -> None:
    """Both stores construct the same classes: memory keeps no user object for a later read."""
    await store.create_run(a_run(output=Status.SENT))
    await store.record_step(a_step("main/0:a", output="x", patch=(Receipt(1, ("x",)),)))

    assert (await store.get_run("r1")).output == Unresolved(f"{__name__}:Status", "sent", "enum")
    [step] = await store.steps_of("r1")
    assert step.patch == (
        Unresolved(f"{__name__}:Receipt", {"amount": 1, "parts": ("x",), "note": "kept"}, "attrs"),
    )
    assert (await store.get_run("r1", types=TYPES)).output is Status.SENT


async def test_an_unresolved_value_is_written_back_as_it_was_read(store: RunStore) -> None:
    """A record read without its classes and stored again loses nothing."""
    await store.create_run(a_run(output=INVOICE, status="paused"))
    read = await store.get_run("r1")
    assert type(read.output) is Unresolved

    await store.swap_run(read, attrs.evolve(read, status="running"))

    assert_identical(
        await store.get_run("r1", types=TYPES), a_run(output=INVOICE, status="running", revision=1)
    )


async def test_a_read_returns_a_copy_not_the_written_object(store: RunStore) -> None:
    items = [1, 2]
    await store.create_run(a_run(output={"items": items}))
    items.append(3)

    assert (await store.get_run("r1")).output == {"items": [1, 2]}
    assert (await store.get_run("r1")).output is not (await store.get_run("r1")).output


async def test_a_step_read_back_is_unaffected_by_changes_to_what_was_written_or_read(
    store: RunStore,
) -> None:
    await store.create_run(a_run())
    items = [1, 2]
    frozen = a_step("main/0:a", output="done", patch=(Receipt(1, ("x",)),), metadata={"k": 1})
    mutable = a_step("main/1:b", output=items, metadata={"k": (1, 2)})
    await store.record_step(frozen)
    await store.record_step(mutable)
    items.append(3)
    frozen.metadata["k"] = 2
    (read_frozen, read_mutable) = await store.steps_of("r1")
    read_frozen.metadata["k"] = 3
    read_mutable.output.append(4)

    assert_identical(
        await store.steps_of("r1", types=TYPES),
        [
            a_step("main/0:a", output="done", patch=(Receipt(1, ("x",)),), metadata={"k": 1}),
            a_step("main/1:b", output=[1, 2], metadata={"k": (1, 2)}),
        ],
    )


async def test_nested_dicts_and_lists_read_back_as_copies(store: RunStore) -> None:
    await store.create_run(a_run())
    output = {"found": {"a": [1, {"b": 2.5}]}, "seen": ["x"]}
    metadata = {"scores": {"k": [1, 2]}}
    await store.record_step(a_step("main/0:a", output=output, metadata=metadata))
    output["found"]["a"].append(3)
    metadata["scores"]["k"].append(3)
    (read,) = await store.steps_of("r1")
    read.output["seen"].append("y")
    read.metadata["scores"]["k"].clear()

    expected = a_step(
        "main/0:a",
        output={"found": {"a": [1, {"b": 2.5}]}, "seen": ["x"]},
        metadata={"scores": {"k": [1, 2]}},
    )
    assert_identical(await store.steps_of("r1"), [expected])


async def test_a_step_record_is_stored_though_its_caller_is_cancelled(store: RunStore) -> None:
    await store.create_run(a_run())
    step = a_step("main/0:a", output={"items": [1, 2]})
    returned = False

    with trio.CancelScope() as scope:
        scope.cancel()
        await store.record_step(step)
        returned = True  # reached only if the call returned normally

    assert returned
    assert await store.steps_of("r1") == [step]


UNSTORABLE_MESSAGE = (
    ": cannot store a value of type builtins:object; register it with "
    "trioflow.persistence.register_type(cls, unstructure, structure)"
)


async def test_an_unstorable_step_output_names_step_field_and_type_and_writes_nothing(
    store: RunStore,
) -> None:
    await store.create_run(a_run())
    stored = a_step("main/0:a", output={"items": [1]})
    await store.record_step(stored)

    with pytest.raises(UnstorableValue) as raised:
        await store.record_step(a_step("main/0:a", output={"items": [1, object()]}))

    where = "step 'main/0:a'.output['items'][1]"
    assert str(raised.value) == where + UNSTORABLE_MESSAGE
    assert (raised.value.where, raised.value.type_name) == (where, "builtins:object")
    assert_identical(await store.steps_of("r1"), [stored])


async def test_an_unstorable_run_is_not_created_or_swapped(store: RunStore) -> None:
    with pytest.raises(UnstorableValue) as raised:
        await store.create_run(a_run("bad", input=(object(),)))
    assert raised.value.where == "run.input[0]"
    with pytest.raises(UnknownRun):
        await store.get_run("bad")

    await store.create_run(a_run(output="first"))
    with pytest.raises(UnstorableValue) as raised:
        await store.swap_run(
            a_run(output="first"), a_run(output={"items": [1, object()]}, status="completed")
        )
    assert str(raised.value) == "run.output['items'][1]" + UNSTORABLE_MESSAGE
    assert_identical(await store.list_runs(), [a_run(output="first").summary()])
    # Nothing was written, so the revision read before still wins.
    swapped = await store.swap_run(a_run(output="first"), a_run(status="completed"))
    assert_identical(swapped, a_run(status="completed", revision=1))


async def test_an_unstorable_pause_answer_writes_nothing(
    store: RunStore,
) -> None:
    await store.create_run(a_run())
    await store.record_pause(a_pause("main/0:ask"))

    with pytest.raises(UnstorableValue) as raised:
        await store.record_pause(a_pause("main/0:ask", answer={"file": object()}))

    assert raised.value.where == "pause 'main/0:ask'.answer['file']"
    assert_identical(await store.pauses_of("r1"), [a_pause("main/0:ask")])


async def test_an_unstorable_field_of_a_pydantic_model_is_named(store: RunStore) -> None:
    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        handle: object

    await store.create_run(a_run())

    with pytest.raises(UnstorableValue) as raised:
        await store.record_step(a_step("main/0:a", output=Loose(handle=object())))

    assert str(raised.value) == "step 'main/0:a'.output.handle" + UNSTORABLE_MESSAGE
    assert await store.steps_of("r1") == []


class Tag(str):
    pass


class Count(int):
    pass


class Items(list[int]):
    pass


class Tally(collections.Counter[str]):
    pass


class Secrets(pydantic.BaseModel):
    user: str
    password: pydantic.SecretStr


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        (
            {"tag": Tag("x")},
            "['tag']",
            f"cannot store a value of type {__name__}:Tag, a subclass of str: it would come "
            "back as a plain str; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)",
        ),
        (
            [Count(3)],
            "[0]",
            f"cannot store a value of type {__name__}:Count, a subclass of int: it would come "
            "back as a plain int; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)",
        ),
        (
            Items([1]),
            "",
            f"cannot store a value of type {__name__}:Items, a subclass of list: it would come "
            "back as a plain list; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)",
        ),
        (
            (Tally("ab"),),
            "[0]",
            f"cannot store a value of type {__name__}:Tally, a subclass of dict: it would come "
            "back as a plain dict; register it with "
            "trioflow.persistence.register_type(cls, unstructure, structure)",
        ),
        (
            {"d": collections.defaultdict(lambda: 0)},
            "['d']",
            "cannot store a collections:defaultdict whose default_factory is <lambda> (a "
            "function cannot be stored); its factory must be one of None, list, dict, set, "
            "frozenset, tuple, int, float, str, Decimal",
        ),
        (
            Secrets(user="u", password="hunter2"),
            ".password",
            "a pydantic.types:SecretStr is never stored: the journal would hold the secret in "
            "clear, or redacted and lost; keep secrets out of outputs and the context (pass "
            "them in resources=)",
        ),
    ],
)
async def test_a_value_that_would_not_come_back_as_itself_is_refused(
    store: RunStore, value: Any, where: str, message: str
) -> None:
    await store.create_run(a_run())

    with pytest.raises(UnstorableValue) as raised:
        await store.record_step(a_step("main/0:a", output=value))

    assert str(raised.value) == f"step 'main/0:a'.output{where}: {message}"
    assert raised.value.where == f"step 'main/0:a'.output{where}"
    assert await store.steps_of("r1") == []
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        (Decimal("1.1"), Decimal("1.10")),
        ({1}, frozenset({1})),
        (1, Priority.LOW),
        (1, True),
        (T0, T0.astimezone(IST)),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ],
)
def test_assert_identical_tells_apart_what_equality_does_not(got: Any, expected: Any) -> None:
    assert got == expected
    with pytest.raises(AssertionError):
        assert_identical(got, expected)


# -- costs --------------------------------------------------------------------------------------


async def test_every_cost_comes_back_as_the_decimal_written_with_its_digits(
    store: RunStore,
) -> None:
    await store.create_run(a_run(total_cost_usd=Decimal("0.750")))
    await store.record_step(a_step("main/0:a", cost_usd=Decimal("0.50")))
    await store.record_usage(an_entry("main/0:a#1#1", cost_usd=Decimal("1E-7")))

    [step] = await store.steps_of("r1")
    [entry] = await store.ledger_of("r1")
    [summary] = await store.list_runs()
    costs = [
        (await store.get_run("r1")).total_cost_usd,
        summary.total_cost_usd,
        step.cost_usd,
        entry.cost_usd,
    ]
    assert [(type(cost), str(cost)) for cost in costs] == [
        (Decimal, "0.750"),
        (Decimal, "0.750"),
        (Decimal, "0.50"),
        (Decimal, "1E-7"),
    ]
