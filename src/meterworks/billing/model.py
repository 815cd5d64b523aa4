"""The billing vocabulary: invoices, their kinds, states and lines. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from meterworks.kit.periods import Period


class InvoiceKind(StrEnum):
    # The first period's fixed charges, billed in advance when the subscription starts.
    OPENING = "opening"
    # One per closed period: its usage in arrears and the next period's fixed charges in advance.
    PERIOD = "period"
    # Late usage of a subscription that has no next invoice to carry it (it has ended).
    ADJUSTMENT = "adjustment"
    # Lines given by the caller, for a customer, outside any subscription: issued at once.
    ON_DEMAND = "on_demand"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    PAID = "paid"
    VOID = "void"


class LineType(StrEnum):
    FIXED = "fixed"
    USAGE = "usage"
    # A fixed charge billed in advance for a period that turned out shorter (or longer).
    FIXED_ADJUSTMENT = "fixed_adjustment"
    # Usage of a finalized period that changed after it was finalized.
    USAGE_ADJUSTMENT = "usage_adjustment"
    # A line of an on-demand invoice, priced by the caller.
    ITEM = "item"


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line: exact amount, rounded once (half-up) to minor units, and its why."""

    type: LineType
    # The plan charge it bills: `fixed/<index>` or `usage/<meter id>`.
    charge_ref: str
    # The service period it bills (for adjustments: the period adjusted).
    service: Period
    description: str
    meter_id: str | None
    quantity: Decimal
    unit_price: Decimal | None
    exact_amount: Decimal
    amount_minor: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    amount_minor: int
    paid_at: datetime
    reference: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    # None for an on-demand invoice, which bills a customer outside any subscription.
    subscription_id: str | None
    customer_id: str
    kind: InvoiceKind
    period: Period
    closes_at: datetime
    status: InvoiceStatus
    currency: str
    number: int | None
    lines: tuple[Line, ...]
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    tax_rate: Decimal | None
    paid_minor: int
    ledger_watermark: int | None
    issued_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    created_at: datetime
    updated_at: datetime
    payments: tuple[Payment, ...] = ()

    @property
    def order_key(self) -> tuple[datetime, str]:
        """Invoices of one subscription are drafted, finalized and reconciled in this order."""
        return (self.closes_at, self.id)

    @property
    def due_minor(self) -> int:
        if self.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
            return 0
        return max(0, self.total_minor - self.paid_minor)


def fixed_ref(index: int) -> str:
    return f"fixed/{index}"


def usage_ref(meter_id: str) -> str:
    return f"usage/{meter_id}"
