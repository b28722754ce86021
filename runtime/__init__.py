"""trioflow's pipeline runtime: the DSL, step actors, governor and runner."""

from ._agents import Agent, CallableAgent, FakeModel, StubAgent
from ._calls import CallInfo, current_call
from ._checks import Plugin, PluginOutcome, ValidationResult
from ._context import (
    AddTo,
    AppendTo,
    BaseContext,
    Patch,
    PatchOp,
    Remove,
    SetField,
    SetKey,
    WithPatch,
    apply_patch,
)
from ._control import (
    DEFAULT_MAP_CONCURRENCY,
    ConditionalStep,
    LoopStep,
    MapStep,
    OnBranchFailure,
    ParallelStep,
    RouterStep,
)
from ._errors import (
    ConfigurationError,
    ContextValidationError,
    ControlSignal,
    FallbackLoopError,
    HumanInputRequired,
    InputTypeError,
    PipelineTypeError,
    RedirectLoopError,
    RunNotResumable,
    ScriptExhausted,
    TrioflowError,
    UsageLimitExceeded,
)
from ._human import HumanInputInvalid, HumanInteraction, HumanStep
from ._merge import Merge, MergeConflict, MergeError
from ._pipeline import Pipeline, PipelineStep
from ._results import PipelineResult, RunStatus, StepResult
from ._retry import FailureKind, RetryPolicy, append_feedback
from ._runtime import Runtime, default_db_path, open_runtime, run_sync
from ._step import MAX_FALLBACK_DEPTH, Cache, Step, step
from ._usage import Completion, Usage, UsageLimits

__all__ = [
    "DEFAULT_MAP_CONCURRENCY",
    "MAX_FALLBACK_DEPTH",
    "AddTo",
    "Agent",
    "AppendTo",
    "BaseContext",
    "Cache",
    "CallInfo",
    "CallableAgent",
    "Completion",
    "ConditionalStep",
    "ConfigurationError",
    "ContextValidationError",
    "ControlSignal",
    "FailureKind",
    "FakeModel",
    "FallbackLoopError",
    "HumanInputInvalid",
    "HumanInputRequired",
    "HumanInteraction",
    "HumanStep",
    "InputTypeError",
    "LoopStep",
    "MapStep",
    "Merge",
    "MergeConflict",
    "MergeError",
    "OnBranchFailure",
    "ParallelStep",
    "Patch",
    "PatchOp",
    "Pipeline",
    "PipelineResult",
    "PipelineStep",
    "PipelineTypeError",
    "Plugin",
    "PluginOutcome",
    "RedirectLoopError",
    "Remove",
    "RetryPolicy",
    "RouterStep",
    "RunNotResumable",
    "RunStatus",
    "Runtime",
    "ScriptExhausted",
    "SetField",
    "SetKey",
    "Step",
    "StepResult",
    "StubAgent",
    "TrioflowError",
    "Usage",
    "UsageLimitExceeded",
    "UsageLimits",
    "ValidationResult",
    "WithPatch",
    "append_feedback",
    "apply_patch",
    "current_call",
    "default_db_path",
    "open_runtime",
    "run_sync",
    "step",
]
