"""The router step's actor: a router agent picks branches, which then run at once."""

from __future__ import annotations

from trioflow.actors import ActorRef, open_supervisor

from .._dsl._control import RouterStep
from .._results import StepResult
from .._services import RunServices
from ._agent_actor import AgentStepActor
from ._branch_results import run_branches
from ._fanout import Branch
from ._messages import Execute, StepDone
from ._parallel_actor import outputs_by_branch
from ._step_actor import StepActor


class RouterActor(StepActor):
    """Runs one :class:`RouterStep` once, then stops.

    The router step runs first, as a child at ``<path>/<router name>``; its
    output is a branch name or a list of names. An unknown name fails the
    step naming it and the choices (nothing is dropped silently); an empty
    choice succeeds with an empty mapping. The chosen branches run as a
    parallel step, in declaration order.
    """

    def __init__(self, spec: RouterStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    async def execute(self, message: Execute) -> StepDone:
        spec = self._spec
        async with open_supervisor(self.path, self._services.trace) as supervisor:
            chooser: ActorRef[Execute] = supervisor.spawn(
                spec.chooser.name, lambda: AgentStepActor(spec.chooser, self._services)
            )
            routed = await chooser.ask(message, sender=self.path)
        choice = routed.result
        if routed.breach is not None or not choice.success:
            summary = StepResult(
                spec.name,
                self.path,
                usage=choice.usage,
                feedback=choice.feedback,
                step_history=(choice,),
            )
            return StepDone(summary, breach=routed.breach)
        chosen, problem = self._chosen(choice.output)
        if problem is not None:
            return StepDone(
                StepResult(
                    spec.name,
                    self.path,
                    usage=choice.usage,
                    feedback=problem,
                    step_history=(choice,),
                )
            )
        branches = [
            Branch(name, body, message.data, message.context)
            for name, body in spec.branches
            if name in chosen
        ]
        return await run_branches(
            spec.name,
            self.path,
            branches,
            on_failure=spec.on_branch_failure,
            base=message.context,
            merge=spec.merge,
            shape=outputs_by_branch,
            services=self._services,
            history_before=(choice,),
            metadata={"chosen": [branch.name for branch in branches]},
        )

    def _chosen(self, output: object) -> tuple[set[str], str | None]:
        names = [output] if isinstance(output, str) else output
        choices = [name for name, _ in self._spec.branches]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            return set(), (
                f"step {self.path!r}: the router must choose a branch name or a list of "
                f"names, got {output!r}"
            )
        unknown = [name for name in names if name not in choices]
        if unknown:
            return set(), (
                f"step {self.path!r}: the router chose unknown branch(es) "
                f"{', '.join(map(repr, unknown))}; the choices are {', '.join(map(repr, choices))}"
            )
        return set(names), None
