"""Invoices, payments, billing runs and billing views."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import AppContext, Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.api.schemas import DecimalIn, PeriodOut, instant_field
from meterworks.billing.documents import invoice_document
from meterworks.billing.on_demand import Adjustment, Item, issue_on_demand
from meterworks.billing.pdf import InvoicePdf, invoice_pdf
from meterworks.billing.run import RunReport
from meterworks.billing.sending import InvoiceSender
from meterworks.billing.service import BillingService
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import DecimalInputError, parse_decimal
from meterworks.kit.instants import format_instant

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["billing"])


def billing(context: AppContext) -> BillingService:
    service: BillingService = context.extensions["billing"]
    return service


class LineOut(BaseModel):
    type: str = Field(description="fixed, usage, fixed_adjustment or usage_adjustment")
    description: str
    charge: str | None
    meter: str | None = Field(description="the meter's id (usage lines)")
    meter_key: str | None
    unit: str | None
    period: PeriodOut = Field(description="the service period the line bills")
    quantity: str
    unit_price: str | None
    amount: str


class PaymentOut(BaseModel):
    id: str
    amount: str
    paid_at: str
    reference: str | None


class InvoiceOut(BaseModel):
    id: str
    number: int | None = Field(description="gapless per organization, given at finalization")
    kind: str = Field(description="period, opening, adjustment or on_demand")
    customer_id: str
    subscription_id: str | None = Field(description="null for an on-demand invoice")
    period: PeriodOut
    status: str = Field(description="draft, finalized, paid or void")
    currency: str
    lines: list[LineOut]
    subtotal: str
    tax_rate: str | None
    tax: str
    total: str
    amount_paid: str
    amount_due: str
    closes_at: str
    issued_at: str | None
    due_at: str | None
    paid_at: str | None
    voided_at: str | None
    created_at: str
    payments: list[PaymentOut]


class InvoiceList(BaseModel):
    data: list[InvoiceOut]
    has_more: bool


class ViewOut(BaseModel):
    built_at: str
    builds: int = Field(description="how many times this view has been rebuilt")
    rebuild_pending: bool


class PreviewOut(BaseModel):
    id: None = None
    number: None = None
    kind: str
    customer_id: str
    subscription_id: str
    period: PeriodOut
    status: str
    currency: str
    lines: list[LineOut]
    subtotal: str
    tax_rate: str | None
    tax: str
    total: str
    issued_at: None = None
    due_at: None = None
    counted_until: str
    view: ViewOut


@router.get("/invoices", response_model=InvoiceList)
def list_invoices(
    organization_id: OrganizationId,
    context: Context,
    customer_id: str | None = None,
    subscription_id: str | None = None,
    status: str | None = Query(None, description="draft, finalized, paid or void"),
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, description="the last id of the previous page"),
) -> InvoiceList:
    found, has_more = billing(context).list_invoices(
        organization_id,
        customer_id=customer_id,
        subscription_id=subscription_id,
        status=status,
        limit=limit,
        after=after,
    )
    return InvoiceList(
        data=[InvoiceOut.model_validate(invoice_document(i)) for i in found], has_more=has_more
    )


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: str, organization_id: OrganizationId, context: Context) -> InvoiceOut:
    invoice = billing(context).invoice(organization_id, invoice_id)
    return InvoiceOut.model_validate(invoice_document(invoice))


class AdjustmentIn(BaseModel):
    description: str = Field("", max_length=200)
    value: DecimalIn = Field(description="a percentage when `percentage`, else major units")
    percentage: bool = False


class ItemIn(BaseModel):
    description: str = Field(max_length=500)
    quantity: DecimalIn
    unit_price: DecimalIn = Field(description="major units, exact")
    product_id: str | None = Field(None, max_length=200)
    taxes: list[AdjustmentIn] = Field(default_factory=list)
    discounts: list[AdjustmentIn] = Field(default_factory=list)


class OnDemandIn(BaseModel):
    customer_id: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    lines: list[ItemIn]


def _exact(value: object, field: str) -> Decimal:
    try:
        return parse_decimal(value)
    except DecimalInputError as exc:
        raise InvalidInput(
            f"{field} {exc}", details=[{"field": field, "message": str(exc)}]
        ) from exc


def on_demand_items(lines: list[ItemIn]) -> list[Item]:
    def adjustments(found: list[AdjustmentIn], at: str) -> tuple[Adjustment, ...]:
        return tuple(
            Adjustment(a.description, _exact(a.value, f"{at}[{k}].value"), a.percentage)
            for k, a in enumerate(found)
        )

    return [
        Item(
            description=line.description,
            quantity=_exact(line.quantity, f"lines[{i}].quantity"),
            unit_price=_exact(line.unit_price, f"lines[{i}].unit_price"),
            taxes=adjustments(line.taxes, f"lines[{i}].taxes"),
            discounts=adjustments(line.discounts, f"lines[{i}].discounts"),
            product_id=line.product_id,
        )
        for i, line in enumerate(lines)
    ]


@router.post("/invoices/on-demand", status_code=201, response_model=InvoiceOut)
def create_on_demand_invoice(
    body: OnDemandIn, organization_id: OrganizationId, context: Context
) -> InvoiceOut:
    """Issue a finalized invoice of the lines given (with their taxes and discounts) at once."""
    items = on_demand_items(body.lines)
    with context.db.transaction() as conn:
        invoice = issue_on_demand(
            conn,
            organization_id,
            customer_id=body.customer_id,
            currency=body.currency,
            items=items,
            now=context.clock.now(),
            net_days=context.settings.invoice_net_days,
        )
    return InvoiceOut.model_validate(invoice_document(invoice))


def sender(context: AppContext) -> InvoiceSender:
    return InvoiceSender(context.db, context.clock, context.settings)


def pdf_response(document: InvoicePdf) -> Response:
    return Response(
        document.content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{document.filename}"'},
    )


PDF_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "the invoice as a PDF (A4)"}
}


@router.get("/invoices/{invoice_id}/pdf", response_class=Response, responses=PDF_ANSWER)
def invoice_as_pdf(invoice_id: str, organization_id: OrganizationId, context: Context) -> Response:
    """The invoice as a PDF: seller, customer, dates, lines, totals, amount due."""
    with context.db.read() as conn:
        return pdf_response(invoice_pdf(conn, organization_id, invoice_id))


@router.get("/invoice-links/{token}", response_class=Response, responses=PDF_ANSWER)
def invoice_by_link(token: str, context: Context) -> Response:
    """A sent invoice's PDF, without an API key, while its signed link is valid (404 after)."""
    return pdf_response(sender(context).open_link(token))


