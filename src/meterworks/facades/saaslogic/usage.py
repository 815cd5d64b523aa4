"""Usage reporting and reads: `/subscriptions/{subscriptionId}/resources`.

A report becomes one batch of native events for the one ingestion path: `Add` details are `add`
events, `Replace` details `set` events. The batch is validated whole, so one bad detail refuses the
call and nothing is written. Saaslogic has no idempotency key: each detail gets a fresh ledger key,
so a retried call counts again, as it does at Saaslogic, unless the caller sends the optional
`Idempotency-Key` header (our extension), which makes the keys derive from it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from meterworks.api.context import AppContext, Context
from meterworks.api.jsonbody import DecimalRoute, parse_body
from meterworks.catalog.meters import Meter, get_meter, quantity_unit
from meterworks.errors import Conflict, InvalidInput, MeterworksError, NotFound
from meterworks.facades.saaslogic.formats import SaaslogicModel, decimal_text, saaslogic_date
from meterworks.facades.saaslogic.tokens import OrganizationId
from meterworks.kit.decimals import DecimalInputError, parse_decimal
from meterworks.kit.ids import new_id
from meterworks.kit.instants import parse_instant
from meterworks.subscriptions.service import get_subscription, subscription_not_found
from meterworks.usage.ingest import find_meters, kept_meter
from meterworks.usage.reading import PeriodUsage, charged_meters, usage_for_period

router = APIRouter(route_class=DecimalRoute, tags=["usage reporting"])

# reportingType -> ledger operation; matched without regard to case.
OPERATIONS = {"add": "add", "replace": "set"}
MAX_IDEMPOTENCY_KEY = 200
# Native event fields, as a Saaslogic caller names them.
_FIELDS = {"meter": "resourceId", "quantity": "value"}
_CALL_FIELDS = {
    "timestamp": "usageDate",
    "operation": "reportingType",
    "subscription_id": "subscriptionId",
    "idempotency_key": "Idempotency-Key",
}


class UsageDetailIn(SaaslogicModel):
    resource_id: str = Field(description="the meter's id or key")
    value: Decimal | str = Field(description="exact decimal: a JSON number or a decimal string")
    uom_id: str | None = Field(None, description="when given: the meter's unit or the meter's id")


class UsageReportIn(SaaslogicModel):
    usage_date: str | None = Field(
        None, description="ISO-8601; without a zone it is UTC; default: now"
    )
    reporting_type: str = Field("Add", description="`Add` adds; `Replace` sets the level")
    usage_details: list[UsageDetailIn]


@dataclass(frozen=True, slots=True)
class _Detail:
    index: int
    resource_id: str
    value: Decimal
    uom_id: str | None


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field: str, code: str, message: str) -> None:
        where = f"usageDetails[{index}]" + (f".{field}" if field else "")
        self.items.append({"index": index, "field": where, "code": code, "message": message})

    def raise_if_any(self, total: int) -> None:
        if self.items:
            refused = len({item["index"] for item in self.items})
            raise InvalidInput(
                f"{refused} of {total} usage details are not valid; nothing was written",
                code="invalid_batch",
                details=self.items,
            )


def _call_error(field: str, code: str, message: str) -> InvalidInput:
    return InvalidInput(
        message, code=code, details=[{"field": field, "code": code, "message": message}]
    )


def parse_report(body: Any, now: datetime) -> tuple[datetime, str, list[_Detail]]:
    """(usage date, operation, details) of a report, or InvalidInput naming every problem."""
    if not isinstance(body, dict):
        raise _call_error("", "invalid_request", "the body must be a JSON object")
    raw_date = body.get("usageDate")
    usage_date = now
    if raw_date is not None:
        try:
            if not isinstance(raw_date, str):
                raise ValueError(raw_date)
            usage_date = parse_instant(raw_date)
        except ValueError as exc:
            raise _call_error(
                "usageDate",
                "invalid_usage_date",
                "usageDate must be ISO-8601, e.g. 2024-07-25T15:00:00",
            ) from exc
    raw_type = body.get("reportingType", "Add")
    operation = OPERATIONS.get(raw_type.lower()) if isinstance(raw_type, str) else None
    if operation is None:
        raise _call_error(
            "reportingType", "invalid_reporting_type", "reportingType must be `Add` or `Replace`"
        )
    raw_details = body.get("usageDetails")
    if not isinstance(raw_details, list) or not raw_details:
        raise _call_error(
            "usageDetails", "missing_usage_details", "usageDetails must be a non-empty list"
        )
    problems = _Problems()
    details: list[_Detail] = []
    for index, raw in enumerate(raw_details):
        if not isinstance(raw, dict):
            problems.add(index, "", "invalid_request", "each usage detail must be an object")
            continue
        resource = raw.get("resourceId")
        uom = raw.get("uomId")
        value: Decimal | None = None
        if resource is None or resource == "":
            problems.add(index, "resourceId", "missing_field", "resourceId is required")
        elif not isinstance(resource, str) or not resource.strip():
            problems.add(
                index, "resourceId", "invalid_field", "resourceId must be a meter id or key"
            )
        if uom is not None and not isinstance(uom, str):
            problems.add(index, "uomId", "invalid_field", "uomId must be a string")
        if raw.get("value") is None:
            problems.add(index, "value", "missing_field", "value is required")
        else:
            try:
                value = parse_decimal(raw["value"])
            except DecimalInputError as exc:
                problems.add(index, "value", "invalid_quantity", f"value {exc}")
        if value is not None and isinstance(resource, str) and resource.strip():
            details.append(
                _Detail(index, resource.strip(), value, uom if isinstance(uom, str) else None)
            )
    problems.raise_if_any(len(raw_details))
    return usage_date, operation, details


def uom_matches(meter: Meter, uom_id: str) -> bool:
    """A uomId names the meter's unit (any case) or the meter itself by id."""
    wanted = uom_id.strip()
    return wanted.casefold() == meter.unit.casefold() or wanted == meter.id


