"""Running an agent step: attempts, retries, fallbacks and caching.

One attempt, in order: input processors; under a cost limit, the refusal
of an agent that cannot price its call; a reservation with the governor
(when the step or agent gives an upper-bound estimate and a limit
applies); the agent call under the step's timeout; the commit of what it
cost (which no cancellation interrupts: the call was paid); output
processors; plugins in priority order (a plugin may replace
the output, redirect the call to another agent, or fail with feedback);
validators.

Failures are classified by type (see :class:`FailureKind`): a timeout, a
validation failure, a plugin failure, a configuration error, a redirect
loop, or, for anything else the step's own code raised, an agent error.
The retry policy decides which are retried; feedback from a failed
validation or plugin is added to the next attempt's input. Usage limits end
the step at once. After the last attempt of a retryable failure the
fallback step runs; its result keeps the original error while attempts,
usage and latency add up over everything that ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any

import attrs
import pydantic
import trio
from trioflow.actors import ActorError, ActorStopped, AskTimeout
from trioflow.persistence import StoreError

from .._dsl._agent_step import AgentStep
from .._dsl._checks import UNSET, ValidationResult, call_maybe_async, callable_name
from .._dsl._context import BaseContext, Patch, WithPatch, patch_from_fields
from .._dsl._retry import FEEDBACK_KINDS, RETRYABLE, FailureKind
from .._errors import (
    AgentOutputInvalid,
    ConfigurationError,
    ControlSignal,
    RedirectLoopError,
    ReplayMismatch,
    UsageLimitExceeded,
)
from .._governor import Commit, Denial, Grant, Release, Reserve, Wait
from .._notes import NoteKind, RetryNote, note
from .._paths import attempt_path, cache_hit_key, fallback_path
from .._recorded_replies import RecordedError, ReplayedFailure
from .._results import StepResult
from .._services import RunServices
from .._usage import NO_USAGE, Completion, Usage, UsageLimits
from ..agents._agents import Agent, CallableAgent, EstimatingAgent
from ..agents._prices import PricedAgent
from ._cache import cache_key
from ._call_info import CallInfo, enter_call, leave_call
from ._fallback_history import FALLBACK_TRIGGERED
from ._messages import Execute, StepDone
from ._step_actor import StepActor

#: How long a cancelled step waits to give its reservation back to the governor.
RELEASE_TIMEOUT_S = 5.0


class AttemptFailed(Exception):
    """One attempt failed; ``kind`` decides whether another follows."""

    def __init__(self, kind: FailureKind, feedback: str) -> None:
        super().__init__(feedback)
        self.kind = kind
        self.feedback = feedback


class StepTimeout(Exception):
    """The agent call outlived the step's ``timeout_s`` (and was cancelled)."""


