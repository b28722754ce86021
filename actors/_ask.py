"""The reply type of an ask, carried by the class of its message.

A message class that is asked for a reply subclasses ``Ask[R]``, naming
what its handler answers; :meth:`~trioflow.actors.ActorRef.ask` then
returns an ``R``, so mypy checks every caller against the protocol the
message declares instead of trusting an annotation written at each call
site. A message that is only told needs no base class.

Why a base class and not a wrapper: the marker costs nothing per message.
It has no fields, no ``__init__`` and empty ``__slots__``; ``Ask[R]`` is
evaluated once, when the message class is defined. The kernel never looks
at it at run time (the handler's return value is the reply, as before).
"""

from __future__ import annotations

from typing import Generic, TypeVar

#: What the handler of the message replies (covariant: an ``Ask[bool]`` is an ``Ask[object]``).
R_co = TypeVar("R_co", covariant=True)


class Ask(Generic[R_co]):
    """Base of a message whose ask replies with an ``R_co``; see the module docstring."""

    __slots__ = ()
