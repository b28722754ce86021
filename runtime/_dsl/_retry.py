"""Which failures a step retries, how often, and how feedback travels.

Defaults (``RetryPolicy()``): two attempts in all (one retry); retried:
agent errors, timeouts, validation failures and plugin failures; no delay
between attempts. Never retried, whatever the policy says: configuration
errors, usage limits, redirect and fallback loops, cancellation and pauses
(control signals). Feedback from a failed validation or plugin is added to
the next attempt's input by ``add_feedback`` (default
:func:`append_feedback`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs


class FailureKind(enum.Enum):
    """Why an attempt failed."""

    AGENT_ERROR = "agent_error"
    TIMEOUT = "timeout"
    VALIDATION = "validation"
    PLUGIN = "plugin"
    CONFIGURATION = "configuration"
    USAGE_LIMIT = "usage_limit"
    REDIRECT_LOOP = "redirect_loop"
    #: Any other :class:`ControlSignal` raised by a step's code: stops it on purpose.
    CONTROL = "control"


RETRYABLE = frozenset(
    {FailureKind.AGENT_ERROR, FailureKind.TIMEOUT, FailureKind.VALIDATION, FailureKind.PLUGIN}
)


#: Failures whose feedback is added to the next attempt's input (an agent
#: error or a timeout retries with the original input).
FEEDBACK_KINDS = frozenset({FailureKind.VALIDATION, FailureKind.PLUGIN})


def append_feedback(data: Any, feedback: str) -> Any:
    """Append the feedback to a text input; leave other inputs unchanged.

    For structured inputs give the policy your own ``add_feedback``.
    """
    if isinstance(data, str):
        return f"{data}\n\nFeedback on the previous attempt: {feedback}"
    return data


def _retry_on(kinds: frozenset[FailureKind] | set[FailureKind]) -> frozenset[FailureKind]:
    kinds = frozenset(kinds)
    never = kinds - RETRYABLE
    if never:
        names = ", ".join(sorted(kind.value for kind in never))
        raise ValueError(f"these failures are control signals and are never retried: {names}")
    return kinds


@attrs.frozen
class RetryPolicy:
    """How a step retries; see the module docstring for the defaults."""

    max_attempts: int = 2
    retry_on: frozenset[FailureKind] = attrs.field(default=RETRYABLE, converter=_retry_on)
    backoff_s: float = 0.0
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 30.0
    add_feedback: Callable[[Any, str], Any] = append_feedback

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.backoff_multiplier < 1:
            raise ValueError("RetryPolicy backoff must be >= 0 with a multiplier >= 1")

    def retries(self, kind: FailureKind, attempt: int) -> bool:
        """Whether a failure of ``kind`` on attempt ``attempt`` (1-based) is retried."""
        return kind in self.retry_on and attempt < self.max_attempts

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (2 or more)."""
        return min(self.backoff_s * self.backoff_multiplier ** (attempt - 2), self.max_backoff_s)
