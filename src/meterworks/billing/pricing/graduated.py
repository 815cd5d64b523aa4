"""Graduated tiers: each tier prices the part of the quantity that falls inside it, at its own rate.

Tier bounds are cumulative: tier i covers (up_to[i-1], up_to[i]], the first starting at 0 and the
last unbounded. A tier's flat fee is charged once if any quantity falls inside it, that is if the
quantity is above the tier's lower bound. With a billable quantity of 0 no tier is entered, so
nothing is charged, flat fees included.

Worked example, tiers [up to 100 at 0.10, up to 1000 at 0.08, beyond at 0.05], 1500 units:

    tier 1: 100 × 0.10 = 10.00    (units 0–100)
    tier 2: 900 × 0.08 = 72.00    (units 100–1000)
    tier 3: 500 × 0.05 = 25.00    (units 1000–1500)
                        = 107.00

With a flat fee of 5 on tier 2 and quantity 100.5, tiers 1 and 2 are entered:
100 × 0.10 + 0.5 × 0.08 + 5 = 10.00 + 0.040 + 5 = 15.040. At exactly 100, tier 2 is not entered.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from meterworks.billing.pricing.exact import average, exact, require_non_negative
from meterworks.billing.pricing.priced import Priced, PricedStep, flat_fee_step, plain, step, total
from meterworks.billing.pricing.tiers import check_tiers

if TYPE_CHECKING:
    from meterworks.catalog.plans import Tier


def price_graduated(quantity: Decimal, tiers: Sequence[Tier]) -> Priced:
    """Price a billable `quantity` (included quantity already deducted) across graduated tiers."""
    require_non_negative("quantity", quantity)
    check_tiers(tiers)
    steps: list[PricedStep] = []
    lower = Decimal(0)
    for number, tier in enumerate(tiers, start=1):
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        with exact():
            inside = upper - lower
        steps.append(
            step(
                f"tier {number}: {plain(inside)} × {plain(tier.unit_price)}",
                inside,
                tier.unit_price,
            )
        )
        if tier.flat_fee != 0:
            steps.append(flat_fee_step(number, tier.flat_fee))
        if tier.up_to is None:
            break
        lower = tier.up_to
    amount = total(steps)
    return Priced(quantity, amount, tuple(steps), average(amount, quantity))
