"""Composing an invoice: which lines it carries, from the ledger's rollups and earlier invoices.

- An **opening** invoice carries the first period's fixed charges, in advance.
- A **period** invoice for P carries P's usage (in arrears), the next period's fixed charges (in
  advance), a fixed-charge adjustment when P turned out shorter than what was billed in advance
  for it (a cancel inside P credits the unused days), and the late-usage adjustments of earlier,
  finalized periods.
- An **adjustment** invoice carries only late-usage adjustments (a subscription that has ended).

Adjustments compare what a period rates now with what earlier invoices billed for it (original
lines plus earlier adjustments), charge by charge, and bill the difference: whatever the history
of late events and corrections, the lines of one (period, charge) add up to its current rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from meterworks.billing import store
from meterworks.billing.loader import Loader
from meterworks.billing.model import InvoiceKind, Line, LineType, fixed_ref, usage_ref
from meterworks.billing.proration import DISPLAY_PLACES, to_decimal
from meterworks.billing.rating import (
    RatedFixed,
    fixed_line,
    rate_fixed,
    rate_period_usage,
    rate_usage,
    span_text,
    totals,
    usage_line,
)
from meterworks.catalog.plans import Plan
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import from_micros
from meterworks.kit.money import from_minor
from meterworks.kit.periods import Interval, Period, grid_period
from meterworks.subscriptions.service import Subscription

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Composition:
    period: Period
    lines: tuple[Line, ...]
    tax_rate: Decimal | None
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    # True when late-usage adjustments were considered (the late mark is then consumed).
    settles_late_usage: bool


@lru_cache(maxsize=4_096)
def _grid(anchor: datetime, interval: Interval, instant: datetime) -> Period:
    # Subscriptions of one run mostly share anchors and periods: computed once, not per invoice.
    return grid_period(anchor, interval, instant)


def grid_of(sub: Subscription, period: Period) -> Period:
    """The whole calendar period (not clipped to the subscription) that `period` lies in."""
    return _grid(sub.billing_anchor, sub.interval, period.start)


def period_at(sub: Subscription, instant: datetime) -> Period:
    """The subscription's period containing `instant`, which lies inside its window."""
    grid = _grid(sub.billing_anchor, sub.interval, instant)
    end = grid.end if sub.ends_at is None else min(grid.end, sub.ends_at)
    return Period(max(grid.start, sub.starts_at), end)


def first_period(sub: Subscription) -> Period | None:
    if sub.ends_at is not None and sub.ends_at <= sub.starts_at:
        return None
    return period_at(sub, sub.starts_at)


def next_period(sub: Subscription, period: Period) -> Period | None:
    if sub.ends_at is not None and period.end >= sub.ends_at:
        return None
    return period_at(sub, period.end)


