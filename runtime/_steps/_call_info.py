"""Which agent call is running: run id, step path, attempt and call number.

An agent that causes external effects (sends an email, charges a card)
reads :func:`current_call` and passes its ``idempotency_key`` along, so a
call that runs again after a crash (the same run, path, attempt and call)
is recognised and not repeated. The value lives in a context variable of
the step's task, so concurrent calls never see each other's.
"""

from __future__ import annotations

import contextvars

import attrs

from .._paths import idempotency_key, ledger_key


@attrs.frozen(slots=True)
class CallInfo:
    """The identity of one agent call."""

    run_id: str
    path: str
    attempt: int
    call: int

    @property
    def ledger_key(self) -> str:
        """The call's key within its run (the governor's ledger key)."""
        return ledger_key(self.path, self.attempt, self.call)

    @property
    def idempotency_key(self) -> str:
        """Stable across resumes: the same call after a crash has the same key."""
        return idempotency_key(self.run_id, self.ledger_key)


_CURRENT: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("trioflow_current_call")


def current_call() -> CallInfo:
    """The agent call running in this task; ``LookupError`` outside of one."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise LookupError("current_call() is only available inside an agent call") from None


def enter_call(info: CallInfo) -> contextvars.Token[CallInfo]:
    return _CURRENT.set(info)


def leave_call(token: contextvars.Token[CallInfo]) -> None:
    _CURRENT.reset(token)
