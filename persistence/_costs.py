"""A cost in the journal: one translator between the ``Decimal`` a record holds and its stored text.

Records (:mod:`._records`) hold costs as exact ``Decimal`` amounts, the
values the runtime computes with; the journal keeps them as decimal text
(``"0.25"``), which is how every journal has stored them, so journals
written before records held ``Decimal`` read back unchanged, with the same
digits. :func:`cost_to_stored` and :func:`cost_from_stored` are the only
two places that text is made and read: the codec writes a cost field
through the first (the field names it in its metadata, :data:`COST`), and
the field's converter reads with the second. A store that keeps a cost in a
column of its own (a SQL ``NUMERIC``) calls the same pair, so a cost is
converted in one module whichever store holds it.

``str`` keeps a ``Decimal``'s digits and exponent (``Decimal("0.50")``
stays ``"0.50"``), so a round trip gives back the same amount, written the
same way.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

#: The metadata key under which a record's field names the function giving its stored form.
STORED_AS = "trioflow.stored_as"


def cost_to_stored(amount: Decimal) -> str:
    """The journal's text for ``amount``: its digits, exactly as the ``Decimal`` holds them."""
    if type(amount) is not Decimal or not amount.is_finite():
        raise ValueError(f"a stored cost must be a finite Decimal, got {amount!r}")
    return str(amount)


def cost_from_stored(stored: Any) -> Decimal:
    """The ``Decimal`` a cost field holds, from the journal's text (or a ``Decimal`` as is).

    Anything else (a float, which is not exact; text that is not a finite
    number) raises ``ValueError`` naming what was found: reading a journal,
    the codec reports it as a damaged record.
    """
    if type(stored) is Decimal:  # the common case: a record the runtime built
        amount = stored
    elif type(stored) is str:
        try:
            amount = Decimal(stored)
        except InvalidOperation:
            raise ValueError(f"a stored cost must be decimal text, got {stored!r}") from None
    else:
        raise ValueError(f"a stored cost must be decimal text or a Decimal, got {stored!r}")
    if not amount.is_finite():
        raise ValueError(f"a stored cost must be finite, got {stored!r}")
    return amount


#: The metadata of a record's cost field: the codec stores it with :func:`cost_to_stored`.
#: Declare one as ``attrs.field(converter=cost_from_stored, metadata=COST)``.
COST = {STORED_AS: cost_to_stored}
