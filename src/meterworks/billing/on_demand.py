"""On-demand invoices: lines priced by the caller, for a customer, outside any subscription.

Such an invoice is issued final at once, numbered in the organization's one gapless sequence.
Per line: gross = quantity × unit price; the discounts (percentages of the gross, or absolute
amounts) come off it, giving the line's net; the taxes (percentages of the net, or absolute
amounts) are added on top. Everything is exact until each line's net and tax are rounded, once
each, half-up to the currency's minor unit; the invoice's subtotal is the sum of the nets, its
tax the sum of the line taxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from meterworks.billing import store
from meterworks.billing.model import Invoice, InvoiceKind, InvoiceStatus, Line, LineType
from meterworks.customers.service import get_customer
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import format_decimal
from meterworks.kit.ids import new_id
from meterworks.kit.money import CURRENCIES, format_minor, to_minor
from meterworks.kit.periods import Period

MAX_LINES = 500
MAX_ADJUSTMENTS = 20
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A tax or a discount on one line: a percentage, or an amount in major units."""

    description: str
    value: Decimal
    is_percentage: bool

    def of(self, base: Decimal) -> Decimal:
        return base * self.value / HUNDRED if self.is_percentage else self.value

    def text(self, currency: str) -> str:
        if self.is_percentage:
            return f"{format_decimal(self.value)}%"
        return f"{format_decimal(self.value)} {currency}"


@dataclass(frozen=True, slots=True)
class Item:
    description: str
    quantity: Decimal
    unit_price: Decimal
    taxes: tuple[Adjustment, ...] = ()
    discounts: tuple[Adjustment, ...] = ()
    # The caller's product, kept on the line (Saaslogic groups line items by product).
    product_id: str | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    line: Line
    discount_minor: int
    tax_minor: int


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append({"field": field, "code": code, "message": message})


def _check(currency: str, items: Sequence[Item], problems: _Problems) -> None:
    if currency not in CURRENCIES:
        problems.add("currency", "invalid_currency", "must be an ISO 4217 currency code")
    if not items:
        problems.add("lines", "missing_field", "at least one line is required")
    if len(items) > MAX_LINES:
        problems.add("lines", "too_many_lines", f"at most {MAX_LINES} lines")
    for index, item in enumerate(items):
        at = f"lines[{index}]"
        if not item.description.strip() or len(item.description) > 500:
            problems.add(f"{at}.description", "invalid_description", "1 to 500 characters")
        if not item.quantity.is_finite() or item.quantity < 0:
            problems.add(f"{at}.quantity", "invalid_quantity", "must be zero or more")
        if not item.unit_price.is_finite() or item.unit_price < 0:
            problems.add(f"{at}.unit_price", "invalid_unit_price", "must be zero or more")
        for kind, adjustments in (("taxes", item.taxes), ("discounts", item.discounts)):
            if len(adjustments) > MAX_ADJUSTMENTS:
                problems.add(f"{at}.{kind}", "too_many_adjustments", f"at most {MAX_ADJUSTMENTS}")
            for k, adjustment in enumerate(adjustments):
                value = adjustment.value
                if not value.is_finite() or value < 0:
                    problems.add(f"{at}.{kind}[{k}].value", "invalid_value", "must be zero or more")
                elif kind == "discounts" and adjustment.is_percentage and value > HUNDRED:
                    problems.add(f"{at}.{kind}[{k}].value", "invalid_value", "at most 100 %")


def price(item: Item, index: int, currency: str, service: Period) -> Priced:
    """One line, rounded once per figure (net, tax), half-up; its arithmetic kept beside it."""
    gross = item.quantity * item.unit_price
    discount = sum((d.of(gross) for d in item.discounts), Decimal(0))
    net = gross - discount
    if net < 0:
        raise InvalidInput(
            "the discounts exceed the line's amount",
            code="discount_exceeds_amount",
            details=[
                {
                    "field": f"lines[{index}].discounts",
                    "code": "discount_exceeds_amount",
                    "message": "the discounts exceed the line's amount",
                }
            ],
        )
    tax = sum((x.of(net) for x in item.taxes), Decimal(0))
    net_minor, tax_minor = to_minor(net, currency), to_minor(tax, currency)
    arithmetic = [
        f"{format_decimal(item.quantity)} × {format_decimal(item.unit_price)} = "
        f"{format_decimal(gross)}",
        *(
            f"discount {d.description or ''} {d.text(currency)} = −{format_decimal(d.of(gross))}"
            for d in item.discounts
        ),
        f"net {format_decimal(net)} → {format_minor(net_minor, currency)} (rounded half-up)",
        *(
            f"tax {x.description or ''} {x.text(currency)} = {format_decimal(x.of(net))}"
            for x in item.taxes
        ),
        f"tax {format_decimal(tax)} → {format_minor(tax_minor, currency)} (rounded half-up)",
    ]
    details: dict[str, Any] = {
        "product_id": item.product_id,
        "gross": format_decimal(gross),
        "discount": format_decimal(discount),
        "discount_minor": to_minor(discount, currency),
        "tax": format_decimal(tax),
        "tax_minor": tax_minor,
        "discounts": [_adjustment(d) for d in item.discounts],
        "taxes": [_adjustment(x) for x in item.taxes],
        "arithmetic": arithmetic,
    }
    line = Line(
        type=LineType.ITEM,
        charge_ref=f"item/{index + 1}",
        service=service,
        description=item.description.strip(),
        meter_id=None,
        quantity=item.quantity,
        unit_price=item.unit_price,
        exact_amount=net,
        amount_minor=net_minor,
        details=details,
    )
    return Priced(line, to_minor(discount, currency), tax_minor)


def _adjustment(a: Adjustment) -> dict[str, Any]:
    return {
        "description": a.description,
        "value": format_decimal(a.value),
        "is_percentage": a.is_percentage,
    }


def issue_on_demand(
    conn: Connection,
    organization_id: str,
    *,
    customer_id: str,
    currency: str,
    items: Sequence[Item],
    now: datetime,
    net_days: int,
) -> Invoice:
    """Issue a finalized invoice of these lines to the customer; refused whole if any is wrong."""
    currency = currency.strip().upper()
    problems = _Problems()
    _check(currency, items, problems)
    if problems.items:
        raise InvalidInput(
            f"{len(problems.items)} problem(s) in the invoice; nothing was issued",
            details=problems.items,
        )
    customer = get_customer(conn, organization_id, customer_id)
    # An on-demand invoice bills no period: its service period is the instant it is issued.
    service = Period(now, now)
    priced = [price(item, i, currency, service) for i, item in enumerate(items)]
    subtotal = sum(p.line.amount_minor for p in priced)
    tax = sum(p.tax_minor for p in priced)
    total = subtotal + tax
    invoice_id = new_id("inv")
    # Nothing to collect: settled as soon as it is issued, as a finalized zero invoice is.
    settled = total <= 0
    store.insert_issued(
        conn,
        organization_id,
        invoice_id=invoice_id,
        customer_id=customer.id,
        kind=InvoiceKind.ON_DEMAND,
        period=service,
        currency=currency,
        lines=[p.line for p in priced],
        totals=(subtotal, tax, total),
        status=InvoiceStatus.PAID if settled else InvoiceStatus.FINALIZED,
        number=store.take_number(conn, organization_id),
        now=now,
        due_at=now + timedelta(days=net_days),
    )
    return store.get_invoice(conn, organization_id, invoice_id)


def discount_minor(invoice: Invoice) -> int:
    """The discounts an on-demand invoice granted (0 for other invoices)."""
    return sum(int(line.details.get("discount_minor", 0)) for line in invoice.lines)
