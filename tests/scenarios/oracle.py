"""Recompute an invoice from the ledger alone, independently of the billing code.

It reads the raw `usage_events` rows (no running totals), resolves revisions and voids, aggregates
each meter over each line's period as the ledger stood when the invoice was finalized (its
watermark, from the public explain endpoint), prices with its own small pricing, prorates fixed
charges on its own calendar grid, re-derives adjustments from the earlier invoices, and asserts
that every line, the subtotal, the tax and the total agree to the minor unit.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

from sqlalchemy import text

from meterworks.kit.instants import parse_instant
from tests.scenarios.story import Story, ok

EXPONENTS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
DAY_US = 86_400_000_000
UNIT_DAYS_PLACES = Decimal("1e-12")


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, 2)


def half_up(value: Fraction, places: int) -> int:
    scaled = abs(value) * 10**places
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    whole += 1 if 2 * rest >= scaled.denominator else 0
    return whole if value >= 0 else -whole


def minor(text_amount: str, currency: str) -> int:
    return int(Decimal(text_amount).scaleb(exponent(currency)))


def us(value: datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


# -- calendar grid ----------------------------------------------------------------------------


def add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(total, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def grid(anchor: datetime, interval: str, instant: datetime) -> tuple[datetime, datetime]:
    step = {"month": 1, "quarter": 3, "year": 12}[interval]
    k = 0
    while add_months(anchor, k * step) > instant:
        k -= 1
    while add_months(anchor, (k + 1) * step) <= instant:
        k += 1
    return add_months(anchor, k * step), add_months(anchor, (k + 1) * step)


# -- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    ts_us: int
    order: int
    operation: str
    quantity: Decimal
    properties: dict[str, Any] | None


def live_entries(
    story: Story, subscription_id: str, meter_id: str, below_seq: int | None
) -> list[Live]:
    with story.server.db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, idempotency_key, revision, kind, ts_us, operation, quantity, "
                "properties FROM usage_events WHERE organization_id = :org "
                "AND subscription_id = :sub AND meter_id = :meter"
            ),
            {"org": story.org.id, "sub": subscription_id, "meter": meter_id},
        ).all()
    keys: dict[str, list[Any]] = {}
    for row in rows:
        if below_seq is None or row.seq < below_seq:
            keys.setdefault(row.idempotency_key, []).append(row)
    found = []
    for revisions in keys.values():
        revisions.sort(key=lambda r: r.revision)
        latest = revisions[-1]
        if latest.kind == "void":
            continue
        properties = latest.properties
        if isinstance(properties, str):
            properties = json.loads(properties)
        quantity = Decimal(str(latest.quantity))
        found.append(Live(latest.ts_us, revisions[0].seq, latest.operation, quantity, properties))
    return sorted(found, key=lambda e: (e.ts_us, e.order))


def aggregate(entries: list[Live], meter: dict[str, Any], start: int, end: int) -> Decimal:
    kind = meter["aggregation"]
    inside = [e for e in entries if start <= e.ts_us < end]
    if kind == "sum":
        return sum((e.quantity for e in inside if e.operation == "add"), Decimal(0))
    if kind == "count":
        return Decimal(len(inside))
    if kind == "unique_count":
        values = {str((e.properties or {}).get(meter["property"])) for e in inside}
        return Decimal(len(values))
    level = Decimal(0)
    for e in entries:
        if e.ts_us >= start:
            break
        level = e.quantity if e.operation == "set" else level + e.quantity
    highest, integral, since = level, Fraction(0), start
    for e in inside:
        integral += Fraction(level) * (e.ts_us - since)
        level = e.quantity if e.operation == "set" else level + e.quantity
        highest, since = max(highest, level), e.ts_us
    integral += Fraction(level) * (end - since)
    if kind == "max":
        return highest
    if kind == "latest":
        return level
    with localcontext() as ctx:
        ctx.prec = 60
        days = integral / DAY_US
        value = Decimal(days.numerator) / Decimal(days.denominator)
        return value.quantize(UNIT_DAYS_PLACES, rounding=ROUND_HALF_UP)


# -- pricing ----------------------------------------------------------------------------------


def price(charge: dict[str, Any], quantity: Decimal) -> Decimal:
    billable = max(Decimal(0), max(quantity, Decimal(0)) - Decimal(charge["included_quantity"]))
    model = charge["model"]
    if billable == 0:
        return Decimal(0)
    if model == "per_unit":
        return billable * Decimal(charge["unit_price"])
    if model == "package":
        packages = (billable / Decimal(charge["package_size"])).to_integral_value(ROUND_CEILING)
        return packages * Decimal(charge["unit_price"])
    tiers = charge["tiers"]
    if model == "volume":
        for tier in tiers:
            if tier["up_to"] is None or billable <= Decimal(tier["up_to"]):
                return billable * Decimal(tier["unit_price"]) + Decimal(tier["flat_fee"])
    amount, lower = Decimal(0), Decimal(0)
    for tier in tiers:
        upper = None if tier["up_to"] is None else Decimal(tier["up_to"])
        if billable <= lower:
            break
        inside = billable - lower if upper is None else min(billable, upper) - lower
        amount += inside * Decimal(tier["unit_price"]) + Decimal(tier["flat_fee"])
        if upper is None:
            break
        lower = upper
    return amount


# -- the check --------------------------------------------------------------------------------


def check_invoice(story: Story, invoice: dict[str, Any]) -> None:
    """Assert that `invoice` (as the API answers it) is exactly what the ledger says."""
    client = story.client
    sub = ok(client.get(f"/v1/subscriptions/{invoice['subscription_id']}"))
    plan = ok(client.get(f"/v1/plans/{sub['plan_id']}"))
    customer = ok(client.get(f"/v1/customers/{invoice['customer_id']}"))
    currency = plan["currency"]
    places = exponent(currency)
    explained = ok(client.get(f"/v1/invoices/{invoice['id']}/explain"))
    watermark = explained["ledger_watermark"]
    anchor = parse_instant(sub["billing_anchor"])
    meters = {m["id"]: m for m in ok(client.get("/v1/meters"))["data"]}
    usage_charges = {c["meter"]: c for c in plan["charges"] if c["type"] == "usage"}
    fixed = [c for c in plan["charges"] if c["type"] == "fixed"]
    earlier = [
        i
        for i in story.invoices(invoice["subscription_id"])
        if (i["closes_at"], i["id"]) < (invoice["closes_at"], invoice["id"])
    ]

    def billed_before(period: dict[str, str], types: set[str], field: str, value: str) -> int:
        """What earlier invoices billed for this period and charge, in minor units."""
        return sum(
            minor(line["amount"], currency)
            for other in earlier
            for line in other["lines"]
            if line["period"]["start"] == period["start"]
            and line["type"] in types
            and line[field] == value
        )

    def rated(meter_id: str, period: dict[str, str]) -> tuple[Decimal, int]:
        start, end = us(parse_instant(period["start"])), us(parse_instant(period["end"]))
        entries = live_entries(story, invoice["subscription_id"], meter_id, watermark)
        quantity = aggregate(entries, meters[meter_id], start, end)
        amount = price(usage_charges[meter_id], quantity)
        return quantity, half_up(Fraction(amount), places)

    def fixed_minor(index: int, period: dict[str, str]) -> int:
        start, end = parse_instant(period["start"]), parse_instant(period["end"])
        g_start, g_end = grid(anchor, plan["interval"], start)
        ratio = Fraction(us(end) - us(start), us(g_end) - us(g_start))
        return half_up(Fraction(Decimal(fixed[index]["amount"])) * ratio, places)

    subtotal = 0
    for line in invoice["lines"]:
        amount = minor(line["amount"], currency)
        subtotal += amount
        kind = line["type"]
        if kind == "usage":
            quantity, expected = rated(line["meter"], line["period"])
            assert Decimal(line["quantity"]) == quantity, (line, quantity)
            assert amount == expected, (line, expected)
        elif kind == "usage_adjustment":
            _, now_rated = rated(line["meter"], line["period"])
            before = billed_before(
                line["period"], {"usage", "usage_adjustment"}, "meter", line["meter"]
            )
            assert amount == now_rated - before, (line, now_rated, before)
        else:
            index = next(i for i, c in enumerate(fixed) if c["name"] == line["charge"])
            expected = fixed_minor(index, line["period"])
            if kind == "fixed_adjustment":
                expected -= billed_before(
                    line["period"], {"fixed", "fixed_adjustment"}, "charge", line["charge"]
                )
            assert amount == expected, (line, expected)
    rate = customer["tax_rate"]
    tax = half_up(Fraction(subtotal) * Fraction(Decimal(rate)) / 100, 0) if rate else 0
    assert minor(invoice["subtotal"], currency) == subtotal
    assert minor(invoice["tax"], currency) == tax
    assert minor(invoice["total"], currency) == subtotal + tax
    for usage in explained["lines"]:
        if "ledger" in usage and usage["type"] == "usage":
            assert usage["ledger"]["matches_line"], usage


def check_all(story: Story, subscription_id: str) -> list[dict[str, Any]]:
    """Check every invoice of the subscription; answer them in billing order."""
    found = story.invoices(subscription_id)
    for invoice in found:
        check_invoice(story, invoice)
    return found
