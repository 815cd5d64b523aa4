"""The caller's organization: its settings, and its partner keys (Gradient credentials)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.tenancy import service

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["organization"])


class OrganizationOut(BaseModel):
    id: str
    name: str
    late_usage_policy: str = Field(
        description="`adjust`: usage for a finalized period is billed as an adjustment on the "
        "next invoice; `reject`: it is refused with `period_finalized`"
    )


class OrganizationIn(BaseModel):
    late_usage_policy: str | None = Field(None, description="adjust or reject")


def _organization_out(organization: service.Organization) -> OrganizationOut:
    return OrganizationOut(
        id=organization.id,
        name=organization.name,
        late_usage_policy=organization.late_usage_policy,
    )


@router.get("/organization", response_model=OrganizationOut)
def get_organization(organization_id: OrganizationId, context: Context) -> OrganizationOut:
    with context.db.read() as conn:
        return _organization_out(service.get_organization(conn, organization_id))


@router.patch("/organization", response_model=OrganizationOut)
def update_organization(
    body: OrganizationIn, organization_id: OrganizationId, context: Context
) -> OrganizationOut:
    with context.db.transaction() as conn:
        if body.late_usage_policy is not None:
            service.set_late_usage_policy(conn, organization_id, body.late_usage_policy)
        return _organization_out(service.get_organization(conn, organization_id))


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
