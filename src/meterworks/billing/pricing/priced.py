"""What pricing returns: an exact amount and the arithmetic steps that add up to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from meterworks.billing.pricing.exact import exact


@dataclass(frozen=True, slots=True)
class PricedStep:
    """One line of the explanation: `quantity × unit_price = amount`, exactly.

    A flat fee is a step of quantity 1 at the fee, so every step reads the same way.
    """

    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Priced:
    """A usage charge priced for one quantity.

    - `billable_quantity`: the quantity after the included quantity is deducted (never below 0).
    - `amount`: exact and unrounded; it is rounded once, at the invoice line. It is always the
      exact sum of the breakdown's amounts.
    - `breakdown`: what was charged, in order. Empty when nothing was charged (billable 0).
    - `display_unit_price`: for display only, never for arithmetic. per_unit: the unit price;
      package: the price of one package; graduated and volume: amount / billable quantity
      (0 when the billable quantity is 0), to 28 significant digits.
    """

    billable_quantity: Decimal
    amount: Decimal
    breakdown: tuple[PricedStep, ...]
    display_unit_price: Decimal


def plain(value: Decimal) -> str:
    """A decimal as written, without exponent notation: 0.10 stays '0.10', 1E+2 becomes '100'."""
    return f"{value:f}"


def step(description: str, quantity: Decimal, unit_price: Decimal) -> PricedStep:
    with exact():
        amount = quantity * unit_price
    return PricedStep(description, quantity, unit_price, amount)


def flat_fee_step(tier_number: int, fee: Decimal) -> PricedStep:
    return step(f"flat fee tier {tier_number}", Decimal(1), fee)


def total(steps: Iterable[PricedStep]) -> Decimal:
    with exact():
        return sum((s.amount for s in steps), Decimal(0))
