"""Exact decimal quantities: parsing from client input and rendering as strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

# A quantity may carry up to this many significant digits; more is refused, not rounded.
MAX_DIGITS = 38
MAX_SCALE = 18
_ZERO = Decimal(0)


class DecimalInputError(ValueError):
    """The value is not an exact, finite decimal number."""


def parse_decimal(value: Any) -> Decimal:
    """Accept a decimal string, an int or a Decimal (JSON numbers arrive as Decimal).

    Floats are refused: they cannot carry an exact decimal value.
    """
    if isinstance(value, bool):
        raise DecimalInputError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise DecimalInputError("must be a decimal number")
        try:
            number = Decimal(text)
        except InvalidOperation as exc:
            raise DecimalInputError("must be a decimal number") from exc
    else:
        raise DecimalInputError("must be a decimal number (string or JSON number)")
    return bounded_decimal(number)


def bounded_decimal(number: Decimal) -> Decimal:
    """`number` as a quantity: finite and within the digits allowed, zero as plain `0`."""
    if not number.is_finite():
        raise DecimalInputError("must be a finite number")
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    # Its decimals are -exponent (none where the exponent is positive); its integer digits
    # len(digits) + exponent. Compared directly: run for every event, `max` and `== 0` cost a
    # third as much again as the rest.
    if exponent < -MAX_SCALE or len(digits) + exponent > MAX_DIGITS - MAX_SCALE:
        raise DecimalInputError(
            f"must have at most {MAX_DIGITS - MAX_SCALE} integer digits and {MAX_SCALE} decimals"
        )
    if not number:
        return _ZERO
    return number


def format_decimal(value: Decimal) -> str:
    """Plain notation without trailing zeros: Decimal('30.0') -> '30', Decimal('1E+3') -> '1000'."""
    if not value:
        return "0"
    # Plain notation is exact whatever the context; only zeros after the point go.
    return plain_trimmed(format(value, "f"))


def plain_trimmed(text: str) -> str:
    """`format_decimal` of a non-zero number from its plain notation (`format(value, "f")`)."""
    return text.rstrip("0").rstrip(".") if "." in text else text
