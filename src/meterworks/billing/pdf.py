"""Invoices as PDF documents (A4): seller, customer, dates, lines, totals and what is left to pay.

Money is printed with the currency's digits (`format_minor`), quantities and unit prices as the
exact decimals billed. The built-in PDF fonts cover Latin-1 only, so any other character is
printed as `?` rather than refused: a customer's name never keeps its invoice from rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace
from sqlalchemy import select
from sqlalchemy.engine import Connection

from meterworks.billing import lifecycle, store
from meterworks.billing.model import Invoice, InvoiceKind, InvoiceStatus
from meterworks.customers.service import Customer, customer_from_row
from meterworks.db import tables as t
from meterworks.kit.clock import ensure_utc
from meterworks.kit.decimals import format_decimal
from meterworks.kit.money import format_minor
from meterworks.kit.periods import Period
from meterworks.tenancy.service import get_organization

MARGIN = 18.0
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
SHADE = (241, 243, 245)
STATUS_LABELS = {
    InvoiceStatus.DRAFT: "Draft",
    InvoiceStatus.FINALIZED: "Open",
    InvoiceStatus.PAID: "Paid",
    InvoiceStatus.VOID: "Void",
}


@dataclass(frozen=True, slots=True)
class InvoicePdf:
    invoice: Invoice
    seller: str
    customer: Customer
    content: bytes

    @property
    def filename(self) -> str:
        label = "draft" if self.invoice.number is None else str(self.invoice.number)
        return f"invoice-{label}.pdf"


def invoice_pdf(conn: Connection, organization_id: str, invoice_id: str) -> InvoicePdf:
    """The invoice as it stands (a draft as it would be finalized now), rendered."""
    invoice = lifecycle.live(
        conn, organization_id, store.get_invoice(conn, organization_id, invoice_id)
    )
    seller = get_organization(conn, organization_id).name
    customer = _billed_customer(conn, organization_id, invoice.customer_id)
    content = render_invoice(invoice, seller=seller, customer=customer)
    return InvoicePdf(invoice, seller, customer, content)


def _billed_customer(conn: Connection, organization_id: str, customer_id: str) -> Customer:
    c = t.customers.c
    # Read directly, deleted or not: a deleted customer's invoices still name whom they bill.
    row = conn.execute(
        select(t.customers).where(c.organization_id == organization_id, c.id == customer_id)
    ).one()
    return customer_from_row(row)


# Typography outside Latin-1 that has a plain equivalent, kept readable rather than `?`.
_PLAIN = str.maketrans(
    {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
     "\u201d": '"', "\u2026": "...", "\u20ac": "EUR", "\u00a0": " "}
)  # fmt: skip


def _text(value: object) -> str:
    return str(value).translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def _date(value: datetime | None) -> str:
    return "-" if value is None else ensure_utc(value).strftime("%Y-%m-%d")


def period_text(period: Period) -> str:
    """Whole days read inclusively (`2025-01-01 to 2025-01-31`); other bounds as instants."""
    start, end = ensure_utc(period.start), ensure_utc(period.end)
    if start.time() == time(0) and end.time() == time(0) and end > start:
        return f"{_date(start)} to {_date(end - timedelta(days=1))}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def address_lines(address: dict[str, Any] | None) -> list[str]:
    """A customer's address as printable lines, whatever keys it was given with."""
    if not address:
        return []
    ordered = ("line1", "line2", "street", "city", "state", "postal_code", "zip", "country")
    keys = [k for k in ordered if k in address] + [k for k in address if k not in ordered]
    return [str(address[k]) for k in keys if address[k] not in (None, "")]


class _Document(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align=Align.C)


def render_invoice(invoice: Invoice, *, seller: str, customer: Customer) -> bytes:
    currency = invoice.currency
    pdf = _Document(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=20)
    number = "DRAFT" if invoice.number is None else str(invoice.number)
    pdf.set_title(_text(f"Invoice {number}"))
    pdf.set_author(_text(seller))
    pdf.set_creation_date(ensure_utc(invoice.issued_at or invoice.created_at))
    pdf.add_page()
    width = pdf.epw

    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(width / 2, 10, "INVOICE")
    pdf.set_font("Helvetica", "B", 12)
    heading = "DRAFT" if invoice.number is None else f"Invoice number {invoice.number}"
    pdf.cell(width / 2, 10, heading, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    top = pdf.get_y()
    _block(pdf, MARGIN, top, width / 2 - 4, "From", [seller])
    bill_to = [customer.name, f"Customer ID: {customer.external_id}"]
    if customer.email:
        bill_to.append(customer.email)
    bill_to += address_lines(customer.address)
    left_end = pdf.get_y()
    _block(pdf, MARGIN + width / 2, top, width / 2, "Bill to", bill_to)
    pdf.set_y(max(left_end, pdf.get_y()) + 4)

    on_demand = invoice.kind is InvoiceKind.ON_DEMAND
    facts = [
        ("Status", STATUS_LABELS[invoice.status]),
        ("Period", "-" if on_demand else period_text(invoice.period)),
        ("Issue date", _date(invoice.issued_at)),
        ("Due date", _date(invoice.due_at)),
        ("Currency", currency),
    ]
    pdf.set_draw_color(*RULE)
    pdf.line(MARGIN, pdf.get_y(), MARGIN + width, pdf.get_y())
    pdf.ln(2)
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(30, 5.5, f"{label}:")
        pdf.set_font("Helvetica", size=9)
        pdf.set_text_color(*INK)
        pdf.cell(0, 5.5, _text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)

    pdf.set_font("Helvetica", size=9)
    with pdf.table(
        col_widths=(92, 28, 28, 26),
        text_align=(Align.L, Align.R, Align.R, Align.R),
        headings_style=FontFace(emphasis="BOLD", fill_color=SHADE),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=6,
        repeat_headings=1,
    ) as table:
        table.row(["Description", "Quantity", "Unit price", "Amount"])
        for line in invoice.lines:
            unit_price = "-" if line.unit_price is None else format_decimal(line.unit_price)
            table.row(
                [
                    _text(line.description),
                    format_decimal(line.quantity),
                    unit_price,
                    format_minor(line.amount_minor, currency),
                ]
            )
    pdf.ln(4)

    tax_label = "Tax"
    if invoice.tax_rate is not None:
        tax_label = f"Tax ({format_decimal(invoice.tax_rate)}%)"
    totals = [
        ("Subtotal", format_minor(invoice.subtotal_minor, currency), False),
        (tax_label, format_minor(invoice.tax_minor, currency), False),
        ("Total", f"{format_minor(invoice.total_minor, currency)} {currency}", True),
        ("Amount paid", format_minor(invoice.paid_minor, currency), False),
        ("Amount due", f"{format_minor(invoice.due_minor, currency)} {currency}", True),
    ]
    if pdf.will_page_break(6 * len(totals)):
        pdf.add_page()
    for label, value, strong in totals:
        pdf.set_x(MARGIN + width - 90)
        pdf.set_font("Helvetica", "B" if strong else "", 10)
        pdf.cell(55, 6, _text(label), align=Align.R)
        pdf.cell(35, 6, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _block(pdf: FPDF, x: float, y: float, width: float, title: str, lines: list[str]) -> None:
    pdf.set_xy(x, y)
    pdf.set_font("Helvetica", "B", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(width, 5, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    for index, line in enumerate(lines):
        pdf.set_x(x)
        pdf.set_font("Helvetica", "B" if index == 0 else "", 11 if index == 0 else 9)
        pdf.multi_cell(width, 5.5 if index == 0 else 4.5, _text(line), new_x=XPos.LEFT)