def _resolve(
    context: AppContext, organization_id: str, subscription_id: str, details: list[_Detail]
) -> None:
    """Refuse an unknown subscription (404), unknown resources and mismatched units up front."""
    with context.db.read() as conn:
        get_subscription(conn, organization_id, subscription_id)
        meters = find_meters(conn, organization_id, {d.resource_id for d in details})
    _resource_problems(meters, details).raise_if_any(len(details))


def _kept_resources(organization_id: str, details: list[_Detail]) -> dict[str, Meter] | None:
    """The details' meters from this process's copy; None unless it holds every one."""
    found: dict[str, Meter] = {}
    for detail in details:
        meter = kept_meter(organization_id, detail.resource_id)
        if meter is None:
            return None
        found[detail.resource_id] = meter
    return found


def _resource_problems(meters: dict[str, Meter], details: list[_Detail]) -> _Problems:
    problems = _Problems()
    for detail in details:
        meter = meters.get(detail.resource_id)
        if meter is None:
            problems.add(
                detail.index, "resourceId", "meter_not_found",
                f"resource `{detail.resource_id}` not found",
            )  # fmt: skip
        elif detail.uom_id is not None and not uom_matches(meter, detail.uom_id):
            problems.add(
                detail.index, "uomId", "uom_mismatch",
                f"uomId `{detail.uom_id}` does not match resource `{meter.key}`, whose unit is "
                f"`{meter.unit}`",
            )  # fmt: skip
    return problems


def _translated(exc: MeterworksError, details: list[_Detail]) -> MeterworksError:
    """A refusal of the ledger in the caller's terms: detail positions, Saaslogic field names."""
    if not isinstance(exc.details, list):
        return exc
    items = []
    for item in exc.details:
        position = item.get("index")
        known = isinstance(position, int) and 0 <= position < len(details)
        index = details[position].index if known else position
        field = str(item.get("field", ""))
        where = _CALL_FIELDS.get(field) or f"usageDetails[{index}].{_FIELDS.get(field, field)}"
        items.append({**item, "index": index, "field": where})
    return type(exc)(exc.message, code=exc.code, details=items)


@router.post(
    "/subscriptions/{subscription_id}/resources",
    status_code=200,
    response_class=Response,
    responses={200: {"description": "the usage was recorded; no body"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": UsageReportIn.model_json_schema(by_alias=True)}
            },
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
                "description": "optional: retries with the same key and body count once",
            }
        ],
    },
)
async def report_usage(
    subscription_id: str, request: Request, organization_id: OrganizationId, context: Context
) -> Response:
    """Report resource usage of a subscription; answers 200 with no body once committed."""
    # Most calls are answered by facades/saaslogic/hot.py before they reach this route.
    return await report(
        context,
        organization_id,
        subscription_id,
        await request.body(),
        request.headers.get("idempotency-key"),
    )


