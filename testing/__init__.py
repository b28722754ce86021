"""trioflow's testing kit: test your pipelines the way trioflow tests its own.

* Fixtures (a pytest plugin, registered when trioflow is installed):
  ``trioflow_store``, a fresh :class:`~trioflow.persistence.InMemoryStore`,
  and ``trioflow_runtime``, a runtime over it.
* :class:`StubAgent` (scripted outputs) and :class:`FakeModel` (a priced,
  deterministic model with no network), the agents to test with.
* :func:`swap_agent`: the same built pipeline with one step's agent
  replaced, say by a stub, without editing the pipeline.
* :func:`run_history`, :func:`ran_steps` and :func:`assert_ran`: which steps
  ran, in what order, with how many attempts and at what cost, read back
  from the store.
"""

from trioflow.runtime.agents import FakeModel, StubAgent

from ._history import RunHistory, StepRun, assert_ran, ran_steps, run_history
from ._swap import agent_steps, swap_agent

__all__ = [
    "FakeModel",
    "RunHistory",
    "StepRun",
    "StubAgent",
    "agent_steps",
    "assert_ran",
    "ran_steps",
    "run_history",
    "swap_agent",
]
