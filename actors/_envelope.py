"""The envelope a message travels in through a mailbox."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

from ._reply import ReplyTarget

M = TypeVar("M")


@attrs.frozen(slots=True)
class Envelope(Generic[M]):
    """A message, who sent it, and where its reply goes (``ask`` only)."""

    message: M
    sender: str | None
    reply: ReplyTarget | None
