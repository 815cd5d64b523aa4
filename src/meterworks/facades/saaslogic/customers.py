"""Customers in Saaslogic's shape, kept as meterworks customers.

`customerId` is the meterworks customer id. `customerName` is the name; `externalId` (or
`customerNumber`) the external id, generated when absent. The e-mail is the primary contact's.
Contacts, addresses, `customerType`, `isActive` and any other fields are kept whole in the
customer's metadata under `saaslogic`; the primary address is also the customer's address.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import ConfigDict, Field

from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.customers import service
from meterworks.customers.service import Customer
from meterworks.errors import InvalidInput
from meterworks.facades.saaslogic.formats import SaaslogicModel, saaslogic_date
from meterworks.facades.saaslogic.tokens import OrganizationId
from meterworks.kit.ids import new_id

router = APIRouter(route_class=DecimalRoute, tags=["customers"])

METADATA_KEY = "saaslogic"


class CustomerIn(SaaslogicModel):
    """Every field may be left out of an update; a create needs `customerName`."""

    model_config = ConfigDict(extra="allow")

    customer_name: str | None = None
    customer_type: str | None = Field(None, description="e.g. Business or Individual")
    is_active: bool | None = Field(None, description="default true")
    external_id: str | None = Field(None, description="your own id; generated when absent")
    customer_number: str | None = Field(None, description="same as externalId")
    email: str | None = Field(None, description="default: the primary contact's email")
    contacts: list[dict[str, Any]] | None = Field(
        None, description="`{firstName, lastName, email, phone, isPrimary, ...}`"
    )
    addresses: list[dict[str, Any]] | None = Field(
        None, description="`{addressLine1, city, state, postalCode, country, isPrimary, ...}`"
    )


class CustomerOut(SaaslogicModel):
    model_config = ConfigDict(extra="allow")

    customer_id: str
    customer_name: str
    customer_type: str | None
    is_active: bool
    external_id: str
    customer_number: str
    email: str | None
    contacts: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    created_date: str
    modified_date: str


# Fields the answer computes: never kept from, nor echoed back as, a client's other fields.
_FIELDS = frozenset(CustomerOut.model_fields) | {
    field.alias for field in CustomerOut.model_fields.values() if field.alias
}


def _primary(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The item marked `isPrimary`, else the first one."""
    for item in items:
        if item.get("isPrimary") is True:
            return item
    return items[0] if items else None


def customer_out(customer: Customer) -> CustomerOut:
    kept: dict[str, Any] = dict(customer.metadata.get(METADATA_KEY) or {})
    contacts = kept.get("contacts")
    if contacts is None:
        # A customer created through the native API: its e-mail is its one contact.
        contacts = [{"email": customer.email, "isPrimary": True}] if customer.email else []
    addresses = kept.get("addresses")
    if addresses is None:
        addresses = [customer.address] if customer.address else []
    others = {k: v for k, v in dict(kept.get("other") or {}).items() if k not in _FIELDS}
    return CustomerOut(
        customer_id=customer.id,
        customer_name=customer.name,
        customer_type=kept.get("customerType"),
        is_active=kept.get("isActive", True) is not False,
        external_id=customer.external_id,
        customer_number=customer.external_id,
        email=customer.email,
        contacts=contacts,
        addresses=addresses,
        created_date=saaslogic_date(customer.created_at),
        modified_date=saaslogic_date(customer.updated_at),
        **others,
    )


def _changes(body: CustomerIn, current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(native field changes, the new `saaslogic` metadata) for the fields the body gives."""
    native: dict[str, Any] = {}
    kept = dict(current)
    given = body.model_fields_set
    if body.customer_name is not None:
        native["name"] = body.customer_name
    external = body.external_id or body.customer_number
    if external is not None:
        native["external_id"] = external
    if "customer_type" in given:
        kept["customerType"] = body.customer_type
    if body.is_active is not None:
        kept["isActive"] = body.is_active
    if body.contacts is not None:
        kept["contacts"] = body.contacts
        primary = _primary(body.contacts)
        native["email"] = primary.get("email") if primary else None
    if body.addresses is not None:
        kept["addresses"] = body.addresses
        native["address"] = _primary(body.addresses)
    if "email" in given:
        native["email"] = body.email
    others = {k: v for k, v in (body.model_extra or {}).items() if k not in _FIELDS}
    if others:
        kept["other"] = {**dict(kept.get("other") or {}), **others}
    return native, kept


@router.post("/customers", status_code=201, response_model=CustomerOut)
def create_customer(
    body: CustomerIn, organization_id: OrganizationId, context: Context
) -> CustomerOut:
    """Create a customer; answers it with its `customerId`."""
    if not (body.customer_name or "").strip():
        raise InvalidInput(
            "customerName is required",
            details=[{"field": "customerName", "code": "missing_field", "message": "is required"}],
        )
    native, kept = _changes(body, {"isActive": True})
    with context.db.transaction() as conn:
        customer = service.create_customer(
            conn,
            organization_id,
            external_id=native.pop("external_id", None) or new_id("ext"),
            **native,
            metadata={METADATA_KEY: kept},
            now=context.clock.now(),
        )
    return customer_out(customer)


@router.get("/customers", response_model=list[CustomerOut])
def list_customers(
    organization_id: OrganizationId,
    context: Context,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, description="the last customerId of the previous page"),
) -> list[CustomerOut]:
    """Customers in `customerId` order, `limit` at a time."""
    with context.db.read() as conn:
        found = service.list_customers(conn, organization_id, limit=limit, after=after)
    return [customer_out(c) for c in found]


@router.get("/customers/{customer_id}", response_model=CustomerOut)
def retrieve_customer(
    customer_id: str, organization_id: OrganizationId, context: Context
) -> CustomerOut:
    with context.db.read() as conn:
        return customer_out(service.get_customer(conn, organization_id, customer_id))


@router.put("/customers/{customer_id}", response_model=CustomerOut)
def update_customer(
    customer_id: str, body: CustomerIn, organization_id: OrganizationId, context: Context
) -> CustomerOut:
    """Change the fields given; fields left out keep their values."""
    with context.db.transaction() as conn:
        current = service.get_customer(conn, organization_id, customer_id)
        native, kept = _changes(body, dict(current.metadata.get(METADATA_KEY) or {}))
        customer = service.update_customer(
            conn,
            organization_id,
            current.id,
            **native,
            metadata={METADATA_KEY: kept},
            now=context.clock.now(),
        )
    return customer_out(customer)


@router.delete("/customers/{customer_id}", status_code=200, response_class=Response)
def delete_customer(
    customer_id: str, organization_id: OrganizationId, context: Context
) -> Response:
    """Delete a customer without a running subscription; answers 200 with no body."""
    with context.db.transaction() as conn:
        service.delete_customer(conn, organization_id, customer_id, context.clock.now())
    return Response(status_code=200)
