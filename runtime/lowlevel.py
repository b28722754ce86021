"""What few pipeline authors need: the step kinds' classes, patches as data, limits.

``Step.parallel(...)`` and its siblings build these classes; name them
here to check a step's kind or to annotate a function that builds one.
A patch is what a step's context change becomes (:func:`apply_patch`
applies one); :class:`Replay` is what ``rt.replay`` compares; the
``MAX_*`` and ``DEFAULT_*`` constants are the engine's fixed limits.
"""

from ._dsl._agent_step import MAX_FALLBACK_DEPTH
from ._dsl._context import Patch, PatchOp, apply_patch
from ._dsl._control import (
    DEFAULT_MAP_CONCURRENCY,
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouterStep,
)
from ._dsl._human import HumanStep
from ._dsl._nesting import MAX_NESTING_DEPTH
from ._dsl._pipeline import PipelineStep
from ._dsl._retry import append_feedback
from ._errors import ReplayMismatch
from ._replay import Difference, Replay
from ._store_choice import default_db_path
from ._stored_types import stored_types

__all__ = [
    "DEFAULT_MAP_CONCURRENCY",
    "MAX_FALLBACK_DEPTH",
    "MAX_NESTING_DEPTH",
    "ConditionalStep",
    "Difference",
    "HumanStep",
    "LoopStep",
    "MapStep",
    "ParallelStep",
    "Patch",
    "PatchOp",
    "PipelineStep",
    "Replay",
    "ReplayMismatch",
    "RouterStep",
    "append_feedback",
    "apply_patch",
    "default_db_path",
    "stored_types",
]
