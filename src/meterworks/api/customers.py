"""Customers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.api.schemas import CustomerOut, DecimalIn
from meterworks.customers import service
from meterworks.errors import InvalidInput

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["customers"])


class CustomerIn(BaseModel):
    external_id: str = Field(description="your own id for this customer")
    name: str
    email: str | None = None
    address: dict[str, Any] | None = None
    tax_rate: DecimalIn | None = Field(None, description='percentage, e.g. "20" for 20 %')
    metadata: dict[str, Any] | None = None


class CustomerList(BaseModel):
    data: list[CustomerOut]
    has_more: bool


@router.post("/customers", status_code=201, response_model=CustomerOut)
def create_customer(
    body: CustomerIn, organization_id: OrganizationId, context: Context
) -> CustomerOut:
    with context.db.transaction() as conn:
        customer = service.create_customer(
            conn, organization_id, **body.model_dump(), now=context.clock.now()
        )
    return CustomerOut.of(customer)


@router.get("/customers", response_model=CustomerList)
def list_customers(
    organization_id: OrganizationId,
    context: Context,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, description="the last id of the previous page"),
) -> CustomerList:
    with context.db.read() as conn:
        found = service.list_customers(conn, organization_id, limit=limit + 1, after=after)
    return CustomerList(
        data=[CustomerOut.of(c) for c in found[:limit]], has_more=len(found) > limit
    )


@router.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(
    customer_id: str, organization_id: OrganizationId, context: Context
) -> CustomerOut:
    with context.db.read() as conn:
        return CustomerOut.of(service.get_customer(conn, organization_id, customer_id))


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
def update_customer(
    customer_id: str, body: dict[str, Any], organization_id: OrganizationId, context: Context
) -> CustomerOut:
    allowed = {"external_id", "name", "email", "address", "tax_rate", "metadata"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(
            "unknown fields",
            details=[{"field": f, "message": "not a customer field"} for f in unknown],
        )
    with context.db.transaction() as conn:
        customer = service.update_customer(
            conn, organization_id, customer_id, **body, now=context.clock.now()
        )
    return CustomerOut.of(customer)


@router.delete("/customers/{customer_id}", status_code=204)
def delete_customer(
    customer_id: str, organization_id: OrganizationId, context: Context
) -> Response:
    with context.db.transaction() as conn:
        service.delete_customer(conn, organization_id, customer_id, context.clock.now())
    return Response(status_code=204)