class Composer:
    """Composes the invoices of one subscription, reading through a `Loader`."""

    def __init__(self, loader: Loader, sub: Subscription, plan: Plan) -> None:
        self.loader = loader
        self.sub = sub
        self.plan = plan
        self.meters = loader.meters(plan)

    def compose(
        self,
        kind: InvoiceKind,
        period: Period,
        *,
        before: tuple[datetime, str] | None,
        until: datetime | None = None,
    ) -> Composition:
        """The lines of an invoice ordered at `before` (None: after every existing invoice).

        `until` counts a running period's usage up to that instant (the preview); invoices of
        closed periods count the whole period.
        """
        lines: list[Line] = []
        settles = False
        if kind is InvoiceKind.OPENING:
            first = first_period(self.sub)
            if first is not None:
                period = first
                lines.extend(self.fixed_lines(first))
        elif kind is InvoiceKind.PERIOD:
            following = next_period(self.sub, period)
            if following is not None:
                lines.extend(self.fixed_lines(following))
            lines.extend(self.usage_lines(period, until or period.end))
            lines.extend(self.fixed_adjustments(period, before))
            if not self.loader.earlier_draft(self.sub.id, before):
                settles = True
                lines.extend(self.usage_adjustments(before, period.start))
        else:
            settles = True
            adjustments = self.usage_adjustments(before, None)
            lines.extend(adjustments)
            if adjustments:
                period = Period(
                    min(a.service.start for a in adjustments),
                    max(a.service.end for a in adjustments),
                )
        tax_rate = self.loader.tax_rate(self.sub.customer_id)
        subtotal, tax, total = totals(lines, tax_rate)
        return Composition(period, tuple(lines), tax_rate, subtotal, tax, total, settles)

    def rated_fixed(self, service: Period) -> list[RatedFixed]:
        grid = grid_of(self.sub, service)
        # Subscriptions on one plan share their fixed charges' rating for the same dates.
        key = ("fixed", self.plan.id, service, grid)
        found: list[RatedFixed] | None = self.loader.memo.get(key)
        if found is None:
            found = self.loader.memo[key] = rate_fixed(self.plan, service, grid)
        return found

    def fixed_lines(self, service: Period) -> list[Line]:
        key = ("fixed-lines", self.plan.id, service, grid_of(self.sub, service))
        found: list[Line] | None = self.loader.memo.get(key)
        if found is None:
            found = self.loader.memo[key] = [fixed_line(r) for r in self.rated_fixed(service)]
        return found

    def quantities(self, period: Period, until: datetime) -> dict[str, Decimal]:
        return self.loader.quantities(self.sub, period, until, list(self.meters.values()))

    def usage_lines(self, period: Period, until: datetime) -> list[Line]:
        """`rate_period_usage` as lines, each made once per unit of work: subscriptions often
        use the same quantity of a meter (none, a level), and the same charge, quantity and
        period make the same line. The key keeps the quantity's exponent (2 and 2.0 are stored
        differently)."""
        quantities = self.quantities(period, until)
        lines = []
        for index, charge in enumerate(self.plan.usage_charges):
            meter = self.meters.get(charge.meter_id)
            if meter is None:
                continue
            quantity = quantities.get(charge.meter_id, ZERO)
            key = ("usage-line", self.plan.id, index, period, quantity.as_tuple())
            line: Line | None = self.loader.memo.get(key)
            if line is None:
                rated = rate_usage(charge, meter, quantity, self.plan.currency)
                line = self.loader.memo[key] = usage_line(rated, period)
            lines.append(line)
        return lines

    def fixed_adjustments(self, period: Period, before: tuple[datetime, str] | None) -> list[Line]:
        """Reconcile what was billed in advance for `period` with what it now is."""
        if not self.plan.fixed_charges:
            return []
        billed = self.loader.billed(self.sub.id, {period.start}, before)
        currency = self.plan.currency
        lines = []
        for rated in self.rated_fixed(period):
            ref = fixed_ref(rated.index)
            held = billed.get((period.start, ref), store.Billed())
            difference = rated.amount_minor - held.amount_minor
            if difference == 0:
                continue
            name = rated.charge.name
            served = to_decimal(rated.ratio, DISPLAY_PLACES)
            description = (
                f"Credit for unused time: {name}, {span_text(Period(period.end, rated.grid.end))}"
                if difference < 0
                else f"{name}: not billed in advance for {span_text(period)}"
            )
            lines.append(
                Line(
                    type=LineType.FIXED_ADJUSTMENT,
                    charge_ref=ref,
                    service=period,
                    description=description,
                    meter_id=None,
                    quantity=served - held.quantity,
                    unit_price=rated.charge.amount,
                    exact_amount=from_minor(difference, currency),
                    amount_minor=difference,
                    details={
                        **rated.details,
                        "expected_minor": rated.amount_minor,
                        "billed_minor": held.amount_minor,
                        "billed_on": list(dict.fromkeys(held.invoice_ids)),
                    },
                )
            )
        return lines

    def usage_adjustments(
        self, before: tuple[datetime, str] | None, periods_before: datetime | None
    ) -> list[Line]:
        """Late-usage adjustments for the finalized periods the late mark reaches."""
        from_us = self.loader.late_from(self.sub.id)
        if from_us is None:
            return []
        adjusted = [
            invoice
            for invoice in self.loader.finalized_periods(self.sub.id, from_micros(from_us))
            if periods_before is None or invoice.period.start < periods_before
        ]
        if not adjusted:
            return []
        billed = self.loader.billed(
            self.sub.id, {invoice.period.start for invoice in adjusted}, before
        )
        currency = self.plan.currency
        lines = []
        for invoice in adjusted:
            period = invoice.period
            quantities = self.quantities(period, period.end)
            for rated in rate_period_usage(self.plan, self.meters, quantities):
                held = billed.get((period.start, usage_ref(rated.meter.id)), store.Billed())
                difference = rated.amount_minor - held.amount_minor
                delta = rated.quantity - held.quantity
                if difference == 0 and delta == 0:
                    continue
                lines.append(
                    Line(
                        type=LineType.USAGE_ADJUSTMENT,
                        charge_ref=usage_ref(rated.meter.id),
                        service=period,
                        description=f"Late usage adjustment: {rated.charge.name}, "
                        f"{span_text(period)}",
                        meter_id=rated.meter.id,
                        quantity=delta,
                        unit_price=rated.unit_price,
                        exact_amount=from_minor(difference, currency),
                        amount_minor=difference,
                        details={
                            "rated": rated.details,
                            "rated_minor": rated.amount_minor,
                            "billed_minor": held.amount_minor,
                            "billed_quantity": format_decimal(held.quantity),
                            "billed_on": list(dict.fromkeys(held.invoice_ids)),
                            "finalized_invoice_id": invoice.id,
                            "ledger_watermark": invoice.ledger_watermark,
                        },
                    )
                )
        return lines
