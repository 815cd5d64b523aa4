"""Invoice rows: reading, writing and the per-organization sequence of invoice numbers.

Only this module and `marks.py` touch the billing tables; the use cases (drafting, finalizing,
payments, views) go through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.engine import Connection, Row

from meterworks.billing.model import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Line,
    LineType,
    Payment,
)
from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore
from meterworks.errors import NotFound
from meterworks.kit.periods import Period

# Bound on bound parameters per IN list.
CHUNK = 1_000
INV = t.invoices.c
L = t.invoice_lines.c


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _line(row: Row[Any]) -> Line:
    return Line(
        type=LineType(row.type),
        charge_ref=row.charge_ref,
        service=Period(row.service_start, row.service_end),
        description=row.description,
        meter_id=row.meter_id,
        quantity=row.quantity,
        unit_price=row.unit_price,
        exact_amount=row.exact_amount,
        amount_minor=row.amount_minor,
        details=dict(row.details or {}),
    )


def _invoice(row: Row[Any], lines: Sequence[Line], payments: Sequence[Payment] = ()) -> Invoice:
    return Invoice(
        id=row.id,
        subscription_id=row.subscription_id,
        customer_id=row.customer_id,
        kind=InvoiceKind(row.kind),
        period=Period(row.period_start, row.period_end),
        closes_at=row.closes_at,
        status=InvoiceStatus(row.status),
        currency=row.currency,
        number=row.number,
        lines=tuple(lines),
        subtotal_minor=row.subtotal_minor,
        tax_minor=row.tax_minor,
        total_minor=row.total_minor,
        tax_rate=row.tax_rate,
        paid_minor=row.paid_minor,
        ledger_watermark=row.ledger_watermark,
        issued_at=row.issued_at,
        due_at=row.due_at,
        paid_at=row.paid_at,
        voided_at=row.voided_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        payments=tuple(payments),
    )


def _lines_of(conn: Connection, organization_id: str, ids: Sequence[str]) -> dict[str, list[Line]]:
    found: dict[str, list[Line]] = {i: [] for i in ids}
    for part in chunks(list(ids)):
        for row in conn.execute(
            select(t.invoice_lines)
            .where(L.organization_id == organization_id, L.invoice_id.in_(part))
            .order_by(L.invoice_id, L.position)
        ):
            found[row.invoice_id].append(_line(row))
    return found


def payments_of(conn: Connection, organization_id: str, invoice_id: str) -> list[Payment]:
    p = t.payments.c
    rows = conn.execute(
        select(t.payments)
        .where(p.organization_id == organization_id, p.invoice_id == invoice_id)
        .order_by(p.paid_at, p.id)
    )
    return [Payment(r.id, r.amount_minor, r.paid_at, r.reference, r.created_at) for r in rows]


def get_invoice(
    conn: Connection, organization_id: str, invoice_id: str, *, for_update: bool = False
) -> Invoice:
    query = select(t.invoices).where(INV.organization_id == organization_id, INV.id == invoice_id)
    if for_update:
        # Serialises the lifecycle changes of one invoice (finalize, void, payments).
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"invoice `{invoice_id}` not found", code="invoice_not_found")
    lines = _lines_of(conn, organization_id, [row.id])[row.id]
    return _invoice(row, lines, payments_of(conn, organization_id, row.id))


def find_invoice_anywhere(conn: Connection, invoice_id: str) -> str:
    """The organization owning `invoice_id` (operator tools, which act for every organization)."""
    found = conn.execute(select(INV.organization_id).where(INV.id == invoice_id)).scalar()
    if found is None:
        raise NotFound(f"invoice `{invoice_id}` not found", code="invoice_not_found")
    return str(found)


def list_invoices(
    conn: Connection,
    organization_id: str,
    *,
    customer_id: str | None = None,
    subscription_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[Invoice]:
    query = select(t.invoices).where(INV.organization_id == organization_id)
    if customer_id is not None:
        query = query.where(INV.customer_id == customer_id)
    if subscription_id is not None:
        query = query.where(INV.subscription_id == subscription_id)
    if status is not None:
        query = query.where(INV.status == status)
    if after is not None:
        # Billing order (closes_at, id), resumed after the last invoice of the previous page.
        cursor = conn.execute(
            select(INV.closes_at).where(INV.organization_id == organization_id, INV.id == after)
        ).scalar()
        if cursor is None:
            return []
        query = query.where(
            or_(INV.closes_at > cursor, and_(INV.closes_at == cursor, INV.id > after))
        )
    rows = conn.execute(query.order_by(INV.closes_at, INV.id).limit(limit)).all()
    lines = _lines_of(conn, organization_id, [r.id for r in rows])
    return [_invoice(r, lines[r.id]) for r in rows]


def invoices_of_subscription(
    conn: Connection, organization_id: str, subscription_id: str
) -> list[Invoice]:
    """Every invoice of one subscription, headers only, in billing order."""
    rows = conn.execute(
        select(t.invoices)
        .where(INV.organization_id == organization_id, INV.subscription_id == subscription_id)
        .order_by(INV.closes_at, INV.id)
    ).all()
    return [_invoice(r, ()) for r in rows]


@dataclass(frozen=True, slots=True)
class Billed:
    """What earlier invoices billed for one (service period, charge): amount and quantity."""

    amount_minor: int = 0
    quantity: Decimal = Decimal(0)
    invoice_ids: tuple[str, ...] = ()


def billed_for(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    service_starts: set[datetime],
    before: tuple[datetime, str] | None,
) -> dict[tuple[datetime, str], Billed]:
    """Per (service start, charge ref): the sum of lines on the subscription's invoices ordered
    before `before` (all its invoices when None), voided ones included: a voided invoice's
    charges are forgiven, not billed again."""
    if not service_starts:
        return {}
    query = (
        select(L.service_start, L.charge_ref, L.type, L.quantity, L.amount_minor, L.invoice_id)
        .select_from(
            t.invoice_lines.join(
                t.invoices,
                and_(INV.organization_id == L.organization_id, INV.id == L.invoice_id),
            )
        )
        .where(
            L.organization_id == organization_id,
            L.subscription_id == subscription_id,
            L.service_start.in_(sorted(service_starts)),
        )
    )
    if before is not None:
        closes_at, invoice_id = before
        query = query.where(
            or_(INV.closes_at < closes_at, and_(INV.closes_at == closes_at, INV.id < invoice_id))
        )
    found: dict[tuple[datetime, str], Billed] = {}
    for row in conn.execute(query):
        key = (row.service_start, row.charge_ref)
        held = found.get(key, Billed())
        found[key] = Billed(
            held.amount_minor + row.amount_minor,
            held.quantity + row.quantity,
            (*held.invoice_ids, row.invoice_id),
        )
    return found


def earlier_draft_exists(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    before: tuple[datetime, str] | None,
) -> bool:
    """Is a draft that carries usage (period or adjustment) ordered before `before`?"""
    query = select(INV.id).where(
        INV.organization_id == organization_id,
        INV.subscription_id == subscription_id,
        INV.status == InvoiceStatus.DRAFT.value,
        INV.kind.in_([InvoiceKind.PERIOD.value, InvoiceKind.ADJUSTMENT.value]),
    )
    if before is not None:
        closes_at, invoice_id = before
        query = query.where(
            or_(INV.closes_at < closes_at, and_(INV.closes_at == closes_at, INV.id < invoice_id))
        )
    return conn.execute(query.limit(1)).first() is not None


def finalized_periods(
    conn: Connection, organization_id: str, subscription_id: str, ending_after: datetime
) -> list[Invoice]:
    """Period invoices past draft whose period ends after `ending_after`, oldest first."""
    rows = conn.execute(
        select(t.invoices)
        .where(
            INV.organization_id == organization_id,
            INV.subscription_id == subscription_id,
            INV.kind == InvoiceKind.PERIOD.value,
            INV.status != InvoiceStatus.DRAFT.value,
            INV.period_end > ending_after,
        )
        .order_by(INV.period_start)
    ).all()
    return [_invoice(r, ()) for r in rows]


def insert_draft(
    conn: Connection,
    organization_id: str,
    *,
    invoice_id: str,
    subscription_id: str,
    customer_id: str,
    kind: InvoiceKind,
    period: Period,
    closes_at: datetime,
    currency: str,
    lines: Sequence[Line],
    totals: tuple[int, int, int],
    tax_rate: Decimal | None,
    now: datetime,
) -> bool:
    """Insert a draft unless its (subscription, period) already has one; True if inserted."""
    inserted = conn.execute(
        insert_ignore(conn, t.invoices)
        .values(
            organization_id=organization_id,
            id=invoice_id,
            subscription_id=subscription_id,
            customer_id=customer_id,
            kind=kind.value,
            period_start=period.start,
            period_end=period.end,
            closes_at=closes_at,
            status=InvoiceStatus.DRAFT.value,
            currency=currency,
            number=None,
            subtotal_minor=totals[0],
            tax_minor=totals[1],
            total_minor=totals[2],
            tax_rate=tax_rate,
            paid_minor=0,
            ledger_watermark=None,
            created_at=now,
            updated_at=now,
        )
        # RETURNING, not rowcount: the driver does not always report a row count.
        .returning(INV.id)
    ).first()
    if inserted is None:
        return False
    write_lines(conn, organization_id, invoice_id, subscription_id, lines, replace=False)
    return True


def line_row(
    organization_id: str, invoice_id: str, subscription_id: str | None, position: int, line: Line
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "invoice_id": invoice_id,
        "position": position,
        "subscription_id": subscription_id,
        "type": line.type.value,
        "charge_ref": line.charge_ref,
        "service_start": line.service.start,
        "service_end": line.service.end,
        "description": line.description[:500],
        "meter_id": line.meter_id,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "exact_amount": line.exact_amount,
        "amount_minor": line.amount_minor,
        "details": line.details,
    }


def write_lines(
    conn: Connection,
    organization_id: str,
    invoice_id: str,
    subscription_id: str,
    lines: Sequence[Line],
    *,
    replace: bool = True,
) -> None:
    if replace:
        conn.execute(
            delete(t.invoice_lines).where(
                L.organization_id == organization_id, L.invoice_id == invoice_id
            )
        )
    if lines:
        conn.execute(
            t.invoice_lines.insert(),
            [
                line_row(organization_id, invoice_id, subscription_id, position, line)
                for position, line in enumerate(lines, start=1)
            ],
        )


def insert_issued(
    conn: Connection,
    organization_id: str,
    *,
    invoice_id: str,
    customer_id: str,
    kind: InvoiceKind,
    period: Period,
    currency: str,
    lines: Sequence[Line],
    totals: tuple[int, int, int],
    status: InvoiceStatus,
    number: int,
    now: datetime,
    due_at: datetime,
) -> None:
    """Insert an invoice issued at once, outside any subscription (on-demand invoices)."""
    conn.execute(
        t.invoices.insert().values(
            organization_id=organization_id,
            id=invoice_id,
            subscription_id=None,
            customer_id=customer_id,
            kind=kind.value,
            period_start=period.start,
            period_end=period.end,
            closes_at=now,
            status=status.value,
            currency=currency,
            number=number,
            subtotal_minor=totals[0],
            tax_minor=totals[1],
            total_minor=totals[2],
            tax_rate=None,
            paid_minor=0,
            ledger_watermark=None,
            issued_at=now,
            due_at=due_at,
            paid_at=now if status is InvoiceStatus.PAID else None,
            created_at=now,
            updated_at=now,
        )
    )
    if lines:
        conn.execute(
            t.invoice_lines.insert(),
            [
                line_row(organization_id, invoice_id, None, position, line)
                for position, line in enumerate(lines, start=1)
            ],
        )


def update_invoice(conn: Connection, organization_id: str, invoice_id: str, **values: Any) -> None:
    conn.execute(
        t.invoices.update()
        .where(INV.organization_id == organization_id, INV.id == invoice_id)
        .values(**values)
    )


def delete_draft(conn: Connection, organization_id: str, invoice_id: str) -> None:
    conn.execute(
        delete(t.invoice_lines).where(
            L.organization_id == organization_id, L.invoice_id == invoice_id
        )
    )
    conn.execute(
        delete(t.invoices).where(
            INV.organization_id == organization_id,
            INV.id == invoice_id,
            INV.status == InvoiceStatus.DRAFT.value,
        )
    )


def take_number(conn: Connection, organization_id: str) -> int:
    """The organization's next invoice number."""
    return reserve_numbers(conn, organization_id, 1)


def reserve_numbers(conn: Connection, organization_id: str, count: int) -> int:
    """The first of `count` consecutive invoice numbers. The counter's row stays locked until
    the transaction ends, so numbers are handed out in order and a rolled-back finalization
    leaves no gap."""
    n = t.invoice_numbers.c
    query = select(n.next_number).where(n.organization_id == organization_id).with_for_update()
    value = conn.execute(query).scalar()
    if value is None:
        conn.execute(
            insert_ignore(conn, t.invoice_numbers).values(
                organization_id=organization_id, next_number=1
            )
        )
        value = conn.execute(query).scalar()
    assert value is not None
    conn.execute(
        t.invoice_numbers.update()
        .where(n.organization_id == organization_id)
        .values(next_number=int(value) + count)
    )
    return int(value)
