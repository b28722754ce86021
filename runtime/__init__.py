"""trioflow's pipeline runtime: what a pipeline author needs, in one namespace.

Build steps and pipelines (:class:`Step`, :func:`step`, :class:`Pipeline`),
say how they retry, merge and change the context, run them
(:func:`open_runtime`), and read what they did (:class:`PipelineResult`).

The rest lives in named namespaces, as trio keeps ``trio.lowlevel`` apart:

* :mod:`trioflow.runtime.agents`: model agents (OpenAI-compatible, fake and
  stub models for tests), their prices and their errors;
* :mod:`trioflow.runtime.traces`: a run's trace as a tree, and its
  Perfetto export;
* :mod:`trioflow.runtime.lowlevel`: the step kinds' classes, patch
  operations as data, replay comparisons, and limits of the engine.

The package's own layout: ``_dsl/`` (the specifications), ``_steps/`` (one
actor per step kind), ``agents/``, ``traces/`` and ``_cli/``; the runner,
journal, governor, usage, results and errors are modules at the top.
"""

from ._dsl._agent_step import AgentStep, Cache, step
from ._dsl._checks import Plugin, PluginOutcome, ValidationResult
from ._dsl._context import AddTo, AppendTo, BaseContext, Remove, SetField, SetKey, WithPatch
from ._dsl._control import OnBranchFailure
from ._dsl._human import HumanInputInvalid, HumanInteraction
from ._dsl._merge import Merge, MergeConflict, MergeError
from ._dsl._pipeline import Pipeline
from ._dsl._retry import FailureKind, RetryPolicy
from ._dsl._step import Step
from ._errors import (
    AgentOutputInvalid,
    ConfigurationError,
    ContextValidationError,
    ControlSignal,
    FallbackLoopError,
    HumanInputRequired,
    InputTypeError,
    PipelineTypeError,
    RedirectLoopError,
    RunClaimed,
    RunNotResumable,
    RunTakenOver,
    TrioflowError,
    UsageLimitExceeded,
)
from ._results import PipelineResult, RunStatus, StepResult
from ._runtime import Runtime, open_runtime, run_sync
from ._steps._call_info import CallInfo, current_call
from ._usage import Completion, Usage, UsageLimits

__all__ = [
    "AddTo",
    "AgentOutputInvalid",
    "AgentStep",
    "AppendTo",
    "BaseContext",
    "Cache",
    "CallInfo",
    "Completion",
    "ConfigurationError",
    "ContextValidationError",
    "ControlSignal",
    "FailureKind",
    "FallbackLoopError",
    "HumanInputInvalid",
    "HumanInputRequired",
    "HumanInteraction",
    "InputTypeError",
    "Merge",
    "MergeConflict",
    "MergeError",
    "OnBranchFailure",
    "Pipeline",
    "PipelineResult",
    "PipelineTypeError",
    "Plugin",
    "PluginOutcome",
    "RedirectLoopError",
    "Remove",
    "RetryPolicy",
    "RunClaimed",
    "RunNotResumable",
    "RunStatus",
    "RunTakenOver",
    "Runtime",
    "SetField",
    "SetKey",
    "Step",
    "StepResult",
    "TrioflowError",
    "Usage",
    "UsageLimitExceeded",
    "UsageLimits",
    "ValidationResult",
    "WithPatch",
    "current_call",
    "open_runtime",
    "run_sync",
    "step",
]
