"""What a model call replied, kept in the journal so a run can be replayed.

A reply is kept as it was (an output or a :class:`Completion`); a call
that raised is kept as a :class:`RecordedError` holding how the step
classified it, which a replay raises again as a :class:`ReplayedFailure`
of that class: the step fails, retries or falls back exactly as it did,
whatever the original exception's constructor wants.

A cached step's hit is kept too, as its result under
:func:`trioflow.runtime._paths.cache_hit_key`: a replay answers the step from the cache again.
"""

from __future__ import annotations

import attrs

from ._dsl._retry import FailureKind
from ._errors import AgentOutputInvalid
from ._usage import Usage


class ReplayedFailure(Exception):
    """A recorded failure raised again by a replay: classified as it was the first time."""

    def __init__(self, kind: FailureKind, feedback: str) -> None:
        super().__init__(feedback)
        self.kind = kind
        self.feedback = feedback


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@attrs.frozen
class RecordedError:
    """An exception a model call raised: how it was classified, and what it cost if known."""

    class_name: str
    kind: FailureKind
    feedback: str
    usage: Usage | None = None

    @classmethod
    def of(cls, error: Exception, kind: FailureKind, feedback: str) -> RecordedError:
        usage = error.usage if isinstance(error, AgentOutputInvalid) else None
        return cls(_class_name(type(error)), kind, feedback, usage)

    def rebuilt(self) -> Exception:
        """The exception a replay raises: it fails, retries or falls back as the original did.

        A rejected reply comes back as itself, so its cost counts again.
        """
        if self.usage is not None or self.class_name == _class_name(AgentOutputInvalid):
            return AgentOutputInvalid(self.feedback, usage=self.usage)
        return ReplayedFailure(self.kind, self.feedback)
