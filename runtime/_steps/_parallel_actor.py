"""The parallel step's actor: its branches run at once from one snapshot."""

from __future__ import annotations

from typing import Any

from .._dsl._control import ParallelStep, restrict_context
from .._errors import ConfigurationError
from .._results import StepResult
from .._services import RunServices
from ._branch_results import run_branches
from ._fanout import Branch, FanOutResult
from ._messages import Execute, StepDone
from ._step_actor import StepActor


def outputs_by_branch(fanned: FanOutResult) -> dict[str, Any]:
    """The successful branches' outputs, keyed by branch name, in declaration order."""
    return {name: result.output for name, result in fanned.succeeded}


class ParallelActor(StepActor):
    """Runs one :class:`ParallelStep` once, then stops."""

    def __init__(self, spec: ParallelStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        spec = self._spec
        try:
            snapshot = restrict_context(message.context, spec.context_include_keys, step=self.path)
        except ConfigurationError as error:
            return StepDone(StepResult(spec.name, self.path, feedback=str(error)))
        branches = [Branch(name, body, message.data, snapshot) for name, body in spec.branches]
        return await run_branches(
            spec.name,
            self.path,
            branches,
            on_failure=spec.on_branch_failure,
            base=message.context,
            merge=spec.merge,
            shape=outputs_by_branch,
            services=self._services,
        )
