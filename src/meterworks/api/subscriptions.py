"""Subscriptions and their usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import AppContext, Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.api.schemas import SubscriptionOut, UsageOut, instant_field
from meterworks.subscriptions import service
from meterworks.usage.reading import charged_meter_kinds, usage_for_period

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    customer_id: str
    plan_id: str
    starts_at: str = Field(description="ISO-8601; no offset means UTC")
    ends_at: str | None = None
    billing_anchor: str | None = Field(None, description="defaults to starts_at")
    metadata: dict[str, Any] | None = None


class SubscriptionList(BaseModel):
    data: list[SubscriptionOut]
    has_more: bool


@router.post("/subscriptions", status_code=201, response_model=SubscriptionOut)
def create_subscription(
    body: SubscriptionIn, organization_id: OrganizationId, context: Context
) -> SubscriptionOut:
    starts_at = instant_field(body.starts_at, "starts_at")
    assert starts_at is not None
    now = context.clock.now()
    with context.db.transaction() as conn:
        sub = service.create_subscription(
            conn,
            organization_id,
            customer_id=body.customer_id,
            plan_id=body.plan_id,
            starts_at=starts_at,
            ends_at=instant_field(body.ends_at, "ends_at"),
            billing_anchor=instant_field(body.billing_anchor, "billing_anchor"),
            metadata=body.metadata,
            now=now,
        )
    return SubscriptionOut.of(sub, now)


@router.get("/subscriptions", response_model=SubscriptionList)
def list_subscriptions(
    organization_id: OrganizationId,
    context: Context,
    customer_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = None,
) -> SubscriptionList:
    now = context.clock.now()
    with context.db.read() as conn:
        found = service.list_subscriptions(
            conn, organization_id, customer_id=customer_id, limit=limit + 1, after=after
        )
    return SubscriptionList(
        data=[SubscriptionOut.of(s, now) for s in found[:limit]], has_more=len(found) > limit
    )


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(
    subscription_id: str, organization_id: OrganizationId, context: Context
) -> SubscriptionOut:
    with context.db.read() as conn:
        sub = service.get_subscription(conn, organization_id, subscription_id)
    return SubscriptionOut.of(sub, context.clock.now())


class CancelIn(BaseModel):
    at: str | None = Field(None, description="when it ends; default now")


@router.post("/subscriptions/{subscription_id}/cancel", response_model=SubscriptionOut)
def cancel_subscription(
    subscription_id: str,
    organization_id: OrganizationId,
    context: Context,
    body: CancelIn | None = None,
) -> SubscriptionOut:
    now = context.clock.now()
    at = instant_field(body.at if body else None, "at")
    with context.db.transaction() as conn:
        sub = service.cancel_subscription(conn, organization_id, subscription_id, at=at, now=now)
    return SubscriptionOut.of(sub, now)


@router.get("/subscriptions/{subscription_id}/usage", response_model=UsageOut)
def get_usage(
    subscription_id: str,
    organization_id: OrganizationId,
    context: Context,
    at: str | None = Query(None, description="an instant in the period wanted; default now"),
) -> UsageOut:
    # Most calls (those without `at`) are answered by api/hot.py before they reach this route.
    return usage_of(context, organization_id, subscription_id, at)


def usage_of(
    context: AppContext, organization_id: str, subscription_id: str, at: str | None
) -> UsageOut:
    """`GET /v1/subscriptions/{id}/usage`'s answer to an authenticated caller."""
    now = context.clock.now()
    instant = instant_field(at, "at") or now
    with context.db.read() as conn:
        sub = service.get_subscription(conn, organization_id, subscription_id)
        # UsageOut shows of each meter only what never changes.
        meters = charged_meter_kinds(conn, organization_id, sub)
        period = sub.period_at(instant)
        usage = usage_for_period(conn, organization_id, sub, period, now=now, meters=meters)
    return UsageOut.of(usage)
