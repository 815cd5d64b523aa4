"""Invoices as documents: money in major units with the currency's digits ("262.00" USD,
"1500" JPY), quantities as exact decimal strings, instants in ISO-8601 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from meterworks.billing.compose import Composition
from meterworks.billing.model import Invoice, InvoiceKind, Line
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import format_instant
from meterworks.kit.money import format_minor
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription


def _instant(value: datetime | None) -> str | None:
    return None if value is None else format_instant(value)


def period_document(period: Period) -> dict[str, str]:
    return {"start": format_instant(period.start), "end": format_instant(period.end)}


def line_document(line: Line, currency: str) -> dict[str, Any]:
    meter = line.details.get("meter") or line.details.get("rated", {}).get("meter") or {}
    return {
        "type": line.type.value,
        "description": line.description,
        "charge": line.details.get("charge") or line.details.get("rated", {}).get("charge"),
        "meter": line.meter_id,
        "meter_key": meter.get("key"),
        "unit": meter.get("unit"),
        "period": period_document(line.service),
        "quantity": format_decimal(line.quantity),
        "unit_price": None if line.unit_price is None else format_decimal(line.unit_price),
        "amount": format_minor(line.amount_minor, currency),
    }


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    currency = invoice.currency
    return {
        "id": invoice.id,
        "number": invoice.number,
        "kind": invoice.kind.value,
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "period": period_document(invoice.period),
        "status": invoice.status.value,
        "currency": currency,
        "lines": [line_document(line, currency) for line in invoice.lines],
        "subtotal": format_minor(invoice.subtotal_minor, currency),
        "tax_rate": None if invoice.tax_rate is None else format_decimal(invoice.tax_rate),
        "tax": format_minor(invoice.tax_minor, currency),
        "total": format_minor(invoice.total_minor, currency),
        "amount_paid": format_minor(invoice.paid_minor, currency),
        "amount_due": format_minor(invoice.due_minor, currency),
        "closes_at": format_instant(invoice.closes_at),
        "issued_at": _instant(invoice.issued_at),
        "due_at": _instant(invoice.due_at),
        "paid_at": _instant(invoice.paid_at),
        "voided_at": _instant(invoice.voided_at),
        "created_at": format_instant(invoice.created_at),
        "payments": [
            {
                "id": p.id,
                "amount": format_minor(p.amount_minor, currency),
                "paid_at": format_instant(p.paid_at),
                "reference": p.reference,
            }
            for p in invoice.payments
        ],
    }


def preview_document(
    sub: Subscription, currency: str, composition: Composition, *, counted_until: datetime
) -> dict[str, Any]:
    """The current period as its invoice would read if it closed now (not an invoice yet)."""
    return {
        "id": None,
        "number": None,
        "kind": InvoiceKind.PERIOD.value,
        "customer_id": sub.customer_id,
        "subscription_id": sub.id,
        "period": period_document(composition.period),
        "status": "draft",
        "currency": currency,
        "lines": [line_document(line, currency) for line in composition.lines],
        "subtotal": format_minor(composition.subtotal_minor, currency),
        "tax_rate": None if composition.tax_rate is None else format_decimal(composition.tax_rate),
        "tax": format_minor(composition.tax_minor, currency),
        "total": format_minor(composition.total_minor, currency),
        "issued_at": None,
        "due_at": None,
        "counted_until": format_instant(counted_until),
    }
