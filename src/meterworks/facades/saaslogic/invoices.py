"""Saaslogic's invoice endpoints over the billing domain: list, details, cancel (void), payments,
on-demand invoices and sending an invoice as a PDF with a signed payment link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import Field
from sqlalchemy.engine import Connection

from meterworks.api.billing import AdjustmentIn, billing, on_demand_items, sender
from meterworks.api.billing import ItemIn as NativeItem
from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.api.schemas import DecimalIn
from meterworks.billing import store
from meterworks.billing.model import Invoice, InvoiceKind, InvoiceStatus
from meterworks.billing.on_demand import discount_minor, issue_on_demand
from meterworks.catalog.plans import get_plan
from meterworks.errors import InvalidInput
from meterworks.facades.saaslogic.formats import SaaslogicModel, optional_date, saaslogic_date
from meterworks.facades.saaslogic.tokens import OrganizationId
from meterworks.kit.decimals import DecimalInputError, parse_decimal
from meterworks.kit.instants import format_instant, parse_instant
from meterworks.kit.money import format_minor
from meterworks.subscriptions.service import get_subscription

router = APIRouter(route_class=DecimalRoute, tags=["invoices"])

LIST_LIMIT = 1000
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CAD": "$", "AUD": "$"}


def status_name(invoice: Invoice) -> str:
    if invoice.status is InvoiceStatus.FINALIZED:
        return "Partially Paid" if invoice.paid_minor > 0 else "Unpaid"
    return {"draft": "Draft", "paid": "Paid", "void": "Cancelled"}[invoice.status.value]


class LineItemOut(SaaslogicModel):
    description: str
    product_id: str | None
    quantity: str
    unit_price: str | None
    amount: str
    tax_amount: str
    discount_amount: str


class InvoiceOut(SaaslogicModel):
    invoice_id: str
    invoice_number: int | None = Field(description="null while a draft")
    invoice_date: str | None
    due_date: str | None
    customer_id: str
    subscription_id: str | None
    product_id: str | None
    net_amount: str = Field(description="the total, tax included")
    sub_total_amount: str
    total_tax_amount: str
    total_discount_amount: str
    amount_received: str
    amount_due: str
    status_name: str = Field(description="Draft, Unpaid, Partially Paid, Paid or Cancelled")
    currency_iso_code: str = Field(alias="currencyISOCode")
    currency_symbol: str
    billing_cycle_start_date: str | None
    billing_cycle_end_date: str | None
    is_on_demand: bool
    line_items: list[LineItemOut]


def _products(conn: Connection, organization_id: str, invoice: Invoice) -> list[str]:
    if invoice.subscription_id is None:
        found = {str(x.details["product_id"]) for x in invoice.lines if x.details.get("product_id")}
        return sorted(found)
    sub = get_subscription(conn, organization_id, invoice.subscription_id)
    product = get_plan(conn, organization_id, sub.plan_id).product_id
    return [product] if product else []


def invoice_out(invoice: Invoice, products: list[str]) -> InvoiceOut:
    c = invoice.currency
    on_demand = invoice.kind is InvoiceKind.ON_DEMAND
    return InvoiceOut(
        invoice_id=invoice.id,
        invoice_number=invoice.number,
        invoice_date=optional_date(invoice.issued_at),
        due_date=optional_date(invoice.due_at),
        customer_id=invoice.customer_id,
        subscription_id=invoice.subscription_id,
        product_id=products[0] if products else None,
        net_amount=format_minor(invoice.total_minor, c),
        sub_total_amount=format_minor(invoice.subtotal_minor, c),
        total_tax_amount=format_minor(invoice.tax_minor, c),
        total_discount_amount=format_minor(discount_minor(invoice), c),
        amount_received=format_minor(invoice.paid_minor, c),
        amount_due=format_minor(invoice.due_minor, c),
        status_name=status_name(invoice),
        currency_iso_code=c,
        currency_symbol=SYMBOLS.get(c, c),
        billing_cycle_start_date=None if on_demand else saaslogic_date(invoice.period.start),
        billing_cycle_end_date=None if on_demand else saaslogic_date(invoice.period.end),
        is_on_demand=on_demand,
        line_items=[
            LineItemOut(
                description=line.description,
                product_id=line.details.get("product_id"),
                quantity=str(line.quantity),
                unit_price=None if line.unit_price is None else str(line.unit_price),
                amount=format_minor(line.amount_minor, c),
                tax_amount=format_minor(int(line.details.get("tax_minor", 0)), c),
                discount_amount=format_minor(int(line.details.get("discount_minor", 0)), c),
            )
            for line in invoice.lines
        ],
    )


def _date(value: str | None, field: str) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        return parse_instant(value if "T" in value else value + "T00:00:00")
    except ValueError as exc:
        raise InvalidInput(
            f"{field} must be a date", details=[{"field": field, "code": "invalid_date"}]
        ) from exc


def _detailed(context: Context, organization_id: str, invoice_id: str) -> InvoiceOut:
    invoice = billing(context).invoice(organization_id, invoice_id)
    with context.db.read() as conn:
        return invoice_out(invoice, _products(conn, organization_id, invoice))


@router.get("/invoices", response_model=list[InvoiceOut])
def list_invoices(
    organization_id: OrganizationId,
    context: Context,
    customer_id: str | None = Query(None, alias="customerId"),
    product_id: str | None = Query(None, alias="productId"),
    start_date: str | None = Query(None, alias="startDate", description="invoice date from"),
    end_date: str | None = Query(None, alias="endDate", description="invoice date until"),
) -> list[InvoiceOut]:
    """Invoices, filtered by customer, product and invoice date (inclusive; drafts by close)."""
    start, end = _date(start_date, "startDate"), _date(end_date, "endDate")
    found = []
    with context.db.read() as conn:
        for invoice in store.list_invoices(
            conn, organization_id, customer_id=customer_id, limit=LIST_LIMIT
        ):
            dated = invoice.issued_at or invoice.closes_at
            if (start and dated < start) or (end and dated > end):
                continue
            products = _products(conn, organization_id, invoice)
            if product_id is not None and product_id not in products:
                continue
            found.append((invoice.id, products))
    return [
        invoice_out(billing(context).invoice(organization_id, i), products) for i, products in found
    ]


@router.get("/subscriptions/{subscription_id}/invoices", response_model=list[InvoiceOut])
def subscription_invoices(
    subscription_id: str, organization_id: OrganizationId, context: Context
) -> list[InvoiceOut]:
    with context.db.read() as conn:
        get_subscription(conn, organization_id, subscription_id)
    found, _ = billing(context).list_invoices(
        organization_id, subscription_id=subscription_id, limit=LIST_LIMIT
    )
    with context.db.read() as conn:
        return [invoice_out(i, _products(conn, organization_id, i)) for i in found]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def invoice_details(invoice_id: str, organization_id: OrganizationId, context: Context) -> Any:
    return _detailed(context, organization_id, invoice_id)


@router.post("/invoices/{invoice_id}/cancel", response_model=InvoiceOut)
def cancel_invoice(invoice_id: str, organization_id: OrganizationId, context: Context) -> Any:
    """Cancelling is voiding: the invoice keeps its number; a paid one cannot be cancelled."""
    billing(context).void(organization_id, invoice_id)
    return _detailed(context, organization_id, invoice_id)


class PaymentIn(SaaslogicModel):
    payment_date: str
    amount: DecimalIn
    ref_no: str | None = Field(None, max_length=255)
    payment_method: str | None = Field(None, max_length=100, description="accepted, not kept")
    remarks: str | None = Field(None, max_length=1000, description="accepted, not kept")


@router.post("/invoices/{invoice_id}/payments", response_model=InvoiceOut)
def mark_payment(
    invoice_id: str, body: PaymentIn, organization_id: OrganizationId, context: Context
) -> Any:
    """Record a payment; a retry with the same `refNo` and amount is recorded once."""
    try:
        amount = parse_decimal(body.amount)
    except DecimalInputError as exc:
        raise InvalidInput(
            f"amount {exc}", code="invalid_amount", details=[{"field": "amount"}]
        ) from exc
    paid_at = _date(body.payment_date, "paymentDate")
    if paid_at is None:
        raise InvalidInput("paymentDate is required", details=[{"field": "paymentDate"}])
    billing(context).pay(
        organization_id, invoice_id, amount=amount, paid_at=paid_at, reference=body.ref_no
    )
    return _detailed(context, organization_id, invoice_id)


class TaxIn(SaaslogicModel):
    description: str = Field("", max_length=200)
    tax_value: DecimalIn
    is_percentage: bool = False


class DiscountIn(SaaslogicModel):
    description: str = Field("", max_length=200)
    discount_value: DecimalIn
    is_percentage: bool = False


class LineItemIn(SaaslogicModel):
    description: str = Field(max_length=500)
    quantity: DecimalIn
    unit_price: DecimalIn
    taxes: list[TaxIn] = Field(default_factory=list)
    discounts: list[DiscountIn] = Field(default_factory=list)


class ProductIn(SaaslogicModel):
    product_id: str | None = Field(None, max_length=200)
    line_items: list[LineItemIn]


class OnDemandIn(SaaslogicModel):
    customer_id: str = Field(max_length=200)
    currency_iso_code: str = Field(alias="currencyISOCode", max_length=3)
    products: list[ProductIn]


@router.post("/invoices/on-demand", status_code=201, response_model=InvoiceOut)
def on_demand_invoice(body: OnDemandIn, organization_id: OrganizationId, context: Context) -> Any:
    """Issue a finalized invoice of the products' line items, with their taxes and discounts."""
    lines = [
        NativeItem(
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            product_id=product.product_id,
            taxes=[
                AdjustmentIn(
                    description=x.description, value=x.tax_value, percentage=x.is_percentage
                )
                for x in item.taxes
            ],
            discounts=[
                AdjustmentIn(
                    description=d.description, value=d.discount_value, percentage=d.is_percentage
                )
                for d in item.discounts
            ],
        )
        for product in body.products
        for item in product.line_items
    ]
    items = on_demand_items(lines)
    with context.db.transaction() as conn:
        invoice = issue_on_demand(
            conn,
            organization_id,
            customer_id=body.customer_id,
            currency=body.currency_iso_code,
            items=items,
            now=context.clock.now(),
            net_days=context.settings.invoice_net_days,
        )
    with context.db.read() as conn:
        return invoice_out(invoice, _products(conn, organization_id, invoice))


class SentOut(SaaslogicModel):
    invoice_id: str
    payment_link: str = Field(description="opens the invoice's PDF, no token needed, until expiry")
    expires_at: str
    email_sent: bool
    recipient: str | None


@router.post("/invoices/{invoice_id}/send", response_model=SentOut)
def send_invoice(
    invoice_id: str, request: Request, organization_id: OrganizationId, context: Context
) -> SentOut:
    """Send invoice as PDF with payment link: a signed link; e-mailed when SMTP is configured."""
    root = str(request.base_url).rstrip("/").removesuffix("/saaslogic/v1")
    sent = sender(context).send(organization_id, invoice_id, base_url=root)
    return SentOut(
        invoice_id=sent.invoice_id,
        payment_link=sent.link.url,
        expires_at=format_instant(sent.link.expires_at),
        email_sent=sent.emailed_to is not None,
        recipient=sent.emailed_to,
    )
