"""Payments against finalized invoices: full or partial; an invoice is paid when fully paid."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from meterworks.billing import store
from meterworks.billing.model import Invoice, InvoiceStatus
from meterworks.db import tables as t
from meterworks.errors import Conflict, InvalidInput
from meterworks.kit.ids import new_id
from meterworks.kit.money import exponent, format_minor


def to_minor_exact(amount: Decimal, currency: str) -> int:
    """`amount` in minor units; an amount finer than the currency's minor unit is refused."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"amount has more decimals than {currency} allows ({exponent(currency)})",
            code="invalid_amount",
            details=[{"field": "amount", "message": "too many decimals for the currency"}],
        )
    return int(scaled)


def record_payment(
    conn: Connection,
    organization_id: str,
    invoice_id: str,
    *,
    amount: Decimal,
    paid_at: datetime,
    reference: str | None,
    now: datetime,
) -> tuple[Invoice, bool]:
    """Record a payment; (invoice, True) when recorded, (invoice, False) for a replay.

    A payment carrying a reference already recorded on this invoice is a replay when the amount
    is the same (nothing is recorded again) and a conflict otherwise.
    """
    invoice = store.get_invoice(conn, organization_id, invoice_id, for_update=True)
    minor = to_minor_exact(amount, invoice.currency)
    if reference is not None:
        p = t.payments.c
        held = conn.execute(
            select(p.amount_minor).where(
                p.organization_id == organization_id,
                p.invoice_id == invoice.id,
                p.reference == reference,
            )
        ).scalar()
        if held is not None:
            if held != minor:
                raise Conflict(
                    f"a payment with reference `{reference}` of another amount is already "
                    "recorded on this invoice",
                    code="payment_reference_conflict",
                )
            return invoice, False
    if minor <= 0:
        raise InvalidInput(
            "amount must be greater than zero",
            code="invalid_amount",
            details=[{"field": "amount", "message": "must be greater than zero"}],
        )
    if invoice.status is InvoiceStatus.DRAFT:
        raise Conflict("a draft cannot be paid; finalize it first", code="invoice_not_finalized")
    if invoice.status is InvoiceStatus.VOID:
        raise Conflict("the invoice is void", code="invoice_voided")
    if invoice.status is InvoiceStatus.PAID:
        raise Conflict("the invoice is already paid", code="invoice_paid")
    due = invoice.total_minor - invoice.paid_minor
    if minor > due:
        raise InvalidInput(
            f"amount exceeds the amount due ({format_minor(due, invoice.currency)})",
            code="payment_exceeds_amount_due",
            details=[
                {
                    "field": "amount",
                    "message": "must not exceed the amount due",
                    "amount_due": format_minor(due, invoice.currency),
                }
            ],
        )
    conn.execute(
        t.payments.insert().values(
            organization_id=organization_id,
            id=new_id("pay"),
            invoice_id=invoice.id,
            amount_minor=minor,
            paid_at=paid_at,
            reference=reference,
            created_at=now,
        )
    )
    paid = invoice.paid_minor + minor
    full = paid >= invoice.total_minor
    values: dict[str, object] = {"paid_minor": paid, "updated_at": now}
    if full:
        values.update(status=InvoiceStatus.PAID.value, paid_at=paid_at)
    store.update_invoice(conn, organization_id, invoice.id, **values)
    return store.get_invoice(conn, organization_id, invoice.id), True
