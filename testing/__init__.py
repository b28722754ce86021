"""trioflow's testing kit: test your pipelines the way trioflow tests its own.

* Fixtures (a pytest plugin, registered when trioflow is installed):
  ``trioflow_store``, a fresh :class:`~trioflow.persistence.InMemoryStore`,
  and ``trioflow_runtime``, a runtime over it.
* :class:`StubAgent` (scripted outputs) and :class:`FakeModel` (a priced,
  deterministic model with no network), the agents to test with.
* :func:`swap_agent`: the same built pipeline with one step's agent
  replaced, say by a stub, without editing the pipeline.
* :func:`run_trace`, :func:`ran_steps` and :func:`assert_ran`: which steps
  ran, in what order, with how many attempts and at what cost, read back
  from the store.
"""

from trioflow.runtime import FakeModel, StubAgent

from ._swap import agent_steps, swap_agent
from ._trace import RunTrace, StepRun, assert_ran, ran_steps, run_trace

__all__ = [
    "FakeModel",
    "RunTrace",
    "StepRun",
    "StubAgent",
    "agent_steps",
    "assert_ran",
    "ran_steps",
    "run_trace",
    "swap_agent",
]
