"""Meters and plans."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.api.schemas import MeterOut, PlanOut
from meterworks.catalog import meters, plans

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["catalog"])


class MeterIn(BaseModel):
    key: str = Field(description="your stable name for the meter, e.g. `api_calls`")
    name: str
    unit: str = Field(description="what one unit is, e.g. `call`, `seat`, `GB`")
    aggregation: str = Field(description="sum, count, max, latest, prorated or unique_count")
    property: str | None = Field(None, description="the property counted by unique_count")
    description: str | None = None


class MeterList(BaseModel):
    data: list[MeterOut]


@router.post("/meters", status_code=201, response_model=MeterOut)
def create_meter(body: MeterIn, organization_id: OrganizationId, context: Context) -> MeterOut:
    with context.db.transaction() as conn:
        meter = meters.create_meter(
            conn, organization_id, **body.model_dump(), now=context.clock.now()
        )
    return MeterOut.of(meter)


@router.get("/meters", response_model=MeterList)
def list_meters(organization_id: OrganizationId, context: Context) -> MeterList:
    with context.db.read() as conn:
        return MeterList(data=[MeterOut.of(m) for m in meters.list_meters(conn, organization_id)])


@router.get("/meters/{meter_id}", response_model=MeterOut)
def get_meter(meter_id: str, organization_id: OrganizationId, context: Context) -> MeterOut:
    with context.db.read() as conn:
        return MeterOut.of(meters.get_meter(conn, organization_id, meter_id))


class PlanIn(BaseModel):
    name: str
    currency: str = Field(description="ISO 4217 code, e.g. USD, EUR, JPY")
    interval: str = Field(description="month, quarter or year")
    product_id: str | None = Field(None, description="optional product the plan belongs to")
    charges: list[dict[str, Any]] = Field(
        description="`{type: fixed, name, amount}` or `{type: usage, meter, model, unit_price?, "
        "tiers?: [{up_to, unit_price, flat_fee?}], package_size?, included_quantity?}`"
    )


class PlanList(BaseModel):
    data: list[PlanOut]


@router.post("/plans", status_code=201, response_model=PlanOut)
def create_plan(body: PlanIn, organization_id: OrganizationId, context: Context) -> PlanOut:
    with context.db.transaction() as conn:
        plan = plans.create_plan(
            conn,
            organization_id,
            name=body.name,
            currency=body.currency,
            interval=body.interval,
            charges=body.charges,
            product_id=body.product_id,
            now=context.clock.now(),
        )
    return PlanOut.of(plan)


@router.get("/plans", response_model=PlanList)
def list_plans(organization_id: OrganizationId, context: Context) -> PlanList:
    with context.db.read() as conn:
        return PlanList(data=[PlanOut.of(p) for p in plans.list_plans(conn, organization_id)])


@router.get("/plans/{plan_id}", response_model=PlanOut)
def get_plan(plan_id: str, organization_id: OrganizationId, context: Context) -> PlanOut:
    with context.db.read() as conn:
        return PlanOut.of(plans.get_plan(conn, organization_id, plan_id))
