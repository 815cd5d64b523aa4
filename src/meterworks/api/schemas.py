"""Response shapes of the native API. Quantities and money are decimal strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, Strict, StrictInt, StrictStr

from meterworks.catalog.meters import Meter, quantity_unit
from meterworks.catalog.plans import Plan, charge_to_json
from meterworks.customers.service import Customer
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import format_instant, from_micros, parse_instant
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription
from meterworks.usage.corrections import LedgerEvent
from meterworks.usage.reading import PeriodUsage

# Anything a client may send as a decimal: a string or a JSON number (parsed exactly). Strict, so
# that pydantic does not take `true` for the number 1.
DecimalIn = Annotated[Decimal, Strict()] | StrictInt | StrictStr


def instant_field(value: str | None, field: str) -> datetime | None:
    """A client's ISO-8601 field (no offset means UTC); a malformed one is invalid input."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{field} must be an ISO-8601 timestamp",
            details=[{"field": field, "message": "must be an ISO-8601 timestamp"}],
        ) from exc


def dec(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def instant(value: datetime | None) -> str | None:
    return None if value is None else format_instant(value)


class PeriodOut(BaseModel):
    start: str
    end: str

    @classmethod
    def of(cls, period: Period) -> PeriodOut:
        return cls(start=format_instant(period.start), end=format_instant(period.end))


class MeterOut(BaseModel):
    id: str
    key: str
    name: str
    unit: str
    aggregation: str
    property: str | None
    description: str | None
    created_at: str

    @classmethod
    def of(cls, meter: Meter) -> MeterOut:
        return cls(
            id=meter.id,
            key=meter.key,
            name=meter.name,
            unit=meter.unit,
            aggregation=meter.aggregation.value,
            property=meter.property,
            description=meter.description,
            created_at=format_instant(meter.created_at),
        )


class PlanOut(BaseModel):
    id: str
    name: str
    currency: str
    interval: str
    product_id: str | None
    charges: list[dict[str, Any]]
    created_at: str

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        charges = []
        for charge in plan.charges:
            data = charge_to_json(charge)
            if data["type"] == "usage":
                data["meter"] = data.pop("meter_id")
            charges.append(data)
        return cls(
            id=plan.id,
            name=plan.name,
            currency=plan.currency,
            interval=plan.interval.value,
            product_id=plan.product_id,
            charges=charges,
            created_at=format_instant(plan.created_at),
        )


class CustomerOut(BaseModel):
    id: str
    external_id: str
    name: str
    email: str | None
    address: dict[str, Any] | None
    tax_rate: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, customer: Customer) -> CustomerOut:
        return cls(
            id=customer.id,
            external_id=customer.external_id,
            name=customer.name,
            email=customer.email,
            address=customer.address,
            tax_rate=dec(customer.tax_rate),
            metadata=customer.metadata,
            created_at=format_instant(customer.created_at),
            updated_at=format_instant(customer.updated_at),
        )


class SubscriptionOut(BaseModel):
    id: str
    customer_id: str
    plan_id: str
    status: str = Field(description="pending, active, ended or canceled")
    interval: str
    currency: str
    starts_at: str
    ends_at: str | None
    billing_anchor: str
    canceled_at: str | None
    current_period: PeriodOut
    created_at: str

    @classmethod
    def of(cls, sub: Subscription, now: datetime) -> SubscriptionOut:
        return cls(
            id=sub.id,
            customer_id=sub.customer_id,
            plan_id=sub.plan_id,
            status=sub.status(now),
            interval=sub.interval.value,
            currency=sub.currency,
            starts_at=format_instant(sub.starts_at),
            ends_at=instant(sub.ends_at),
            billing_anchor=format_instant(sub.billing_anchor),
            canceled_at=instant(sub.canceled_at),
            current_period=PeriodOut.of(sub.period_at(now)),
            created_at=format_instant(sub.created_at),
        )


class MeterQuantity(BaseModel):
    meter: str
    key: str
    aggregation: str
    quantity: str
    unit: str


class UsageOut(BaseModel):
    subscription_id: str
    period: PeriodOut
    counted_until: str
    meters: list[MeterQuantity]

    @classmethod
    def of(cls, usage: PeriodUsage) -> UsageOut:
        return cls(
            subscription_id=usage.subscription.id,
            period=PeriodOut.of(usage.period),
            counted_until=format_instant(usage.until),
            meters=[
                MeterQuantity(
                    meter=m.meter.id,
                    key=m.meter.key,
                    aggregation=m.meter.aggregation.value,
                    quantity=format_decimal(m.quantity),
                    unit=quantity_unit(m.meter),
                )
                for m in usage.meters
            ],
        )


class IngestOut(BaseModel):
    accepted: int = Field(description="events newly written to the ledger")
    duplicates: int = Field(description="events already in the ledger (replays), not counted again")


class EventOut(BaseModel):
    idempotency_key: str
    status: str = Field(description="active, amended or voided")
    revision: int
    subscription_id: str
    meter: str
    timestamp: str
    operation: str
    quantity: str
    properties: dict[str, Any] | None
    source: str

    @classmethod
    def of(cls, event: LedgerEvent) -> EventOut:
        return cls(
            idempotency_key=event.idempotency_key,
            status=event.status,
            revision=event.revision,
            subscription_id=event.subscription_id,
            meter=event.meter_id,
            timestamp=format_instant(from_micros(event.ts_us)),
            operation=event.operation,
            quantity=format_decimal(event.quantity),
            properties=event.properties,
            source=event.source,
        )


class ListOut(BaseModel):
    data: list[Any]
    has_more: bool = False
