"""What every step actor of one run can reach."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from trioflow.actors import ActorRef, TraceSink

from ._governor import GovernorMessage
from ._journal import Journal
from ._steps._cache import StepCache
from ._usage import UsageLimits


@attrs.frozen
class RunServices:
    """The run's identity, governor, cache, journal and trace, shared read-only."""

    run_id: str
    governor: ActorRef[GovernorMessage]
    limits: UsageLimits | None
    resources: Any
    cache: StepCache
    trace: TraceSink
    journal: Journal
    #: When replaying: every model call's original reply, by ledger key.
    replies: Mapping[str, Any] | None = None
