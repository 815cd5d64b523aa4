"""Set unit count: `POST /service/{serviceId}/count` sets an account's level on a service.

A unit count is a `set` event on the service's meter for the account's active subscription,
dated now, written through the one ingestion path every transport shares.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from meterworks.api.context import AppContext, Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.catalog.meters import Meter
from meterworks.errors import Forbidden, InvalidInput, NotFound
from meterworks.facades.gradient import integration
from meterworks.facades.gradient.auth import Caller, GradientCaller
from meterworks.facades.gradient.body import Payload
from meterworks.facades.gradient.shapes import (
    ERROR_RESPONSES,
    ServiceId,
    flag,
    json_request,
    service_ref,
    unit_count_body,
)
from meterworks.kit.ids import new_id
from meterworks.usage.ingest import find_meter, kept_meter

# Where the app keeps this process's `integration.SyncMarks` (context.extensions).
SYNC_MARKS = "gradient.sync_marks"

router = APIRouter(route_class=DecimalRoute, responses=ERROR_RESPONSES, tags=["unit counts"])

# Domain refusals that mean "this account is not mapped to this service" to a Gradient client.
NOT_MAPPED = frozenset({"customer_not_found", "no_active_subscription", "meter_not_in_plan"})


def service_not_found(service_id: str) -> NotFound:
    return NotFound(f"No service found with id: {service_id}", code="service_not_found")


def not_mapped(account_id: str) -> NotFound:
    return NotFound(f"No account map found with id: {account_id}", code="account_not_mapped")


def _translate(exc: InvalidInput, account_id: str, service_id: str) -> Exception:
    """The ingestion path's refusal of the one event, in Gradient's terms."""
    items = exc.details if isinstance(exc.details, list) else []
    first = items[0] if items and isinstance(items[0], dict) else {}
    code = str(first.get("code", exc.code))
    if code in NOT_MAPPED:
        return not_mapped(account_id)
    if code == "meter_not_found":
        return service_not_found(service_id)
    if code == integration.SUSPENDED_CODE:  # reactivated since the count was refused
        return Forbidden(integration.SUSPENDED_MESSAGE, code=code)
    return InvalidInput(str(first.get("message", exc.message)), code=code)


@router.post(
    "/service/{serviceId}/count",
    status_code=201,
    summary="Set unit count",
    description="Sets (replaces) the account's unit count for the service. `no_build=true` "
    "writes the count without scheduling a billing-view rebuild. Body: "
    '`{"accountId": "...", "unitCount": 12.5}` (`clientOId` / `clientOid` accepted for '
    "`accountId`).",
    openapi_extra=json_request(
        {
            "type": "object",
            "required": ["unitCount"],
            "properties": {
                "accountId": {"type": "string"},
                "clientOId": {"type": "string", "deprecated": True},
                "clientOid": {"type": "string", "deprecated": True},
                "unitCount": {"type": "number", "minimum": 0},
            },
        }
    ),
)
async def set_unit_count(
    service_id: ServiceId,
    caller: GradientCaller,
    context: Context,
    payload: Payload,
    no_build: Annotated[str | None, Query(description="true: skip the view rebuild")] = None,
) -> dict[str, Any]:
    # Most calls are answered by facades/gradient/hot.py before they reach this route.
    return await set_count(context, caller, service_id, payload, no_build)


async def set_count(
    context: AppContext, caller: Caller, service_id: str, payload: Any, no_build: str | None
) -> dict[str, Any]:
    """The answer to an authenticated caller's unit count (the body as parsed JSON).

    Checked in this order: the integration's status, the service, then the count itself. A
    service this process has met before, that takes levels, needs no read here: the status is
    checked by `integration.refuse_while_suspended` in the transaction that writes the count.
    Any refusal reads the status and the service again, so that it is answered as if they had
    been checked first."""
    organization_id = caller.organization_id
    rebuild_view = not flag(no_build, "no_build")
    account_id, unit_count = unit_count_body(payload)
    ref = service_ref(service_id)
    meter = kept_meter(organization_id, ref)
    if meter is None or not meter.aggregation.is_level:
        meter = await asyncio.to_thread(_checked_service, context, organization_id, ref)
    now = context.clock.now()
    event = {
        # A set is harmless to repeat, so every call is its own ledger entry under a fresh key.
        "idempotency_key": f"gradient:{new_id('uc')}",
        "external_customer_id": account_id,
        "meter": meter.id,
        "timestamp": now,
        "operation": "set",
        "quantity": unit_count,
        "properties": {"gradient_integration": caller.partner_id},
    }
    try:
        await context.usage.record_async(
            organization_id, [event], source=integration.SOURCE, rebuild_view=rebuild_view
        )
    except InvalidInput as exc:
        await asyncio.to_thread(_checked_service, context, organization_id, ref)
        raise _translate(exc, account_id, service_id) from exc
    marks: integration.SyncMarks = context.extensions[SYNC_MARKS]
    if marks.due(organization_id, now):
        # Claimed before the write: the counts answered while it waits for the writer do not
        # each send one of their own (a failure is logged; a count a second later retries).
        marks.marked(organization_id, now)
        await integration.mark_synced(context.usage.writer, organization_id, now)
    return {"status": 201, "message": "Created service unit count"}


def _checked_service(context: AppContext, organization_id: str, ref: str) -> Meter:
    """The meter `ref` names, if it takes levels; refused first while the integration is
    suspended."""
    with context.db.read() as conn:
        state = integration.read_state(conn, organization_id)
        if state.status == integration.SUSPENDED:
            raise Forbidden(integration.SUSPENDED_MESSAGE, code=integration.SUSPENDED_CODE)
        meter = find_meter(conn, organization_id, ref)
    if meter is None:
        raise service_not_found(ref)
    if not meter.aggregation.is_level:
        raise InvalidInput(
            f"service {ref} is a `{meter.aggregation.value}` meter; a unit count sets a "
            "level, so the service must be a latest, max or prorated meter",
            code="operation_not_allowed",
        )
    return meter
