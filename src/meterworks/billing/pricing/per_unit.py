"""Per-unit pricing: every billable unit at the same price.

    amount = billable quantity × unit price

Worked example: 30 API calls at 2.00 → 30 × 2.00 = 60.00; a Salesbricks gauge of 113 unit-days at
2 → 226. Quantities may be fractional (113.5 unit-days × 2 = 227.0); nothing is rounded here.
With no billable quantity nothing is charged: amount 0 and an empty breakdown.
"""

from __future__ import annotations

from decimal import Decimal

from meterworks.billing.pricing.exact import require_non_negative
from meterworks.billing.pricing.priced import Priced, plain, step, total


def price_per_unit(quantity: Decimal, unit_price: Decimal) -> Priced:
    """Price a billable `quantity` (included quantity already deducted) at `unit_price` each."""
    require_non_negative("quantity", quantity)
    require_non_negative("unit_price", unit_price)
    steps = (
        ()
        if quantity == 0
        else (step(f"{plain(quantity)} × {plain(unit_price)}", quantity, unit_price),)
    )
    return Priced(quantity, total(steps), steps, unit_price)
