"""The map-over step's actor: its body runs once per item, a bounded number at once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._dsl._control import MapStep
from .._paths import item_segment
from .._results import StepResult
from .._services import RunServices
from ._branch_results import run_branches
from ._fanout import Branch, FanOutResult
from ._messages import Execute, StepDone
from ._step_actor import StepActor


class MapActor(StepActor):
    """Runs one :class:`MapStep` once, then stops."""

    def __init__(self, spec: MapStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        spec = self._spec
        items, problem = self._items(message)
        if problem is not None:
            return StepDone(StepResult(spec.name, self.path, feedback=problem))
        branches = [
            Branch(item_segment(index), spec.body, item, message.context)
            for index, item in enumerate(items)
        ]

        def outputs_in_item_order(fanned: FanOutResult) -> list[Any]:
            outputs = {name: result.output for name, result in fanned.succeeded}
            return [outputs.get(branch.name) for branch in branches]

        return await run_branches(
            spec.name,
            self.path,
            branches,
            on_failure=spec.on_item_failure,
            base=message.context,
            merge=spec.merge,
            shape=outputs_in_item_order,
            services=self._services,
            max_concurrency=spec.max_concurrency,
            metadata={"items": len(branches)},
        )

    def _items(self, message: Execute) -> tuple[list[Any], str | None]:
        """The items to map over, or a message saying why there are none."""
        spec = self._spec
        if spec.items_from is None:
            source, where = message.data, "its input"
        elif spec.items_from in type(message.context).model_fields:
            source = getattr(message.context, spec.items_from)
            where = f"context field {spec.items_from!r}"
        else:
            return [], (
                f"step {self.path!r} maps over context field {spec.items_from!r}, which "
                f"{type(message.context).__name__} does not have"
            )
        if isinstance(source, str | bytes) or not isinstance(source, Iterable):
            return [], (
                f"step {self.path!r} maps over {where}, which must be an iterable of items "
                f"(not a string), got {type(source).__name__}: {source!r:.60}"
            )
        return list(source), None
