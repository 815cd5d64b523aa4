"""Vendor details and services: a Gradient service (sku) is a meter."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.catalog.meters import Aggregation, Meter, create_meter, get_meter, list_meters
from meterworks.catalog.meters import update_meter as update_meter_in_catalog
from meterworks.errors import InvalidInput, NotFound
from meterworks.facades.gradient.auth import GradientCaller
from meterworks.facades.gradient.body import Payload
from meterworks.facades.gradient.counts import service_not_found
from meterworks.facades.gradient.shapes import (
    ERROR_RESPONSES,
    SERVICE_METADATA_KEY,
    ServiceId,
    invalid,
    json_object,
    json_request,
    required_text,
    service_extras,
    service_ref,
    sku,
    text,
)
from meterworks.kit.ids import new_id
from meterworks.tenancy.service import get_organization

router = APIRouter(route_class=DecimalRoute, responses=ERROR_RESPONSES, tags=["services"])

# Gradient only ever sets levels, so a service is a level meter; `latest` bills the count
# standing at the end of the period, which is what a unit count means.
DEFAULT_AGGREGATION = Aggregation.LATEST
LEVEL_AGGREGATIONS = tuple(a.value for a in Aggregation if a.is_level)
DEFAULT_UNIT = "unit"
SLUG_LENGTH = 40


def service_key(name: str) -> str:
    """`gradient-<slug of the name>-<8 random characters>`: readable and unique."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_LENGTH].strip("-")
    return f"gradient-{slug or 'service'}-{new_id('x')[-8:]}"


def _find(conn: Any, organization_id: str, service_id: str) -> Meter:
    try:
        return get_meter(conn, organization_id, service_ref(service_id))
    except NotFound as exc:
        raise service_not_found(service_id) from exc


@router.get("/", summary="Get vendor", description="The vendor (organization) and its services.")
def get_vendor(caller: GradientCaller, context: Context) -> dict[str, Any]:
    with context.db.read() as conn:
        organization = get_organization(conn, caller.organization_id)
        meters = list_meters(conn, caller.organization_id)
    return {
        "status": 200,
        "message": "Found vendor",
        "data": {
            "id": organization.id,
            "name": organization.name,
            "description": None,
            "skus": [sku(meter) for meter in meters],
        },
    }


@router.post(
    "/service",
    status_code=201,
    summary="Create service",
    description="Body `{name, description?, category?, subcategory?, aggregation?, unit?, ...}`; "
    f"aggregation one of {', '.join(LEVEL_AGGREGATIONS)} (default latest), unit default "
    "`unit`. Other fields are kept and answered as given.",
    openapi_extra=json_request(
        {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "category": {"type": "string"},
                "subcategory": {"type": "string"},
                "aggregation": {"enum": list(LEVEL_AGGREGATIONS), "default": "latest"},
                "unit": {"type": "string", "default": DEFAULT_UNIT},
            },
        }
    ),
)
def create_service(caller: GradientCaller, context: Context, payload: Payload) -> dict[str, Any]:
    body = json_object(payload)
    name = required_text(body, "name")
    description = text(body, "description", max_length=10_000)
    unit = text(body, "unit", max_length=64) or DEFAULT_UNIT
    aggregation = text(body, "aggregation") or DEFAULT_AGGREGATION.value
    if aggregation not in LEVEL_AGGREGATIONS:
        raise invalid(
            f"aggregation must be one of {', '.join(LEVEL_AGGREGATIONS)}: a unit count sets "
            "a level",
            "invalid_field",
        )
    extras = service_extras(body)
    with context.db.transaction() as conn:
        meter = create_meter(
            conn,
            caller.organization_id,
            key=service_key(name),
            name=name,
            unit=unit,
            aggregation=aggregation,
            description=description,
            metadata={SERVICE_METADATA_KEY: extras},
            now=context.clock.now(),
        )
    return {"status": 201, "message": "Created service", "data": sku(meter)}


@router.get("/service/{serviceId}", summary="Get service")
def get_service(service_id: ServiceId, caller: GradientCaller, context: Context) -> dict[str, Any]:
    with context.db.read() as conn:
        meter = _find(conn, caller.organization_id, service_id)
    return {"status": 200, "message": "Found service", "data": sku(meter)}


@router.patch(
    "/service/{serviceId}",
    summary="Update service",
    description="Changes name, description, category, subcategory or extra fields. A "
    "service's unit and aggregation never change (the ledger relies on them).",
    openapi_extra=json_request({"type": "object"}),
)
def update_service(
    service_id: ServiceId,
    caller: GradientCaller,
    context: Context,
    payload: Payload,
) -> dict[str, Any]:
    body = json_object(payload)
    name = text(body, "name", nullable=False)
    if name == "":
        raise invalid("name must not be empty", "invalid_field")
    description = text(body, "description", max_length=10_000)
    extras = service_extras(body)
    with context.db.transaction() as conn:
        meter = _find(conn, caller.organization_id, service_id)
        for fixed, current in (("unit", meter.unit), ("aggregation", meter.aggregation.value)):
            if fixed in body and body[fixed] != current:
                raise InvalidInput(
                    f"a service's {fixed} cannot change (it is `{current}`)", code="immutable_field"
                )
        stored = meter.metadata.get(SERVICE_METADATA_KEY)
        merged = {**(stored if isinstance(stored, dict) else {}), **extras}
        meter = update_meter_in_catalog(
            conn,
            caller.organization_id,
            meter.id,
            name=name,
            # An explicit null clears the description; an absent one leaves it.
            description=("" if description is None else description)
            if "description" in body
            else None,
            metadata={SERVICE_METADATA_KEY: merged},
            now=context.clock.now(),
        )
    return {"status": 200, "message": "Updated service", "data": sku(meter)}
