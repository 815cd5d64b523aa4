"""`GET /subscriptions/{subscriptionId}`: a subscription in Saaslogic's shape."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.catalog.plans import get_plan
from meterworks.facades.saaslogic.formats import SaaslogicModel, optional_date, saaslogic_date
from meterworks.facades.saaslogic.tokens import OrganizationId
from meterworks.facades.saaslogic.usage import resource_usage
from meterworks.kit.periods import Interval
from meterworks.subscriptions.service import get_subscription
from meterworks.usage.reading import usage_for_period

router = APIRouter(route_class=DecimalRoute, tags=["subscriptions"])

BILLING_FREQUENCIES = {
    Interval.MONTH: "Monthly",
    Interval.QUARTER: "Quarterly",
    Interval.YEAR: "Annually",
}
STATUSES = {"pending": "Pending", "active": "Active", "ended": "Ended", "canceled": "Canceled"}


class ResourceQuantityOut(SaaslogicModel):
    resource_id: str
    resource_key: str
    resource_name: str
    uom_name: str
    quantity: str = Field(description="usage in the current billing cycle, exact decimal string")


class SubscriptionOut(SaaslogicModel):
    subscription_id: str
    customer_id: str
    product_id: str | None
    plan_id: str
    plan_name: str
    status_name: str = Field(description="Pending, Active, Ended or Canceled")
    currency_iso_code: str = Field(alias="currencyISOCode")
    billing_frequency_name: str = Field(description="Monthly, Quarterly or Annually")
    subscription_start_date: str = Field(description="UTC, without a zone")
    subscription_end_date: str | None = Field(description="null while it runs open-ended")
    billing_cycle_start_date: str
    billing_cycle_end_date: str
    is_auto_renew_enabled: bool = Field(description="true while no end date is set")
    resource_quantities: list[ResourceQuantityOut]


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def retrieve_subscription(
    subscription_id: str, organization_id: OrganizationId, context: Context
) -> SubscriptionOut:
    """A subscription, its current billing cycle and the usage of each resource in it."""
    now = context.clock.now()
    with context.db.read() as conn:
        sub = get_subscription(conn, organization_id, subscription_id)
        plan = get_plan(conn, organization_id, sub.plan_id)
        usage = usage_for_period(conn, organization_id, sub, sub.period_at(now), now=now)
    return SubscriptionOut(
        subscription_id=sub.id,
        customer_id=sub.customer_id,
        product_id=plan.product_id,
        plan_id=plan.id,
        plan_name=plan.name,
        status_name=STATUSES[sub.status(now)],
        currency_iso_code=sub.currency,
        billing_frequency_name=BILLING_FREQUENCIES[sub.interval],
        subscription_start_date=saaslogic_date(sub.starts_at),
        subscription_end_date=optional_date(sub.ends_at),
        billing_cycle_start_date=saaslogic_date(usage.period.start),
        billing_cycle_end_date=saaslogic_date(usage.period.end),
        is_auto_renew_enabled=sub.ends_at is None,
        resource_quantities=[
            ResourceQuantityOut(
                resource_id=r.resource_id,
                resource_key=r.resource_key,
                resource_name=r.resource_name,
                uom_name=r.uom_name,
                quantity=r.quantity,
            )
            for r in resource_usage(usage)
        ],
    )
