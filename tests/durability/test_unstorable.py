"""Values the journal cannot store fail their step at once; registered types round-trip.

A step whose result holds a value the codec does not know fails there,
with a message naming the step's path, where the value sits and its type;
the run is failed, the records written before stay intact and the store
stays usable. A type registered with ``register_type`` is stored and comes
back as the same type, also when a resumed run replays it from the journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trioflow.persistence import RunStore, SQLiteStore, register_type
from trioflow.runtime import (
    BaseContext,
    Pipeline,
    Runtime,
    SetField,
    Step,
    WithPatch,
    open_runtime,
    step,
)
from trioflow.runtime.lowlevel import stored_types

# -- stores and runtime --------------------------------------------------------------------


# The store (in memory and SQLite) and runtime fixtures are in conftest.py.


# -- a pipeline whose middle step returns what it is given ---------------------------------

HINT = "register it with trioflow.persistence.register_type(cls, unstructure, structure)"


class Loose(BaseContext):
    anything: Any = None


def unstorable_message(field: str) -> str:
    return (
        "step 'main/1:bad' produced a value that cannot be stored: "
        f"step 'main/1:bad'.{field}: cannot store a value of type builtins:object; {HINT}"
    )


def returning(value: Any, calls: list[str]) -> Pipeline:
    """``first`` (storable), ``bad`` (returns ``value``), ``after``."""

    @step
    async def first(text: str) -> str:
        calls.append("first")
        return f"{text}!"

    async def bad(text: str) -> Any:
        calls.append("bad")
        return value

    @step
    async def after(data: Any) -> str:
        calls.append("after")
        return "after"

    return Pipeline.of(
        first, Step.from_callable(bad, name="bad"), after, name="unstorable", context_type=Loose
    )


async def test_an_unstorable_output_fails_its_step_naming_path_field_and_type(
    rt: Runtime,
) -> None:
    result = await rt.run(returning(object(), []), "x")
    assert result.status == "failed"
    bad = result.step("bad")
    assert (bad.success, bad.output) == (False, None)
    assert bad.feedback == unstorable_message("output")
    assert result.error == unstorable_message("output")


async def test_an_unstorable_value_inside_a_dict_is_named_by_its_key(rt: Runtime) -> None:
    result = await rt.run(returning({"fine": 1, "thing": object()}, []), "x")
    assert result.status == "failed"
    assert result.step("bad").feedback == unstorable_message("output['thing']")


async def test_an_unstorable_value_in_a_context_patch_fails_its_step(rt: Runtime) -> None:
    patched = WithPatch("fine", [SetField("anything", object())])
    result = await rt.run(returning(patched, []), "x")
    assert result.status == "failed"
    assert result.step("bad").feedback == unstorable_message("patch[0].value")
    assert result.step("bad").patch == ()
    assert result.context.anything is None


async def test_no_step_runs_after_an_unstorable_value(rt: Runtime) -> None:
    calls: list[str] = []
    await rt.run(returning(object(), calls), "x")
    assert calls == ["first", "bad"]


async def test_the_failed_run_and_earlier_records_are_journaled_intact(
    rt: Runtime, store: RunStore
) -> None:
    result = await rt.run(returning(object(), []), "x")
    record = await store.get_run(result.run_id)
    assert (record.status, record.output, record.error) == (
        "failed",
        None,
        unstorable_message("output"),
    )
    first, bad, main = await store.steps_of(result.run_id)
    assert (first.path, first.success, first.output, first.feedback) == (
        "main/0:first",
        True,
        "x!",
        None,
    )
    assert (bad.path, bad.success, bad.output, bad.feedback) == (
        "main/1:bad",
        False,
        None,
        unstorable_message("output"),
    )
    assert (main.path, main.success) == ("main", False)


async def test_the_store_stays_usable_after_an_unstorable_value(
    rt: Runtime, store: RunStore
) -> None:
    failed = await rt.run(returning(object(), []), "x")
    completed = await rt.run(returning("storable", []), "y")
    assert completed.status == "completed"
    assert completed.output == "after"
    assert [(run.run_id, run.status) for run in await store.list_runs()] == [
        (failed.run_id, "failed"),
        (completed.run_id, "completed"),
    ]


# -- a registered type ---------------------------------------------------------------------


class Money:
    """A user type the codec knows only through ``register_type``."""

    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return type(other) is Money and other.cents == self.cents

    def __hash__(self) -> int:
        return hash(self.cents)

    def __repr__(self) -> str:
        return f"Money({self.cents})"


register_type(Money, lambda money: {"cents": money.cents}, lambda data: Money(data["cents"]))


class Priced(BaseContext):
    price: Any = None


def billing(calls: list[str], *, price_in_context: bool) -> Pipeline:
    """``quote`` returns a Money (and may put it in the context); a person approves; ``bill``."""

    @step
    async def quote(text: str) -> WithPatch:
        calls.append("quote")
        ops = [SetField("price", Money(1250))] if price_in_context else []
        return WithPatch(Money(1250), ops)

    @step
    async def bill(approved: bool, *, context: Priced) -> Money:
        calls.append("bill")
        price = context.price if price_in_context else Money(1250)
        return Money(price.cents + 1)

    approve = Step.human_in_the_loop("approve", "Bill it?", bool)
    return Pipeline.of(quote, approve, bill, name="billing", context_type=Priced)


async def test_a_registered_type_round_trips_through_a_resume_on_sqlite(tmp_path: Path) -> None:
    calls: list[str] = []
    pipeline = billing(calls, price_in_context=False)
    db = tmp_path / "runs.db"
    async with SQLiteStore.open(db) as store, open_runtime(store=store) as runtime:
        run_id = (await runtime.run(pipeline, "order")).run_id

    async with SQLiteStore.open(db) as store, open_runtime(store=store) as runtime:
        result = await runtime.resume(run_id, True, pipeline=pipeline)
        record = await store.get_run(run_id, types=stored_types(pipeline))
        [quoted, *_] = await store.steps_of(run_id, types=stored_types(pipeline))

    assert calls == ["quote", "bill"]
    replayed = result.step("quote").output
    assert (type(replayed), replayed) == (Money, Money(1250))
    assert (type(quoted.output), quoted.output) == (Money, Money(1250))
    assert (type(result.output), result.output) == (Money, Money(1251))
    assert (type(record.output), record.output) == (Money, Money(1251))


async def test_a_registered_type_in_the_context_survives_a_pause_and_resume(
    rt: Runtime, store: RunStore
) -> None:
    calls: list[str] = []
    pipeline = billing(calls, price_in_context=True)
    paused = await rt.run(pipeline, "order")
    assert paused.status == "paused"

    result = await rt.resume(paused.run_id, True)
    assert result.status == "completed"
    assert (type(result.context.price), result.context.price) == (Money, Money(1250))
    assert result.output == Money(1251)
    assert calls == ["quote", "bill"]
    record = await store.get_run(paused.run_id, types=stored_types(pipeline))
    assert (type(record.final_context.price), record.final_context.price) == (Money, Money(1250))
