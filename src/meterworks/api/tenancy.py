"""Organization-level credentials: Gradient partner keys."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.tenancy import service

router = APIRouter(route_class=DecimalRoute, tags=["organization"])


class PartnerIn(BaseModel):
    # The column holds 200 characters; PostgreSQL would refuse more with a 500.
    name: str = Field(max_length=200)


class PartnerOut(BaseModel):
    id: str
    name: str
    partner_key: str


@router.post("/partners", status_code=201, response_model=PartnerOut)
def create_partner(
    body: PartnerIn, organization_id: OrganizationId, context: Context
) -> PartnerOut:
    with context.db.transaction() as conn:
        partner = service.create_partner(conn, organization_id, body.name, context.clock.now())
    return PartnerOut(id=partner.id, name=partner.name, partner_key=partner.partner_key)