class InvoiceLinkOut(BaseModel):
    invoice_id: str
    url: str = Field(description="opens the invoice's PDF without an API key until expires_at")
    expires_at: str
    emailed_to: str | None = Field(description="the customer's address, when it was e-mailed")


@router.post("/invoices/{invoice_id}/send", response_model=InvoiceLinkOut)
def send_invoice(
    invoice_id: str, request: Request, organization_id: OrganizationId, context: Context
) -> InvoiceLinkOut:
    """Sign a link to the invoice's PDF; e-mail it to the customer when SMTP is configured."""
    sent = sender(context).send(organization_id, invoice_id, base_url=str(request.base_url))
    return InvoiceLinkOut(
        invoice_id=sent.invoice_id,
        url=sent.link.url,
        expires_at=format_instant(sent.link.expires_at),
        emailed_to=sent.emailed_to,
    )


@router.get("/invoices/{invoice_id}/explain")
def explain_invoice(
    invoice_id: str, organization_id: OrganizationId, context: Context
) -> dict[str, Any]:
    """Per line: the arithmetic and the ledger entries behind it."""
    return billing(context).explain(organization_id, invoice_id)


@router.post("/invoices/{invoice_id}/finalize", response_model=InvoiceOut)
def finalize_invoice(
    invoice_id: str, organization_id: OrganizationId, context: Context
) -> InvoiceOut:
    """Finalize a draft before its grace period ends (an invoice past draft is answered as is)."""
    invoice = billing(context).finalize(organization_id, invoice_id)
    return InvoiceOut.model_validate(invoice_document(invoice))


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceOut)
def void_invoice(invoice_id: str, organization_id: OrganizationId, context: Context) -> InvoiceOut:
    """Void a finalized, unpaid invoice; it keeps its number."""
    invoice = billing(context).void(organization_id, invoice_id)
    return InvoiceOut.model_validate(invoice_document(invoice))


class PaymentIn(BaseModel):
    amount: DecimalIn = Field(description='major units, e.g. "100.00"')
    paid_at: str = Field(description="ISO-8601")
    reference: str | None = Field(
        None, max_length=255, description="your reference; a retry with it is recorded once"
    )


@router.post("/invoices/{invoice_id}/payments", status_code=201, response_model=InvoiceOut)
def record_payment(
    invoice_id: str, body: PaymentIn, organization_id: OrganizationId, context: Context
) -> Any:
    try:
        amount = parse_decimal(body.amount)
    except DecimalInputError as exc:
        raise InvalidInput(
            f"amount {exc}",
            code="invalid_amount",
            details=[{"field": "amount", "message": str(exc)}],
        ) from exc
    paid_at = instant_field(body.paid_at, "paid_at")
    assert paid_at is not None
    invoice, recorded = billing(context).pay(
        organization_id, invoice_id, amount=amount, paid_at=paid_at, reference=body.reference
    )
    document = InvoiceOut.model_validate(invoice_document(invoice)).model_dump()
    return JSONResponse(document, status_code=201 if recorded else 200)


class RunIn(BaseModel):
    as_of: str | None = Field(None, description="ISO-8601; default now")


class RunOut(BaseModel):
    as_of: str
    subscriptions: int = Field(description="subscriptions looked at")
    drafted: int = Field(description="invoices drafted (periods closed)")
    finalized: int = Field(description="invoices finalized (grace period over)")
    failed: int = Field(description="subscriptions that could not be billed (retried next run)")
    drafted_ids: list[str]
    finalized_ids: list[str]

    @classmethod
    def of(cls, report: RunReport) -> RunOut:
        return cls(
            as_of=format_instant(report.as_of),
            subscriptions=report.subscriptions,
            drafted=report.drafted,
            finalized=report.finalized,
            failed=report.failed,
            drafted_ids=report.drafted_ids,
            finalized_ids=report.finalized_ids,
        )


@router.post("/billing/run", response_model=RunOut)
def run_billing(
    organization_id: OrganizationId, context: Context, body: RunIn | None = None
) -> RunOut:
    """Bill this organization now: what the scheduler does on its own, on demand. Idempotent."""
    as_of = instant_field(body.as_of if body else None, "as_of")
    report = billing(context).run(as_of=as_of, organization_id=organization_id)
    return RunOut.of(report)


@router.get("/subscriptions/{subscription_id}/invoice-preview", response_model=PreviewOut)
def invoice_preview(
    subscription_id: str, organization_id: OrganizationId, context: Context
) -> PreviewOut:
    """The billing view: the current period priced as its invoice would be if it closed now."""
    # Most calls are answered by api/hot.py before they reach this route, the same way.
    return PreviewOut.model_validate(billing(context).preview(organization_id, subscription_id))