class _LimitBreached(Exception):
    """The governor reported (or would cause) a usage limit breach."""

    def __init__(
        self,
        message: str,
        *,
        paid: bool,
        delivered: bool | None = None,
        output: Any = None,
        patch: Patch = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        #: Whether the breaching call happened (and counts as an attempt).
        self.paid = paid
        #: Whether it gave a usable output (a rejected reply was paid, not delivered).
        self.delivered = paid if delivered is None else delivered
        self.output = output
        self.patch = patch


@attrs.define(slots=True)
class _Tally:
    """What a step has spent so far, over attempts, redirects and fallbacks."""

    attempts: int = 0
    usage: Usage = NO_USAGE
    #: Agent calls made in the current attempt (redirects make more than one).
    calls: int = 0
    #: What each model call replied, by ledger key (function agents are code: not kept).
    replies: list[tuple[str, Any]] = attrs.field(factory=list)


@attrs.define(slots=True)
class _Attempt:
    """One attempt of one step: what every function of the attempt needs, bundled once.

    The functions stay flat (a waiting step holds as few frames as possible)
    and take this one argument instead of the same six; ``data`` is the
    attempt's input (with feedback from the last one, after input processors).
    Never changed once made (a changed input is a new one, ``attrs.evolve``);
    not ``frozen`` only because a frozen class's ``__init__`` sets each field
    through ``object.__setattr__``, three times the cost, on every attempt.
    """

    spec: AgentStep
    path: str
    data: Any
    context: BaseContext
    services: RunServices
    tally: _Tally


@attrs.frozen(slots=True)
class _Success:
    output: Any
    patch: Patch
    metadata: dict[str, Any]


class AgentStepActor(StepActor):
    """Runs one :class:`AgentStep` once, then stops."""

    def __init__(self, spec: AgentStep, services: RunServices) -> None:
        super().__init__(services)
        self._spec = spec

    def execute(self, message: Execute) -> Coroutine[Any, Any, StepDone]:
        # The coroutine itself, not awaited here: one frame less on a step
        # that waits (a thousand idle steps hold a thousand such chains).
        return execute_step(self._spec, self.path, message.data, message.context, self._services)


def execute_step(
    spec: AgentStep, path: str, data: Any, context: BaseContext, services: RunServices
) -> Coroutine[Any, Any, StepDone]:
    """Run ``spec`` at ``path``, from the cache when it opts in (a coroutine to await)."""
    if spec.cache is None:
        return _execute(spec, path, data, context, services)
    return _cached(spec, path, data, context, services)


async def _cached(
    spec: AgentStep, path: str, data: Any, context: BaseContext, services: RunServices
) -> StepDone:
    assert spec.cache is not None  # (execute_step only sends cached steps here)
    key = cache_key(spec, spec.cache, data, context)
    if services.replies is not None:
        return await _replayed_cached(spec, path, data, context, services, key)
    outcome = await services.cache.run(
        spec, key, lambda: _execute(spec, path, data, context, services)
    )
    if isinstance(outcome, StepDone):
        return outcome
    _note(services, path, NoteKind.CACHE_HIT, key[:16])
    hit = attrs.evolve(
        outcome,
        path=path,
        attempts=0,
        latency_s=0.0,
        usage=NO_USAGE,
        metadata={**outcome.metadata, "cache_hit": True},
    )
    # Kept with the model replies: a replay answers this step from the cache again.
    return StepDone(hit, replies=((cache_hit_key(path), hit),))


async def _replayed_cached(
    spec: AgentStep, path: str, data: Any, context: BaseContext, services: RunServices, key: str
) -> StepDone:
    """A replay of a cached step: a hit where the original had one, else the step runs.

    The replay's cache starts empty (and keys may name agents by identity,
    which another process does not share), so the original's hits are
    answered from its journal and its misses run as they did, replies
    answered from the journal too.
    """
    assert services.replies is not None  # (only a replay comes here)
    recorded = services.replies.get(cache_hit_key(path))
    if recorded is None:
        return await _execute(spec, path, data, context, services)
    _note(services, path, NoteKind.CACHE_HIT, key[:16])
    return StepDone(recorded, replies=((cache_hit_key(path), recorded),))


async def _execute(
    spec: AgentStep, path: str, data: Any, context: BaseContext, services: RunServices
) -> StepDone:
    started = trio.current_time()
    tally = _Tally()
    try:
        outcome = await _attempts(_Attempt(spec, path, data, context, services, tally))
    except _LimitBreached as breach:
        result = StepResult(
            spec.name,
            path,
            output=breach.output,
            success=breach.delivered,
            # A refused reservation means that attempt never called its agent.
            attempts=tally.attempts if breach.paid else tally.attempts - 1,
            latency_s=trio.current_time() - started,
            usage=tally.usage,
            feedback=breach.message,
            patch=breach.patch,
        )
        return StepDone(result, breach=breach.message, replies=tuple(tally.replies))
    latency = trio.current_time() - started
    if isinstance(outcome, _Success):
        return StepDone(
            StepResult(
                spec.name,
                path,
                output=outcome.output,
                success=True,
                attempts=tally.attempts,
                latency_s=latency,
                usage=tally.usage,
                metadata=outcome.metadata,
                patch=outcome.patch,
            ),
            replies=tuple(tally.replies),
        )
    failed = StepResult(
        spec.name,
        path,
        attempts=tally.attempts,
        latency_s=latency,
        usage=tally.usage,
        feedback=f"step {path!r} failed ({outcome.kind.value}): {outcome.feedback}",
        metadata={"failure": outcome.kind.value},
    )
    if spec.fallback is None or outcome.kind not in RETRYABLE:
        return StepDone(failed, replies=tuple(tally.replies))
    done = await _fall_back(spec, spec.fallback, failed, data, context, services)
    return attrs.evolve(done, replies=(*tally.replies, *done.replies))


async def _fall_back(
    spec: AgentStep,
    fallback: AgentStep,
    failed: StepResult,
    data: Any,
    context: BaseContext,
    services: RunServices,
) -> StepDone:
    _note(services, failed.path, NoteKind.FALLBACK, fallback.name)
    done = await execute_step(
        fallback, fallback_path(failed.path, fallback.name), data, context, services
    )
    ran = done.result
    result = attrs.evolve(
        ran,
        name=spec.name,
        path=failed.path,
        attempts=failed.attempts + ran.attempts,
        latency_s=failed.latency_s + ran.latency_s,
        usage=failed.usage + ran.usage,
        feedback=ran.feedback if not ran.success else failed.feedback,
        metadata={
            **ran.metadata,
            FALLBACK_TRIGGERED: True,
            "fallback_step": fallback.name,
            "original_error": failed.feedback,
        },
        step_history=(_own_attempts(failed), ran),
    )
    return StepDone(result, breach=done.breach, replies=done.replies)


def _own_attempts(failed: StepResult) -> StepResult:
    """The step's own failed attempts, as the first of the two results beneath its fallback.

    Its path names the attempts (``main/5:polish#1-2``, as the trace names
    attempt ``#1``): under the step's own path it would read as a step
    nested in itself in tables and JSON.
    """
    attempts = "1" if failed.attempts == 1 else f"1-{failed.attempts}"
    return attrs.evolve(failed, path=attempt_path(failed.path, attempts))


async def _attempts(first: _Attempt) -> _Success | AttemptFailed:
    """Attempt ``first`` and, as the retry policy allows, again; the last outcome."""
    spec, path, data, tally = first.spec, first.path, first.data, first.tally
    policy = spec.retry
    current = first
    while True:
        tally.attempts += 1
        tally.calls = 0
        attempt = tally.attempts
        try:
            return await _checked_call(current)
        except AttemptFailed as failed:
            failure = failed
        except (_LimitBreached, StoreError, ActorError):
            # A limit ends the step; the journal or the kernel failing is not the
            # step's failure: the run ends, nothing is retried.
            raise
        except Exception as error:  # the step's own code: classified by type, see classify()
            failure = AttemptFailed(*classify(error))
            failure.__cause__ = error
        if not policy.retries(failure.kind, attempt):
            return failure
        reason = f"{failure.kind.value}: {failure.feedback}"
        first.services.trace.record(RetryNote(attempt, reason).event(path))
        delay = policy.delay_before(attempt + 1)
        if delay:
            await trio.sleep(delay)
        if failure.kind in FEEDBACK_KINDS:
            current = attrs.evolve(first, data=policy.add_feedback(data, failure.feedback))
        else:
            current = first


def classify(error: Exception) -> tuple[FailureKind, str]:
    """The failure class of an exception raised by a step's code, and its feedback."""
    match error:
        case ReplayedFailure():
            return error.kind, error.feedback
        case RedirectLoopError():
            return FailureKind.REDIRECT_LOOP, str(error)
        case UsageLimitExceeded():
            return FailureKind.USAGE_LIMIT, str(error)
        case ControlSignal():
            return FailureKind.CONTROL, f"{type(error).__name__}: {error}"
        case ConfigurationError():
            return FailureKind.CONFIGURATION, str(error)
        case StepTimeout():
            return FailureKind.TIMEOUT, str(error)
        case AgentOutputInvalid():
            return FailureKind.VALIDATION, str(error)
    return FailureKind.AGENT_ERROR, f"{type(error).__name__}: {error}"


async def _checked_call(attempt: _Attempt) -> _Success:
    spec, path, context = attempt.spec, attempt.path, attempt.context
    if spec.input_processors:
        data = attempt.data
        for processor in spec.input_processors:
            data = await call_maybe_async(processor, data, context)
        attempt = attrs.evolve(attempt, data=data)
    agent: Agent = spec.agent
    used: list[Agent] = [agent]
    while True:
        output, patch = await _paid_call(attempt, agent)
        for processor in spec.output_processors:
            output = await call_maybe_async(processor, output, context)
        if not spec.plugins:
            break
        output, redirect = await _run_plugins(spec, output, context)
        if redirect is None:
            break
        if any(redirect is seen for seen in used):
            chain = " -> ".join(type(a).__name__ for a in [*used, redirect])
            raise RedirectLoopError(f"step {path!r}: redirect loop detected ({chain})")
        _note(attempt.services, path, NoteKind.REDIRECT, type(redirect).__name__)
        used.append(redirect)
        agent = redirect
    metadata = await _run_validators(spec, output, context) if spec.validators else {}
    if spec.updates_context:
        patch = patch + _fields_patch(spec, output)
    return _Success(output, patch, metadata)


async def _paid_call(attempt: _Attempt, agent: Agent) -> tuple[Any, Patch]:
    """Reserve, call the agent under the timeout, and commit what it cost."""
    spec, services, tally = attempt.spec, attempt.services, attempt.tally
    budgeted = services.limits is not None or spec.limits is not None
    if budgeted:
        _refuse_unpriced(spec, agent, services)
    grant = await _reserve(attempt, agent) if budgeted else None
    tally.calls += 1
    call = CallInfo(services.run_id, attempt.path, tally.attempts, tally.calls)
    token = enter_call(call)
    try:
        reply = await _reply(attempt, agent, call)
    except AgentOutputInvalid as rejected:
        # The reply was paid for even though it is unusable: it counts.
        breach = await _settle(attempt, grant, rejected.usage or NO_USAGE, call)
        if breach is not None:
            raise _LimitBreached(breach, paid=True, delivered=False) from rejected
        raise
    except BaseException:
        # Nothing was committed for this call (a failure, or a cancellation by a
        # sibling's failure): give the reservation back, or later calls wait on it.
        if grant is not None:
            await _release(grant, attempt.path, services)
        raise
    finally:
        leave_call(token)
    usage = reply.usage if isinstance(reply, Completion) else NO_USAGE
    output: Any = reply.output if isinstance(reply, Completion) else reply
    patch: Patch = ()
    if isinstance(output, WithPatch):
        output, patch = output.output, output.patch
    breach = await _settle(attempt, grant, usage, call)
    if breach is not None:
        # The call happened and was paid for: its output and context
        # changes are part of the run's record, though the run stops here.
        if spec.updates_context and _carries_fields(output):
            patch = patch + patch_from_fields(output)
        raise _LimitBreached(breach, paid=True, output=output, patch=patch)
    return output, patch


def _refuse_unpriced(spec: AgentStep, agent: Agent, services: RunServices) -> None:
    """Refuse, before the call, an agent that cannot price it where a cost limit applies.

    With or without an estimate (``usage_estimate=`` or the agent's own):
    its cost would count as a silent ``$0`` against the budget. Under token
    limits only, its price does not matter.
    """
    if not (_limits_cost(services.limits) or _limits_cost(spec.limits)):
        return
    if isinstance(agent, PricedAgent):
        reason = agent.unpriced()
        if reason is not None:
            raise ConfigurationError(reason)


def _limits_cost(limits: UsageLimits | None) -> bool:
    return limits is not None and limits.total_cost_usd is not None


async def _release(grant: Grant, path: str, services: RunServices) -> None:
    """Give a reservation back, even while this step is being cancelled."""
    with trio.CancelScope(shield=True):
        try:
            await services.governor.ask(Release(grant), sender=path, timeout=RELEASE_TIMEOUT_S)
        except (ActorStopped, AskTimeout):
            return  # the whole run is ending: there is no budget left to return it to


async def _settle(
    attempt: _Attempt, grant: Grant | None, usage: Usage, call: CallInfo
) -> str | None:
    """Count what a call cost, and commit it to the governor; the breach, if any."""
    attempt.tally.usage += usage
    if grant is None and usage.is_zero:
        return None  # nothing reserved, nothing spent: the governor need not hear of it
    path = attempt.path
    commit = Commit(path, grant, usage, attempt.spec.limits, call.ledger_key)
    # Always an ask, even when no limit applies: the reply comes after the
    # ledger entry is journaled, so the step's completion record (written
    # later) never exists without the usage it paid for. Shielded: the call
    # was paid, so a cancellation (a sibling's breach, the run's end) must not
    # lose it; the governor is shielded too and answers while the run is
    # cancelled. The cancellation takes effect at the step's next checkpoint.
    with trio.CancelScope(shield=True):
        breach = await attempt.services.governor.ask(commit, sender=path)
    return breach


def _reply(attempt: _Attempt, agent: Agent, call: CallInfo) -> Awaitable[Any]:
    """The agent's reply (an awaitable): from the agent, or, when replaying, from the journal.

    Function agents are the user's code: they always run (and their
    coroutine is awaited directly, with no frame of ours around it). Any
    other agent is a model; its reply is kept for replay, and a replay
    answers it from the original run's journal without calling it.
    """
    if isinstance(agent, CallableAgent):
        return _call(attempt, agent)
    replies = attempt.services.replies
    if replies is not None:
        return _replayed(call, replies)
    return _model_reply(attempt, agent, call)


async def _replayed(call: CallInfo, replies: Mapping[str, Any]) -> Any:
    """The original run's reply to this call (an error it got is raised again)."""
    if call.ledger_key not in replies:
        raise ReplayMismatch(f"the original run made no call {call.ledger_key!r}")
    recorded = replies[call.ledger_key]
    if isinstance(recorded, RecordedError):
        raise recorded.rebuilt()
    return recorded


async def _model_reply(attempt: _Attempt, agent: Agent, call: CallInfo) -> Any:
    """A model's reply, kept (or the error it raised) for replay."""
    tally = attempt.tally
    try:
        reply = await _call(attempt, agent)
    except Exception as error:  # kept for replay, then handled as it would be anyway
        tally.replies.append((call.ledger_key, RecordedError.of(error, *classify(error))))
        raise
    tally.replies.append((call.ledger_key, reply))
    return reply


def _call(attempt: _Attempt, agent: Agent) -> Awaitable[Any]:
    """The agent call, under the step's timeout when it has one (an awaitable).

    Without a timeout it is the agent's own coroutine: no frame of ours
    waits around it.
    """
    timeout_s = attempt.spec.timeout_s
    if timeout_s is None:
        return agent.run(
            attempt.data, context=attempt.context, resources=attempt.services.resources
        )
    return _timed_call(attempt, agent, timeout_s)


async def _timed_call(attempt: _Attempt, agent: Agent, timeout_s: float) -> Any:
    with trio.move_on_after(timeout_s):
        return await agent.run(
            attempt.data, context=attempt.context, resources=attempt.services.resources
        )
    raise StepTimeout(f"timed out after {timeout_s:g}s")


async def _reserve(attempt: _Attempt, agent: Agent) -> Grant:
    """Ask the governor before a call under a limit.

    With an upper-bound estimate the reservation holds it (strict mode);
    without one it reserves nothing but is still refused once a limit was
    exceeded, so no call starts after a breach (optimistic mode).
    """
    spec, path, governor = attempt.spec, attempt.path, attempt.services.governor
    estimate = spec.usage_estimate
    if estimate is None and isinstance(agent, EstimatingAgent):
        estimate = agent.estimate_usage(attempt.data)
    request = Reserve(path, estimate, spec.limits)
    decision = await governor.ask(request, sender=path)
    while isinstance(decision, Wait):  # fits once calls in flight settle
        await decision.settled.wait()
        decision = await governor.ask(request, sender=path)
    if isinstance(decision, Denial):
        raise _LimitBreached(decision.message, paid=False)
    assert isinstance(decision, Grant)
    return decision


async def _run_plugins(
    spec: AgentStep, output: Any, context: BaseContext
) -> tuple[Any, Agent | None]:
    for plugin in spec.plugins:
        outcome = await plugin.validate(output, context=context)
        if not outcome.success:
            name = type(plugin).__name__
            raise AttemptFailed(
                FailureKind.PLUGIN, f"{name}: {outcome.feedback or 'rejected the output'}"
            )
        if outcome.new_solution is not UNSET:
            output = outcome.new_solution
        if outcome.redirect_to is not None:
            return output, outcome.redirect_to
    return output, None


async def _run_validators(spec: AgentStep, output: Any, context: BaseContext) -> dict[str, Any]:
    failures: list[str] = []
    for validator in spec.validators:
        verdict = await call_maybe_async(validator, output, context)
        if not isinstance(verdict, ValidationResult):
            raise ConfigurationError(
                f"validator {callable_name(validator)} returned {verdict!r}, not a ValidationResult"
            )
        if not verdict.valid:
            failures.append(f"{callable_name(validator)}: {verdict.feedback or 'invalid'}")
    if not failures:
        return {"validation_passed": True} if spec.validators else {}
    feedback = "Validation failed: " + "; ".join(failures)
    if spec.strict_validation:
        raise AttemptFailed(FailureKind.VALIDATION, feedback)
    return {"validation_passed": False, "validation_feedback": feedback}


def _carries_fields(output: Any) -> bool:
    return isinstance(output, dict | pydantic.BaseModel)


def _fields_patch(spec: AgentStep, output: Any) -> Patch:
    if not _carries_fields(output):
        raise ConfigurationError(
            f"step {spec.name!r} has updates_context=True but returned "
            f"{type(output).__name__}, not a dict or pydantic model"
        )
    return patch_from_fields(output)


def _note(services: RunServices, path: str, kind: NoteKind, detail: str) -> None:
    services.trace.record(note(kind, path, detail))
