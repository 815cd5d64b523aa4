"""Exact decimal arithmetic for pricing, and the checks every pricing input passes first."""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)

# Inputs carry at most 38 significant digits (see kit.decimals), so a product of two of them needs
# at most 76 and a sum of such products only a few more: 200 digits never round. Inexact is trapped
# anyway, so if that reasoning were ever wrong, pricing fails loudly instead of returning a
# silently rounded amount.
EXACT_PRECISION = 200

# The display price (an average) is the one inexact value; it never feeds back into an amount.
DISPLAY_PRECISION = 28


_EXACT = Context(
    prec=EXACT_PRECISION,
    rounding=ROUND_HALF_UP,
    traps=[Inexact, InvalidOperation, DivisionByZero, Overflow],
)


def exact() -> AbstractContextManager[Context]:
    """A local decimal context in which every operation is exact or raises `decimal.Inexact`."""
    # localcontext works on a copy: the shared template is never changed (nor its flags set).
    return localcontext(_EXACT)


def require_non_negative(name: str, value: Decimal) -> Decimal:
    """Return `value` if it is a finite decimal ≥ 0, else raise ValueError naming it."""
    if not isinstance(value, Decimal):
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def require_positive(name: str, value: Decimal) -> Decimal:
    """Return `value` if it is a finite decimal > 0, else raise ValueError naming it."""
    if require_non_negative(name, value) == 0:
        raise ValueError(f"{name} must be greater than zero")
    return value


def average(amount: Decimal, quantity: Decimal) -> Decimal:
    """amount / quantity to DISPLAY_PRECISION significant digits (half-up); 0 when quantity is 0.

    For display only: it is not exact (107 / 1500 does not terminate) and is never multiplied back.
    """
    if quantity == 0:
        return Decimal(0)
    with localcontext(Context(prec=DISPLAY_PRECISION, rounding=ROUND_HALF_UP)):
        return amount / quantity
