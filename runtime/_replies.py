"""What a model call replied, kept in the journal so a run can be replayed.

A reply is kept as it was (an output or a :class:`Completion`); a call
that raised is kept as a :class:`RecordedError`, which a replay raises
again as the same class when it can, so the step fails, retries or falls
back exactly as it did.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs

from ._errors import AgentOutputInvalid
from ._usage import Usage


class ReplayedAgentError(Exception):
    """A recorded agent error whose class cannot be rebuilt here."""


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@attrs.frozen
class RecordedError:
    """An exception a model call raised: its class, message and (if known) what it cost."""

    class_name: str
    message: str
    usage: Usage | None = None

    @classmethod
    def of(cls, error: Exception) -> RecordedError:
        usage = error.usage if isinstance(error, AgentOutputInvalid) else None
        return cls(_class_name(type(error)), str(error), usage)

    def rebuilt(self) -> Exception:
        """The exception to raise again: the same class where it can be made from a message."""
        if self.class_name == _class_name(AgentOutputInvalid):
            return AgentOutputInvalid(self.message, usage=self.usage)
        found = _find(self.class_name)
        stand_in = ReplayedAgentError(f"{self.class_name}: {self.message}")
        if not (isinstance(found, type) and issubclass(found, Exception)):
            return stand_in
        try:
            return found(self.message)
        except TypeError:  # its constructor wants more than a message
            return stand_in


def _find(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found
