"""Tier lists as graduated and volume pricing read them, and the invariants they must hold.

Tier bounds are cumulative upper bounds: tier i covers the quantities in (up_to[i-1], up_to[i]],
with up_to[0] taken as 0, and the last tier is unbounded (`up_to` None). These are the invariants
the catalog enforces when a plan is created; they are checked again here so that a malformed
tier list can never be priced by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from meterworks.billing.pricing.exact import require_non_negative, require_positive

if TYPE_CHECKING:
    # Type-only: the catalog module also holds database code, which pricing must not import.
    from meterworks.catalog.plans import Tier


def check_tiers(tiers: Sequence[Tier]) -> None:
    """Raise ValueError unless the tiers are non-empty, strictly increasing and end unbounded."""
    if not tiers:
        raise ValueError("a tiered charge needs at least one tier")
    previous = Decimal(0)
    for index, tier in enumerate(tiers):
        number = index + 1
        last = index == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise ValueError(f"tier {number}: only the last tier may be unbounded")
        else:
            if last:
                raise ValueError(f"tier {number}: the last tier must be unbounded")
            require_positive(f"tier {number} up_to", tier.up_to)
            if tier.up_to <= previous:
                raise ValueError(f"tier {number}: bounds must be strictly increasing")
            previous = tier.up_to
        require_non_negative(f"tier {number} unit_price", tier.unit_price)
        require_non_negative(f"tier {number} flat_fee", tier.flat_fee)


def covers(tier: Tier, quantity: Decimal) -> bool:
    """Whether `quantity` is at or below the tier's upper bound (always, for the unbounded tier)."""
    return tier.up_to is None or quantity <= tier.up_to
