"""Pricing: what one usage charge costs for one aggregated quantity, exact and explained.

Pure functions: no I/O, no clock, no database imports, so they can be tested by the thousand.
`price_usage` deducts the charge's included quantity, then hands the billable quantity to the
charge's pricing model, one small module each: `per_unit`, `graduated`, `volume`, `package`.

Included quantity comes off first: billable = max(0, quantity − included), and tiers and packages
apply to the billable quantity. Example: 50 included, per unit at 2.00, 30 used → billable 0 →
amount 0; 80 used → billable 30 → 60.00.

Amounts are exact Decimals, never rounded here: rounding happens once, at the invoice line
(`kit.money.round_half_up`). Negative quantities are a caller bug and raise ValueError, as does a
charge whose configuration its model cannot price (for instance a package charge without a size).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from meterworks.billing.pricing.exact import exact, require_non_negative
from meterworks.billing.pricing.graduated import price_graduated
from meterworks.billing.pricing.package import price_package
from meterworks.billing.pricing.per_unit import price_per_unit
from meterworks.billing.pricing.priced import Priced, PricedStep
from meterworks.billing.pricing.volume import price_volume

if TYPE_CHECKING:
    # Type-only: the catalog module also holds database code, which pricing must not import.
    # Models are matched by their string value, which PricingModel (a StrEnum) equals.
    from meterworks.catalog.plans import UsageCharge

__all__ = ["Priced", "PricedStep", "price_usage"]


def _required(charge: UsageCharge, field: str, value: Decimal | None) -> Decimal:
    if value is None:
        raise ValueError(f"a {charge.model} charge needs a {field} (charge `{charge.name}`)")
    return value


def _per_unit(charge: UsageCharge, billable: Decimal) -> Priced:
    return price_per_unit(billable, _required(charge, "unit_price", charge.unit_price))


def _graduated(charge: UsageCharge, billable: Decimal) -> Priced:
    return price_graduated(billable, charge.tiers)


def _volume(charge: UsageCharge, billable: Decimal) -> Priced:
    return price_volume(billable, charge.tiers)


def _package(charge: UsageCharge, billable: Decimal) -> Priced:
    return price_package(
        billable,
        _required(charge, "package_size", charge.package_size),
        _required(charge, "unit_price", charge.unit_price),
    )


_MODELS: dict[str, Callable[[UsageCharge, Decimal], Priced]] = {
    "per_unit": _per_unit,
    "graduated": _graduated,
    "volume": _volume,
    "package": _package,
}


def price_usage(charge: UsageCharge, quantity: Decimal) -> Priced:
    """Price `quantity` (the meter's aggregate for the period, ≥ 0) under `charge`."""
    require_non_negative("quantity", quantity)
    included = require_non_negative("included_quantity", charge.included_quantity)
    model = _MODELS.get(charge.model)
    if model is None:
        raise ValueError(f"unknown pricing model `{charge.model}`")
    with exact():
        billable = max(Decimal(0), quantity - included)
    return model(charge, billable)
