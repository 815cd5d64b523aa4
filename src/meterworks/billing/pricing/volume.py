"""Volume tiers: the whole quantity at the rate of the one tier it reaches, plus that tier's fee.

The tier reached is the first whose upper bound is at or above the quantity (the last tier is
unbounded). Bounds are cumulative as in graduated pricing, so a quantity exactly on a bound stays
in the lower tier.

Worked examples, tiers [up to 100 at 0.10, up to 1000 at 0.08, beyond at 0.05]:

    1500 units → tier 3: 1500 × 0.05 = 75.00
     100 units → tier 1:  100 × 0.10 = 10.00
     101 units → tier 2:  101 × 0.08 =  8.08   (more usage can cost less: that is volume pricing)

A billable quantity of 0 is charged nothing, not the first tier's flat fee: no usage, no charge.
A plan that wants a minimum for zero usage should say so with a fixed charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from meterworks.billing.pricing.exact import average, require_non_negative
from meterworks.billing.pricing.priced import Priced, PricedStep, flat_fee_step, plain, step, total
from meterworks.billing.pricing.tiers import check_tiers, covers

if TYPE_CHECKING:
    from meterworks.catalog.plans import Tier


def price_volume(quantity: Decimal, tiers: Sequence[Tier]) -> Priced:
    """Price a billable `quantity` (included quantity already deducted) at its volume tier."""
    require_non_negative("quantity", quantity)
    check_tiers(tiers)
    if quantity == 0:
        return Priced(quantity, Decimal(0), (), Decimal(0))
    # check_tiers guarantees an unbounded last tier, so some tier always covers the quantity.
    number, tier = next((n, t) for n, t in enumerate(tiers, start=1) if covers(t, quantity))
    steps: list[PricedStep] = [
        step(
            f"tier {number}: {plain(quantity)} × {plain(tier.unit_price)}",
            quantity,
            tier.unit_price,
        )
    ]
    if tier.flat_fee != 0:
        steps.append(flat_fee_step(number, tier.flat_fee))
    amount = total(steps)
    return Priced(quantity, amount, tuple(steps), average(amount, quantity))
