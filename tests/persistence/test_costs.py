"""A cost crosses the journal as one value: records hold ``Decimal``, stored as decimal text.

The translator (``persistence/_costs.py``) is the one place a cost becomes
text and back: the digits survive (``0.50`` stays ``0.50``), the stored
form is the text every journal has always held, and a stored cost that is
not decimal text is a damaged record, named as such. That every store gives
each cost back as that ``Decimal`` is part of the store contract
(``test_store_contract.py``).
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from pathlib import Path

import apsw
import pytest
from trioflow.persistence import (
    CODEC,
    CorruptJournal,
    LedgerEntry,
    RunRecord,
    SQLiteStore,
    StepRecord,
    UnreadableRuns,
    UnstorableValue,
)
from trioflow.persistence._costs import cost_from_stored, cost_to_stored
from trioflow.runtime import Completion, Usage, open_runtime, step

STARTED = datetime.datetime(2026, 3, 1, 15, 30, tzinfo=datetime.UTC)

#: Amounts whose text must survive exactly: trailing zeros, exponents, many digits.
AMOUNTS = ["0", "0.50", "1.00", "0.000125", "1E-7", "123456789.123456789", "0E-10"]


@pytest.mark.parametrize("text", AMOUNTS)
def test_a_cost_round_trips_with_its_digits(text: str) -> None:
    amount = Decimal(text)
    stored = cost_to_stored(amount)
    assert stored == text
    back = cost_from_stored(stored)
    assert (back, back.as_tuple()) == (amount, amount.as_tuple())


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("abc", "a stored cost must be decimal text, got 'abc'"),
        ("NaN", "a stored cost must be finite, got 'NaN'"),
        ("-Infinity", "a stored cost must be finite, got '-Infinity'"),
        (0.1, "a stored cost must be decimal text or a Decimal, got 0.1"),
        (True, "a stored cost must be decimal text or a Decimal, got True"),
        (None, "a stored cost must be decimal text or a Decimal, got None"),
    ],
)
def test_only_finite_decimal_text_reads_as_a_cost(stored: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^a stored cost must be ") as raised:
        cost_from_stored(stored)
    assert str(raised.value) == message


def test_a_non_finite_decimal_is_never_stored() -> None:
    with pytest.raises(ValueError, match=r"^a stored cost must be ") as raised:
        cost_to_stored(Decimal("NaN"))
    assert str(raised.value) == "a stored cost must be a finite Decimal, got Decimal('NaN')"


def test_records_hold_costs_as_decimal() -> None:
    step = StepRecord("r", "main/0:a", "a", True, "out", 1, "0.25", 3, 4)
    entry = LedgerEntry("r", "main/0:a#1#1", "main/0:a", Decimal("0.25"), 3, 4)
    run = RunRecord("r", "p", "running", STARTED, "in")
    assert (type(step.cost_usd), step.cost_usd) == (Decimal, Decimal("0.25"))
    assert (type(entry.cost_usd), entry.cost_usd) == (Decimal, Decimal("0.25"))
    assert (type(run.total_cost_usd), run.total_cost_usd) == (Decimal, Decimal(0))
    assert (type(run.summary().total_cost_usd), run.summary().total_cost_usd) == (
        Decimal,
        Decimal(0),
    )


def test_the_journal_keeps_a_cost_as_the_decimal_text_it_always_held() -> None:
    entry = LedgerEntry("r", "main/0:a#1#1", "main/0:a", Decimal("0.50"), 3, 4)
    run = RunRecord("r", "p", "completed", STARTED, "in", total_cost_usd=Decimal("1E-7"))
    assert json.loads(CODEC.encode(entry))["fields"]["cost_usd"] == "0.50"
    assert json.loads(CODEC.encode(run))["fields"]["total_cost_usd"] == "1E-7"
    assert CODEC.decode(CODEC.encode(entry)) == entry


def test_a_cost_that_is_not_a_decimal_cannot_be_stored() -> None:
    entry = LedgerEntry("r", "main/0:a#1#1", "main/0:a", Decimal("0.5"), 3, 4)
    broken = object.__new__(LedgerEntry)
    for name in ("run_id", "key", "path", "input_tokens", "output_tokens"):
        object.__setattr__(broken, name, getattr(entry, name))
    object.__setattr__(broken, "cost_usd", 0.5)
    with pytest.raises(UnstorableValue) as raised:
        CODEC.encode(broken, where="ledger")
    assert str(raised.value) == ("ledger.cost_usd: a stored cost must be a finite Decimal, got 0.5")


# -- a journal written before records held Decimal -------------------------------------------

RUN_ID = "3cbe2dc18ddc4703919399ae8bb80bbb"

#: The rows trioflow wrote before records held ``Decimal`` (schema version 5), verbatim:
#: a run cancelled after its first step, which cost $0.10.
LEGACY_RUN = (
    '{"$attrs":"trioflow.persistence._records:RunRecord","fields":{"run_id":'
    '"3cbe2dc18ddc4703919399ae8bb80bbb","pipeline_name":"pipeline","status":"cancelled",'
    '"started_at":{"$datetime":"2026-12-07T02:52:36.019138+00:00"},"input":"in","context":'
    '{"$model":"trioflow.runtime._dsl._context:BaseContext","value":{"run_id":'
    '"3cbe2dc18ddc4703919399ae8bb80bbb","hitl_history":{"$tuple":[]}}},"finished_at":'
    '{"$datetime":"2026-12-07T02:52:37.023202+00:00"},"output":null,"final_context":null,'
    '"total_cost_usd":"0.10","input_tokens":12,"output_tokens":3,"error":'
    '"Cancelled: cancelled due to deadline","limits":null,"target":null,"target_sha256":null,'
    '"paused_at":{"$tuple":[]},"revision":1,"owner":null,"epoch":1,"lease_expires_at":null}}'
)
LEGACY_STEP = (
    '{"$attrs":"trioflow.persistence._records:StepRecord","fields":{"run_id":'
    '"3cbe2dc18ddc4703919399ae8bb80bbb","path":"main/0:draft","name":"draft","success":true,'
    '"output":"in>draft","attempts":1,"cost_usd":"0.10","input_tokens":12,"output_tokens":3,'
    '"patch":{"$tuple":[]},"latency_s":0.00046208400453906506,"feedback":null,"metadata":{},'
    '"children":{"$tuple":[]},"breach":null,"replies":{"$tuple":[]}}}'
)
LEGACY_ENTRY = (
    '{"$attrs":"trioflow.persistence._records:LedgerEntry","fields":{"run_id":'
    '"3cbe2dc18ddc4703919399ae8bb80bbb","key":"main/0:draft#1#1","path":"main/0:draft",'
    '"cost_usd":"0.10","input_tokens":12,"output_tokens":3}}'
)


async def write_legacy_journal(path: Path, *, step: str = LEGACY_STEP) -> None:
    """A journal holding the legacy rows above, as the earlier trioflow left it."""
    async with SQLiteStore.open(path):
        pass  # creates the file at the current schema version (5, as the rows were written)
    connection = apsw.Connection(str(path))
    with connection:
        connection.execute(
            "INSERT INTO runs (run_id, pipeline_name, status, started_at, payload, finished_at,"
            " revision, owner, epoch, lease_expires_at) VALUES (?, 'pipeline', 'cancelled',"
            " '2026-12-07T02:52:36.019138+00:00', ?, '2026-12-07T02:52:37.023202+00:00', 1,"
            " NULL, 1, NULL)",
            (RUN_ID, LEGACY_RUN),
        )
        connection.execute(
            "INSERT INTO steps (run_id, path, seq, payload) VALUES (?, 'main/0:draft', 1, ?)",
            (RUN_ID, step),
        )
        connection.execute(
            "INSERT INTO ledger (run_id, key, seq, payload) VALUES (?, 'main/0:draft#1#1', 1, ?)",
            (RUN_ID, LEGACY_ENTRY),
        )
    connection.close()


async def test_a_journal_written_before_records_held_decimal_reads_with_exact_costs(
    tmp_path: Path,
) -> None:
    await write_legacy_journal(tmp_path / "j.db")
    async with SQLiteStore.open(tmp_path / "j.db") as store:
        run = await store.get_run(RUN_ID)
        [summary] = await store.list_runs()
        [step] = await store.steps_of(RUN_ID)
        [entry] = await store.ledger_of(RUN_ID)
    assert (run.total_cost_usd, run.input_tokens, run.output_tokens) == (Decimal("0.10"), 12, 3)
    assert str(run.total_cost_usd) == str(summary.total_cost_usd) == "0.10"
    assert (str(step.cost_usd), str(entry.cost_usd)) == ("0.10", "0.10")
    assert entry == LedgerEntry(RUN_ID, "main/0:draft#1#1", "main/0:draft", Decimal("0.10"), 12, 3)


async def test_a_stored_cost_that_is_not_decimal_text_is_a_damaged_record(
    tmp_path: Path,
) -> None:
    await write_legacy_journal(
        tmp_path / "j.db", step=LEGACY_STEP.replace('"cost_usd":"0.10"', '"cost_usd":"ten"')
    )
    async with SQLiteStore.open(tmp_path / "j.db") as store:
        with pytest.raises(CorruptJournal) as raised:
            await store.steps_of(RUN_ID)
    assert str(raised.value) == (
        "the journal holds a trioflow.persistence._records:StepRecord that does not fit that "
        "class: a stored cost must be decimal text, got 'ten'"
    )


async def test_a_run_whose_stored_total_is_not_decimal_text_is_named_when_listing(
    tmp_path: Path,
) -> None:
    await write_legacy_journal(tmp_path / "j.db")
    connection = apsw.Connection(str(tmp_path / "j.db"))
    with connection:
        connection.execute(
            "UPDATE runs SET payload = ?",
            (LEGACY_RUN.replace('"total_cost_usd":"0.10"', '"total_cost_usd":1.5'),),
        )
    connection.close()
    async with SQLiteStore.open(tmp_path / "j.db") as store:
        with pytest.raises(UnreadableRuns) as raised:
            await store.list_runs()
    assert raised.value.unreadable == {
        RUN_ID: "a stored run cannot be listed: a stored cost must be decimal text or a "
        "Decimal, got 1.5"
    }


@step
async def draft(text: str) -> Completion[str]:
    raise AssertionError("draft completed in the earlier drive: it is replayed, never run")


@step
async def polish(text: str) -> Completion[str]:
    return Completion(f"{text}>polish", Usage(Decimal("0.000125"), 5, 1))


async def test_a_run_journaled_before_records_held_decimal_resumes_with_exact_totals(
    tmp_path: Path,
) -> None:
    await write_legacy_journal(tmp_path / "j.db")
    async with SQLiteStore.open(tmp_path / "j.db") as store, open_runtime(store=store) as rt:
        result = await rt.resume(RUN_ID, pipeline=draft >> polish)
        run = await store.get_run(RUN_ID)
        steps = {step.path: step for step in await store.steps_of(RUN_ID)}
    assert (result.status, result.output) == ("completed", "in>draft>polish")
    assert result.usage == Usage(Decimal("0.100125"), 17, 4)
    assert (str(run.total_cost_usd), run.input_tokens, run.output_tokens) == ("0.100125", 17, 4)
    assert {path: str(step.cost_usd) for path, step in steps.items()} == {
        "main/0:draft": "0.10",
        "main/1:polish": "0.000125",
        "main": "0.100125",
    }
