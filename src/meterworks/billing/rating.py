"""Rating: a period's usage and a plan's charges turned into priced invoice lines. Pure.

Usage lines price the period's aggregate with the charge's pricing model (`billing.pricing`);
fixed lines prorate the charge over the part of the grid period served. Every line is rounded
once, half-up, to the currency's minor unit; the exact amount is kept beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from meterworks.billing.model import Line, LineType, fixed_ref, usage_ref
from meterworks.billing.pricing import price_usage
from meterworks.billing.proration import (
    DISPLAY_PLACES,
    days,
    fraction_text,
    micros,
    round_half_up,
    round_minor,
    share,
    to_decimal,
)
from meterworks.catalog.meters import Meter, quantity_unit
from meterworks.catalog.plans import FixedCharge, Plan, UsageCharge
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import format_instant
from meterworks.kit.money import to_minor
from meterworks.kit.periods import Period

ZERO = Decimal(0)


def unit_of(meter: Meter) -> str:
    return quantity_unit(meter)


def span_text(period: Period) -> str:
    return f"{format_instant(period.start)} – {format_instant(period.end)}"


@dataclass(frozen=True, slots=True)
class RatedUsage:
    """One usage charge rated for one period, before it becomes a line."""

    charge: UsageCharge
    meter: Meter
    quantity: Decimal  # the aggregate, as measured
    billed_quantity: Decimal  # what was priced (a negative level is billed as zero)
    exact_amount: Decimal
    amount_minor: int
    unit_price: Decimal
    details: dict[str, Any]


def rate_usage(charge: UsageCharge, meter: Meter, quantity: Decimal, currency: str) -> RatedUsage:
    billed = max(quantity, ZERO)
    priced = price_usage(charge, billed)
    details: dict[str, Any] = {
        "charge": charge.name,
        "model": str(charge.model),
        "meter": {
            "id": meter.id,
            "key": meter.key,
            "aggregation": meter.aggregation.value,
            "unit": unit_of(meter),
        },
        "quantity": format_decimal(quantity),
        "included_quantity": format_decimal(charge.included_quantity),
        "billable_quantity": format_decimal(priced.billable_quantity),
        "steps": [
            {
                "description": s.description,
                "quantity": format_decimal(s.quantity),
                "unit_price": format_decimal(s.unit_price),
                "amount": format_decimal(s.amount),
            }
            for s in priced.breakdown
        ],
        "exact_amount": format_decimal(priced.amount),
    }
    if quantity < 0:
        details["note"] = "the level was negative; billed as zero"
    return RatedUsage(
        charge=charge,
        meter=meter,
        quantity=quantity,
        billed_quantity=billed,
        exact_amount=priced.amount,
        amount_minor=to_minor(priced.amount, currency),
        unit_price=priced.display_unit_price,
        details=details,
    )


def rate_period_usage(
    plan: Plan, meters: dict[str, Meter], quantities: dict[str, Decimal]
) -> list[RatedUsage]:
    """Every usage charge of `plan`, in plan order, rated for the given meter quantities."""
    rated = []
    for charge in plan.usage_charges:
        meter = meters.get(charge.meter_id)
        if meter is None:
            continue
        quantity = quantities.get(charge.meter_id, ZERO)
        rated.append(rate_usage(charge, meter, quantity, plan.currency))
    return rated


def usage_line(rated: RatedUsage, service: Period) -> Line:
    return Line(
        type=LineType.USAGE,
        charge_ref=usage_ref(rated.meter.id),
        service=service,
        description=rated.charge.name,
        meter_id=rated.meter.id,
        quantity=rated.quantity,
        unit_price=rated.unit_price,
        exact_amount=rated.exact_amount,
        amount_minor=rated.amount_minor,
        details=rated.details,
    )


@dataclass(frozen=True, slots=True)
class RatedFixed:
    index: int
    charge: FixedCharge
    service: Period
    grid: Period
    ratio: Fraction
    exact: Fraction
    amount_minor: int

    @property
    def details(self) -> dict[str, Any]:
        return {
            "charge": self.charge.name,
            "amount": format_decimal(self.charge.amount),
            "service": {
                "start": format_instant(self.service.start),
                "end": format_instant(self.service.end),
            },
            "grid": {
                "start": format_instant(self.grid.start),
                "end": format_instant(self.grid.end),
            },
            "service_days": format_decimal(to_decimal(days(self.service), DISPLAY_PLACES)),
            "grid_days": format_decimal(to_decimal(days(self.grid), DISPLAY_PLACES)),
            "ratio": fraction_text(self.ratio),
            "exact_amount": fraction_text(self.exact),
        }


def rate_fixed(plan: Plan, service: Period, grid: Period) -> list[RatedFixed]:
    """The plan's fixed charges for `service`, a part (or all) of the grid period `grid`."""
    ratio = share(service, grid) if micros(service) < micros(grid) else Fraction(1)
    rated = []
    for index, charge in enumerate(plan.fixed_charges):
        exact = Fraction(charge.amount) * ratio
        rated.append(
            RatedFixed(
                index=index,
                charge=charge,
                service=service,
                grid=grid,
                ratio=ratio,
                exact=exact,
                amount_minor=round_minor(exact, plan.currency),
            )
        )
    return rated


def fixed_line(rated: RatedFixed) -> Line:
    description = rated.charge.name
    if rated.ratio != 1:
        description += (
            f" (prorated: {format_decimal(to_decimal(days(rated.service), DISPLAY_PLACES))} of "
            f"{format_decimal(to_decimal(days(rated.grid), DISPLAY_PLACES))} days)"
        )
    return Line(
        type=LineType.FIXED,
        charge_ref=fixed_ref(rated.index),
        service=rated.service,
        description=description,
        meter_id=None,
        quantity=to_decimal(rated.ratio, DISPLAY_PLACES),
        unit_price=rated.charge.amount,
        exact_amount=to_decimal(rated.exact),
        amount_minor=rated.amount_minor,
        details=rated.details,
    )


def tax_minor(subtotal_minor: int, tax_rate: Decimal | None) -> int:
    """Tax on the subtotal, a percentage, rounded once half-up to the minor unit."""
    if not tax_rate:
        return 0
    return round_half_up(Fraction(subtotal_minor) * Fraction(tax_rate) / 100)


def totals(lines: Iterable[Line], tax_rate: Decimal | None) -> tuple[int, int, int]:
    subtotal = sum(line.amount_minor for line in lines)
    tax = tax_minor(subtotal, tax_rate)
    return subtotal, tax, subtotal + tax
