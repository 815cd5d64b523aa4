"""Proration and the one rounding rule, on exact fractions. Pure.

A fixed charge covers a whole period of the plan's calendar grid. When the subscription holds only
part of it (it starts or ends inside), the charge is multiplied by the part's share of the grid
period, measured in time (so whole days when the boundaries fall at midnight, and a partial day by
its fraction). Shares such as 15/31 have no finite decimal, so the arithmetic runs on fractions and
is rounded once, half-up, to the currency's minor unit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from meterworks.kit.instants import MICROS_PER_DAY, to_micros
from meterworks.kit.money import exponent
from meterworks.kit.periods import Period

# Stored beside the rounded amount when the exact value has no finite decimal.
STORED_PLACES = Decimal("1e-20")
# Shown for shares and days that have no finite decimal (the amount uses the exact fraction).
DISPLAY_PLACES = Decimal("1e-6")


def micros(period: Period) -> int:
    return to_micros(period.end) - to_micros(period.start)


def share(part: Period, whole: Period) -> Fraction:
    """The fraction of `whole` that `part` covers, by time."""
    total = micros(whole)
    if total <= 0:
        return Fraction(0)
    return Fraction(micros(part), total)


def days(period: Period) -> Fraction:
    return Fraction(micros(period), MICROS_PER_DAY)


def round_half_up(value: Fraction, places: int = 0) -> int:
    """`value` × 10^places as an integer, rounded half-up (halves away from zero)."""
    scaled = abs(value) * Fraction(10**places)
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest >= scaled.denominator:
        whole += 1
    return whole if value >= 0 else -whole


def round_minor(value: Fraction, currency: str) -> int:
    """Integer minor units of an amount in major units, rounded half-up."""
    return round_half_up(value, exponent(currency))


def to_decimal(value: Fraction, places: Decimal = STORED_PLACES) -> Decimal:
    """`value` exactly when its decimal is finite within `places`, else rounded half-up to it."""
    with localcontext() as ctx:
        ctx.prec = 80
        ctx.rounding = ROUND_HALF_UP
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        if exact == exact.quantize(places):
            return exact.normalize() if exact else Decimal(0)
        return exact.quantize(places).normalize()


def fraction_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )
