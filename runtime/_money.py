"""Money: ``Decimal`` amounts, parsed strictly and shown as people write them."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_CENT = Decimal("0.01")


def to_decimal(value: Decimal | int | float | str, *, what: str) -> Decimal:
    """Convert ``value`` to a finite ``Decimal``; floats go through ``str``.

    ``Decimal(0.1)`` is 0.1000000000000000055...; ``Decimal(str(0.1))`` is
    the 0.1 the user typed, which is what a budget means.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number, got {value!r}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return amount


def format_usd(amount: Decimal) -> str:
    """``$1.20`` for whole cents, all the digits otherwise (``$0.00042``)."""
    if amount == amount.quantize(_CENT):
        return f"${amount:,.2f}"
    return f"${amount.normalize():f}"
