"""The runtime's exceptions, grouped by what trioflow does with them.

Failures are classified by type, never by a blanket handler:

* :class:`ConfigurationError` and its subclasses are mistakes in how a
  pipeline was written or called. They are raised as early as possible
  (usually when the pipeline is built) and never retried.
* :class:`ControlSignal` subclasses (usage limits, redirect and fallback
  loops) stop a step on purpose and are never retried.
* :class:`AgentOutputInvalid` says an agent's reply does not fit the
  output it promised: a validation failure, retried with its message as
  feedback.
* Anything else an agent raises is an agent error, retried as the step's
  :class:`~trioflow.runtime.RetryPolicy` says (:class:`ModelCallFailed` is
  one: a model endpoint that is busy, down or slow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._results import PipelineResult
    from ._usage import Usage


class TrioflowError(Exception):
    """Base class of every error trioflow raises on purpose."""


class ConfigurationError(TrioflowError):
    """A pipeline, step or call is set up wrongly; never retried."""


class PipelineTypeError(ConfigurationError):
    """Adjacent steps do not fit: one's output type is not the next one's input."""


class InputTypeError(ConfigurationError):
    """The run's input does not match the first step's input type."""


class ScriptExhausted(ConfigurationError):
    """A :class:`~trioflow.runtime.StubAgent` was called more times than scripted."""


class ModelRequestRejected(ConfigurationError):
    """A model endpoint refused the request itself (400, 401, 403, 404...): never retried.

    The same request would be refused again: a wrong key, a model name the
    endpoint does not know, an option it does not accept.
    """

    def __init__(self, message: str, *, model: str, status: int) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class ModelCallFailed(TrioflowError):
    """A model call failed in a way that may pass on another attempt.

    Rate limits (429), server errors (5xx), connection failures and
    timeouts. It is an agent error, so the step's retry policy retries it.
    ``status`` is the HTTP status (``None`` when no response came);
    ``retry_after_s`` is the wait the endpoint asked for, already waited
    out by the agent before it raised.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s


class ModelTimeout(ModelCallFailed):
    """A model call got no complete reply within the agent's ``timeout_s``."""


class AgentOutputInvalid(TrioflowError):
    """An agent's reply does not fit the output it promised (a validation failure).

    The step classifies it as a validation failure: retried, with this
    message added to the next attempt's input as feedback. ``usage`` is
    what the rejected reply cost, when the agent knows it.
    """

    def __init__(self, message: str, *, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class ReplayMismatch(ConfigurationError):
    """A replayed step asked for a model call the original run did not make."""


class RunNotResumable(TrioflowError):
    """The run cannot be resumed: it has ended (completed, failed or stopped by a limit).

    Its subclass :class:`RunClaimed` says another resume holds the run.
    """


class RunClaimed(RunNotResumable):
    """Another resume holds the run, so this one did not start it and changed nothing.

    Raised in three cases. The run changed between this resume reading it
    and claiming it: another resume claimed it first (of resumes racing for
    one run, exactly one goes on). Or the run is ``running`` and its owner's
    lease still runs: the owner is taken to be alive (the message says when
    the lease runs out). Or an answer was given to a run whose status is
    ``running``: only a resume without an answer takes a running run over,
    once its lease has run out (see :meth:`~trioflow.runtime.Runtime.resume`).
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunTakenOver(TrioflowError):
    """Another resume claimed the run while this process was still driving it.

    This process's lease on the run had run out (it was stalled for longer
    than the lease), so that resume took it for dead. From the takeover on,
    the store refused every write of this drive (its epoch was no longer
    the run's): no step record, ledger entry, pause, trace or outcome of it
    replaces the new owner's. ``result`` is what this drive came to, or
    ``None`` if it was stopped before the end (its heartbeat or a journal
    write found the run taken).
    """

    def __init__(self, message: str, *, run_id: str, result: PipelineResult | None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.result = result


class HumanInputRequired(TrioflowError):
    """The run waits for a person's answer, and resume was given none (or not which)."""


class ControlSignal(TrioflowError):
    """Stops a step on purpose; the retry policy never retries it."""


class RedirectLoopError(ControlSignal):
    """Plugins redirected a step back to an agent it had already used."""


class FallbackLoopError(ConfigurationError):
    """A fallback chain names the same step twice, or is too deep."""


class ContextValidationError(TrioflowError):
    """A step's context patch produced a context its model rejects."""


class UsageLimitExceeded(ControlSignal):
    """A cost or token limit was exceeded (or a reservation would exceed it).

    ``result`` is the run's result at the moment of the breach: its step
    history includes the step that breached, and its totals are exact.
    """

    def __init__(self, message: str, result: PipelineResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result