async def report(
    context: AppContext,
    organization_id: str,
    subscription_id: str,
    raw_body: bytes,
    idempotency_key: str | None,
) -> Response:
    """The answer to an authenticated caller's report (`Idempotency-Key` as sent, if sent)."""
    # Read here rather than declared, so the numbers stay exact and every bad detail is named.
    body = parse_body(raw_body)
    usage_date, operation, details = parse_report(body, context.clock.now())
    retry_key = (idempotency_key or "").strip()
    if len(retry_key) > MAX_IDEMPOTENCY_KEY:
        raise _call_error(
            "Idempotency-Key", "invalid_idempotency_key",
            f"the Idempotency-Key header holds at most {MAX_IDEMPOTENCY_KEY} characters",
        )  # fmt: skip
    # Resources met before are checked from this process's copy (a meter's unit never
    # changes), and the subscription by the ledger's own validation. Any doubt goes the long
    # way, which answers an unknown subscription (404) before any problem of a resource.
    kept = _kept_resources(organization_id, details)
    if kept is None or _resource_problems(kept, details).items:
        await asyncio.to_thread(_resolve, context, organization_id, subscription_id, details)
    events = [
        {
            "idempotency_key": f"saaslogic:{retry_key}:{position}" if retry_key else new_id("sl"),
            "subscription_id": subscription_id,
            "meter": detail.resource_id,
            "timestamp": usage_date,
            "operation": operation,
            "quantity": detail.value,
        }
        for position, detail in enumerate(details)
    ]
    try:
        await context.usage.record_async(organization_id, events, source="saaslogic")
    except (InvalidInput, Conflict) as exc:
        if _refused_subscription(exc):
            raise subscription_not_found(subscription_id) from exc
        raise _translated(exc, details) from exc
    return Response(status_code=200)


def _refused_subscription(exc: MeterworksError) -> bool:
    """Whether the ledger refused the report for an unknown subscription."""
    items = exc.details if isinstance(exc.details, list) else []
    return any(
        isinstance(item, dict) and item.get("code") == "subscription_not_found" for item in items
    )


class ResourceUsageOut(SaaslogicModel):
    resource_id: str = Field(description="the meter's id")
    resource_key: str = Field(description="the meter's key")
    resource_name: str
    uom_name: str = Field(description="the unit; `<unit>-days` for prorated resources")
    aggregation: str = Field(description="sum, count, max, latest, prorated or unique_count")
    quantity: str = Field(description="exact decimal, as a string")


class CycleUsageOut(SaaslogicModel):
    subscription_id: str
    billing_cycle_start_date: str = Field(description="UTC, without a zone")
    billing_cycle_end_date: str = Field(description="UTC, without a zone; the cycle excludes it")
    counted_until: str = Field(description="the instant the quantities count up to")
    resources: list[ResourceUsageOut]


def resource_usage(usage: PeriodUsage) -> list[ResourceUsageOut]:
    return [
        ResourceUsageOut(
            resource_id=m.meter.id,
            resource_key=m.meter.key,
            resource_name=m.meter.name,
            uom_name=quantity_unit(m.meter),
            aggregation=m.meter.aggregation.value,
            quantity=decimal_text(m.quantity),
        )
        for m in usage.meters
    ]


def current_cycle_usage(
    context: AppContext, organization_id: str, subscription_id: str, resource: str | None = None
) -> CycleUsageOut:
    now = context.clock.now()
    with context.db.read() as conn:
        sub = get_subscription(conn, organization_id, subscription_id)
        meters = charged_meters(conn, organization_id, sub)
        if resource is not None:
            meter = get_meter(conn, organization_id, resource)
            meters = [m for m in meters if m.id == meter.id]
            if not meters:
                raise NotFound(
                    f"the subscription's plan does not charge resource `{resource}`",
                    code="meter_not_in_plan",
                )
        usage = usage_for_period(
            conn, organization_id, sub, sub.period_at(now), now=now, meters=meters
        )
    return CycleUsageOut(
        subscription_id=sub.id,
        billing_cycle_start_date=saaslogic_date(usage.period.start),
        billing_cycle_end_date=saaslogic_date(usage.period.end),
        counted_until=saaslogic_date(usage.until),
        resources=resource_usage(usage),
    )


@router.get("/subscriptions/{subscription_id}/resources", response_model=CycleUsageOut)
def get_usage(
    subscription_id: str, organization_id: OrganizationId, context: Context
) -> CycleUsageOut:
    """Resource usages of the subscription in its current billing cycle."""
    return current_cycle_usage(context, organization_id, subscription_id)


@router.get(
    "/subscriptions/{subscription_id}/resources/{resource_id}", response_model=CycleUsageOut
)
def get_resource_usage(
    subscription_id: str, resource_id: str, organization_id: OrganizationId, context: Context
) -> CycleUsageOut:
    """One resource's usage in the subscription's current billing cycle."""
    return current_cycle_usage(context, organization_id, subscription_id, resource_id)
