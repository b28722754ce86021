"""A run's journal: restore what is committed, record what completes.

Every step actor asks the journal first: a step whose completion record
is committed is *restored* (its recorded result comes back, nothing runs
again), so resuming a run re-walks the pipeline from the top and rebuilds
context, outputs, usage and loop counters from the records alone. A step
that completes is recorded before its parent hears of it: nothing that
depends on a step proceeds until its record is stored.

A composite step's record lists its children's paths instead of copying
their results (they have records of their own); any other history (an
agent step's fallback attempts) is kept inline.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
from trioflow.persistence import (
    LedgerEntry,
    PauseRecord,
    RunStore,
    StepRecord,
    UnstorableValue,
)

from ._results import StepResult
from ._steps._messages import StepDone
from ._usage import Usage


@attrs.define
class Journal:
    """The completion records of one run, and the human answers given to it (by path).

    Every write carries ``epoch``, the epoch of the lease this drive holds:
    the store refuses it once another owner has claimed the run.
    """

    store: RunStore
    run_id: str
    epoch: int
    records: dict[str, StepRecord] = attrs.field(factory=dict)
    answers: Mapping[str, PauseRecord] = attrs.field(factory=dict)

    def restore(self, path: str) -> StepDone | None:
        """The recorded outcome of ``path``, if it completed before."""
        record = self.records.get(path)
        if record is None:
            return None
        return StepDone(self._result(record), breach=record.breach)

    def _result(self, record: StepRecord) -> StepResult:
        if record.children:
            history = tuple(self._result(self.records[child]) for child in record.children)
        else:
            history = tuple(record.metadata.get("history", ()))
        metadata = {key: value for key, value in record.metadata.items() if key != "history"}
        return StepResult(
            record.name,
            record.path,
            output=record.output,
            success=record.success,
            attempts=record.attempts,
            latency_s=record.latency_s,
            usage=Usage(Decimal(record.cost_usd), record.input_tokens, record.output_tokens),
            feedback=record.feedback,
            metadata=metadata,
            patch=tuple(record.patch),
            step_history=history,
        )

    async def record(self, done: StepDone) -> StepDone:
        """Store ``done``'s completion record; return what the parent must hear.

        A result holding a value the codec cannot store fails its step at
        once, with the step, the field and the type named.
        """
        try:
            await self._write(done)
        except UnstorableValue as error:
            failed = attrs.evolve(
                done.result,
                success=False,
                output=None,
                patch=(),
                feedback=f"step {done.result.path!r} produced a value that cannot be stored: "
                f"{error}",
            )
            done = StepDone(failed, breach=done.breach)
            await self._write(done)
        return done

    def _has_records(self, result: StepResult) -> bool:
        """Whether ``result``'s history is made of children with records of their own."""
        return all(
            child.path != result.path and child.path in self.records
            for child in result.step_history
        )

    async def pause(self, path: str, message: str, input_schema: dict[str, Any]) -> None:
        """Journal that ``path`` waits for a person's answer."""
        await self.store.record_pause(
            PauseRecord(self.run_id, path, message, input_schema, _now()), epoch=self.epoch
        )

    async def record_usage(self, key: str, path: str, usage: Usage) -> None:
        """Store the ledger entry of one agent call."""
        await self.store.record_usage(
            LedgerEntry(
                self.run_id,
                key,
                path,
                str(usage.cost_usd),
                usage.input_tokens,
                usage.output_tokens,
            ),
            epoch=self.epoch,
        )

    async def _write(self, done: StepDone) -> None:
        result = done.result
        metadata = dict(result.metadata)
        composite = self._has_records(result)
        if not composite and result.step_history:
            metadata["history"] = result.step_history
        record = StepRecord(
            run_id=self.run_id,
            path=result.path,
            name=result.name,
            success=result.success,
            output=result.output,
            attempts=result.attempts,
            cost_usd=str(result.usage.cost_usd),
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            patch=result.patch,
            latency_s=result.latency_s,
            feedback=result.feedback,
            metadata=metadata,
            children=tuple(child.path for child in result.step_history) if composite else (),
            breach=done.breach,
            replies=done.replies,
        )
        await self.store.record_step(record, epoch=self.epoch)
        self.records[result.path] = record


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
