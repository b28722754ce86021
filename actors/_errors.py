"""The kernel's exceptions: each names the actor it is about."""

from __future__ import annotations


class ActorError(Exception):
    """Base class of the kernel's errors."""


class ActorStopped(ActorError):
    """A message was sent to an actor whose mailbox is closed.

    Raised by ``tell`` and ``ask`` on a stopped actor, and delivered to an
    ``ask`` that was still queued when the actor stopped.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"actor {path!r} has stopped and takes no more messages")
        self.path = path


class AskTimeout(ActorError):
    """An ``ask`` got no reply within its timeout."""

    def __init__(self, path: str, message: object, timeout: float) -> None:
        super().__init__(
            f"actor {path!r} did not reply to {type(message).__name__} within {timeout:g}s"
        )
        self.path = path
        self.timeout = timeout


class ChildFailed(ActorError):
    """A supervised child failed and its supervisor escalated.

    Raised out of the supervisor's ``async with`` block, after every other
    child has been cancelled and has exited. ``cause`` (also the
    ``__cause__``) is the child's own exception, unwrapped: callers never
    have to dig through an ``ExceptionGroup``.
    """

    def __init__(self, path: str, cause: BaseException, *, restarts: int = 0) -> None:
        suffix = f" after {restarts} restart(s)" if restarts else ""
        super().__init__(f"actor {path!r} failed{suffix}: {type(cause).__name__}: {cause}")
        self.path = path
        self.cause = cause
        self.restarts = restarts
