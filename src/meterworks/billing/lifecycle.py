"""The invoice lifecycle: draft → finalized → paid | void.

A draft is composed when its period closes and stays live (re-composed whenever it is read) for
the grace period; finalizing composes it one last time under the organization's ledger lock,
numbers it and fixes its issue and due dates. A voided invoice keeps its number.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from meterworks.billing import marks, store
from meterworks.billing.compose import Composer, Composition
from meterworks.billing.loader import Loader
from meterworks.billing.model import Invoice, InvoiceKind, InvoiceStatus
from meterworks.catalog.plans import Plan, get_plan
from meterworks.errors import Conflict
from meterworks.kit.ids import new_id
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription, get_subscription
from meterworks.usage.ledger import lock_sequence


def draft(
    conn: Connection,
    organization_id: str,
    sub: Subscription,
    plan: Plan,
    kind: InvoiceKind,
    period: Period,
    *,
    closes_at: datetime,
    now: datetime,
    invoice_id: str | None = None,
) -> str | None:
    """Draft the invoice of `kind` for `period`; None if it exists already (or has no line)."""
    invoice_id = invoice_id or new_id("inv")
    if kind is InvoiceKind.ADJUSTMENT:
        # It reads and may clear the late mark: under the ledger lock, like finalizing.
        lock_sequence(conn, organization_id)
    composition = Composer(Loader(conn, organization_id), sub, plan).compose(
        kind, period, before=(closes_at, invoice_id)
    )
    if kind is InvoiceKind.ADJUSTMENT and not composition.lines:
        # The late changes cancelled out: nothing to bill, nothing left to look at.
        marks.clear_mark(conn, organization_id, sub.id)
        return None
    inserted = store.insert_draft(
        conn,
        organization_id,
        invoice_id=invoice_id,
        subscription_id=sub.id,
        customer_id=sub.customer_id,
        kind=kind,
        period=composition.period,
        closes_at=closes_at,
        currency=plan.currency,
        lines=composition.lines,
        totals=(composition.subtotal_minor, composition.tax_minor, composition.total_minor),
        tax_rate=composition.tax_rate,
        now=now,
    )
    return invoice_id if inserted else None


def live(conn: Connection, organization_id: str, invoice: Invoice) -> Invoice:
    """A draft as it would be finalized now; other invoices as stored."""
    if invoice.status is not InvoiceStatus.DRAFT:
        return invoice
    composition = _compose(conn, organization_id, invoice)
    return _with(invoice, composition)


def _compose(conn: Connection, organization_id: str, invoice: Invoice) -> Composition:
    # Only drafts are composed, and an on-demand invoice is issued final, never drafted.
    assert invoice.subscription_id is not None
    sub = get_subscription(conn, organization_id, invoice.subscription_id)
    plan = get_plan(conn, organization_id, sub.plan_id)
    return Composer(Loader(conn, organization_id), sub, plan).compose(
        invoice.kind, invoice.period, before=invoice.order_key
    )


def _with(invoice: Invoice, composition: Composition) -> Invoice:
    return replace(
        invoice,
        period=composition.period,
        lines=composition.lines,
        subtotal_minor=composition.subtotal_minor,
        tax_minor=composition.tax_minor,
        total_minor=composition.total_minor,
        tax_rate=composition.tax_rate,
    )


def finalize(
    conn: Connection, organization_id: str, invoice_id: str, *, now: datetime, net_days: int
) -> Invoice | None:
    """Finalize a draft; an invoice past draft is answered as it is, a vanished one as None."""
    # The ledger lock: every write committed before it is counted here, every later one is
    # late usage (the writer's change hook sees this invoice finalized). Taken before the
    # invoice's row, in the order every finalizer locks in (see `batch.py`): no deadlock.
    watermark = lock_sequence(conn, organization_id)
    invoice = store.get_invoice(conn, organization_id, invoice_id, for_update=True)
    if invoice.status is not InvoiceStatus.DRAFT:
        return invoice
    assert invoice.subscription_id is not None  # an on-demand invoice is never a draft
    composition = _compose(conn, organization_id, invoice)
    if composition.settles_late_usage:
        marks.clear_mark(conn, organization_id, invoice.subscription_id)
    if invoice.kind is InvoiceKind.ADJUSTMENT and not composition.lines:
        store.delete_draft(conn, organization_id, invoice.id)
        return None
    store.write_lines(conn, organization_id, invoice.id, invoice.subscription_id, composition.lines)
    number = store.take_number(conn, organization_id)
    # Nothing to collect: a zero (or credit) invoice is settled as soon as it is issued.
    settled = composition.total_minor <= 0
    store.update_invoice(
        conn,
        organization_id,
        invoice.id,
        period_start=composition.period.start,
        period_end=composition.period.end,
        status=(InvoiceStatus.PAID if settled else InvoiceStatus.FINALIZED).value,
        number=number,
        subtotal_minor=composition.subtotal_minor,
        tax_minor=composition.tax_minor,
        total_minor=composition.total_minor,
        tax_rate=composition.tax_rate,
        ledger_watermark=watermark,
        issued_at=now,
        due_at=now + timedelta(days=net_days),
        paid_at=now if settled else None,
        updated_at=now,
    )
    return store.get_invoice(conn, organization_id, invoice.id)


def void(conn: Connection, organization_id: str, invoice_id: str, *, now: datetime) -> Invoice:
    """Void a finalized invoice; voiding a voided one changes nothing (safe to retry)."""
    invoice = store.get_invoice(conn, organization_id, invoice_id, for_update=True)
    if invoice.status is InvoiceStatus.VOID:
        return invoice
    if invoice.status is InvoiceStatus.DRAFT:
        raise Conflict(
            "a draft cannot be voided; it is finalized at the end of its grace period",
            code="invoice_not_finalized",
        )
    if invoice.status is InvoiceStatus.PAID:
        raise Conflict("a paid invoice cannot be voided", code="invoice_paid")
    if invoice.paid_minor > 0:
        raise Conflict(
            "the invoice has payments recorded and cannot be voided",
            code="invoice_has_payments",
        )
    store.update_invoice(
        conn,
        organization_id,
        invoice.id,
        status=InvoiceStatus.VOID.value,
        voided_at=now,
        updated_at=now,
    )
    return store.get_invoice(conn, organization_id, invoice.id)
