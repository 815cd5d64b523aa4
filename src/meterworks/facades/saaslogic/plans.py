"""`GET /products/{productId}/plans`: the plans of a product, with their prices per resource.

A product exists through its plans (a plan's `product_id`); a product without plans is 404.
Each usage charge becomes pricing tiers of its resource: one open tier for `per_unit` and
`package`, one per tier for `graduated` and `volume`. A tier covers the quantity above
`rangeFrom` up to and including `rangeTo` (null: no limit).
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from pydantic import Field

from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.catalog.meters import Meter, meters_by_ref
from meterworks.catalog.plans import Plan, PricingModel, UsageCharge, list_plans
from meterworks.errors import NotFound
from meterworks.facades.saaslogic.formats import SaaslogicModel, decimal_text
from meterworks.facades.saaslogic.subscriptions import BILLING_FREQUENCIES
from meterworks.facades.saaslogic.tokens import OrganizationId

router = APIRouter(route_class=DecimalRoute, tags=["plans"])

PRICING_MODELS = {
    PricingModel.PER_UNIT: "PerUnit",
    PricingModel.GRADUATED: "Graduated",
    PricingModel.VOLUME: "Volume",
    PricingModel.PACKAGE: "Package",
}


class PricingTierOut(SaaslogicModel):
    resource_id: str
    resource_name: str
    uom_name: str
    pricing_model: str = Field(description="PerUnit, Graduated, Volume or Package")
    range_from: str = Field(description="the tier covers quantities above this")
    range_to: str | None = Field(description="up to and including this; null: no limit")
    price: str = Field(description="per unit, or per set of `setSize` units")
    set_size: str = Field(description="units the price is for: 1, or the package size")
    flat_fee: str = Field(description="charged once when usage reaches the tier")
    included_quantity: str = Field(description="free units of the resource per billing cycle")
    price_calculation_type: str = Field(description="PerUnit or PerSet")


class FixedChargeOut(SaaslogicModel):
    name: str
    amount: str


class PlanOut(SaaslogicModel):
    plan_id: str
    name: str
    billing_frequency_name: str = Field(description="Monthly, Quarterly or Annually")
    pricing_model: str = Field(description="the usage charges' model; Flat or Mixed otherwise")
    tier_calculation_type: str | None = Field(
        description="Volume or Graduated for tiered plans, Mixed for both, else null"
    )
    currency_iso_code: str = Field(alias="currencyISOCode")
    pricing_tiers: list[PricingTierOut]
    fixed_charges: list[FixedChargeOut]


class ProductPlansOut(SaaslogicModel):
    product_id: str
    product_name: str = Field(description="the product id: products have no name of their own")
    plans: list[PlanOut]


def _tiers(charge: UsageCharge, meter: Meter | None) -> list[PricingTierOut]:
    common = {
        "resource_id": charge.meter_id,
        "resource_name": meter.name if meter else charge.name,
        "uom_name": meter.unit if meter else "",
        "pricing_model": PRICING_MODELS[charge.model],
        "included_quantity": decimal_text(charge.included_quantity),
    }
    if charge.model in (PricingModel.PER_UNIT, PricingModel.PACKAGE):
        package = charge.model is PricingModel.PACKAGE
        return [
            PricingTierOut(
                **common,
                range_from="0",
                range_to=None,
                price=decimal_text(charge.unit_price or Decimal(0)),
                set_size=decimal_text(charge.package_size or Decimal(1)) if package else "1",
                flat_fee="0",
                price_calculation_type="PerSet" if package else "PerUnit",
            )
        ]
    tiers = []
    lower = Decimal(0)
    for tier in charge.tiers:
        tiers.append(
            PricingTierOut(
                **common,
                range_from=decimal_text(lower),
                range_to=None if tier.up_to is None else decimal_text(tier.up_to),
                price=decimal_text(tier.unit_price),
                set_size="1",
                flat_fee=decimal_text(tier.flat_fee),
                price_calculation_type="PerUnit",
            )
        )
        lower = tier.up_to if tier.up_to is not None else lower
    return tiers


def _one_of(names: set[str], *, none: str | None) -> str | None:
    if not names:
        return none
    return names.pop() if len(names) == 1 else "Mixed"


def plan_out(plan: Plan, meters: dict[str, Meter]) -> PlanOut:
    usage = plan.usage_charges
    tiered = {PRICING_MODELS[c.model] for c in usage if c.tiers}
    return PlanOut(
        plan_id=plan.id,
        name=plan.name,
        billing_frequency_name=BILLING_FREQUENCIES[plan.interval],
        pricing_model=_one_of({PRICING_MODELS[c.model] for c in usage}, none="Flat") or "Flat",
        tier_calculation_type=_one_of(tiered, none=None),
        currency_iso_code=plan.currency,
        pricing_tiers=[t for c in usage for t in _tiers(c, meters.get(c.meter_id))],
        fixed_charges=[
            FixedChargeOut(name=c.name, amount=decimal_text(c.amount)) for c in plan.fixed_charges
        ],
    )


@router.get("/products/{product_id}/plans", response_model=ProductPlansOut)
def list_product_plans(
    product_id: str, organization_id: OrganizationId, context: Context
) -> ProductPlansOut:
    """Every plan of the product, oldest first."""
    with context.db.read() as conn:
        plans = list_plans(conn, organization_id, product_id=product_id)
        meters = meters_by_ref(
            conn, organization_id, {c.meter_id for p in plans for c in p.usage_charges}
        )
    if not plans:
        raise NotFound(f"product `{product_id}` has no plans", code="product_not_found")
    return ProductPlansOut(
        product_id=product_id,
        product_name=product_id,
        plans=[plan_out(p, meters) for p in plans],
    )
