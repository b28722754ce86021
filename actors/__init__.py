"""trioflow's actor kernel: actors, supervisors and traces on trio.

This package knows nothing about pipelines. An actor is a trio task owning
a bounded mailbox; a supervisor owns a nursery of actors and applies a
strategy when one fails; every spawn, message, exit and cancellation is
reported to a trace sink. A message asked for a reply subclasses
``Ask[R]``, so ``ActorRef.ask`` returns its ``R``, typed.
"""

from ._actor import Actor, ActorRef
from ._ask import Ask
from ._errors import ActorError, ActorStopped, AskTimeout, ChildFailed
from ._reply import Reply, ReplyInbox
from ._supervisor import (
    DEFAULT_MAILBOX_SIZE,
    ESCALATE,
    Escalate,
    Restart,
    Strategy,
    Supervisor,
    open_supervisor,
)
from ._trace import MemoryTraceSink, TeeTraceSink, TraceEvent, TraceKind, TraceSink

__all__ = [
    "DEFAULT_MAILBOX_SIZE",
    "ESCALATE",
    "Actor",
    "ActorError",
    "ActorRef",
    "ActorStopped",
    "Ask",
    "AskTimeout",
    "ChildFailed",
    "Escalate",
    "MemoryTraceSink",
    "Reply",
    "ReplyInbox",
    "Restart",
    "Strategy",
    "Supervisor",
    "TeeTraceSink",
    "TraceEvent",
    "TraceKind",
    "TraceSink",
    "open_supervisor",
]
