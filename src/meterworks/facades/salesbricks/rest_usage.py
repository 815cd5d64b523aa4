"""REST v2 usage entries: `POST`, `PATCH` and `DELETE /salesbricks/api/v2/usage/`.

An entry is one ledger event whose key is `sb:` + its transaction_id: posting it again with the
same payload is a replay (answered as the first time), with another payload a 409. Counter
bricks (`sum` meters) add the value, gauge bricks (`prorated` meters) set it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterworks.api.context import AppContext
from meterworks.catalog.meters import Meter, get_meter
from meterworks.errors import InvalidInput, NotFound
from meterworks.facades.salesbricks.auth import Organization
from meterworks.facades.salesbricks.bodies import check_strings, parse_json
from meterworks.facades.salesbricks.rendering import ExactJSONResponse
from meterworks.facades.salesbricks.translate import (
    MAX_TRANSACTION_ID,
    SOURCE,
    call_for_brick,
    transaction_key,
)
from meterworks.kit.instants import parse_instant
from meterworks.usage.service import UNSET

router = APIRouter(tags=["usage"])

SUBMITTED = "Usage entry submitted successfully."
UPDATED = "Usage entry updated successfully."
DELETED = "Usage entry deleted successfully."


class UsageEntryIn(BaseModel):
    transaction_id: str = Field(max_length=MAX_TRANSACTION_ID, description="your unique id")
    subscription_id: str = Field(description="a meterworks subscription id")
    brick_id: str = Field(description="a meter id or key")
    value: int = Field(description="counters: the increment; gauges: the new level")
    time: str = Field(description="ISO-8601; no offset means UTC")
    count: int | None = Field(None, description="deprecated alias of `value`")
    properties: dict[str, Any] | None = None


class UsageUpdateIn(BaseModel):
    transaction_id: str
    value: int | None = None
    properties: dict[str, Any] | None = None


class TransactionIn(BaseModel):
    transaction_id: str


def _docs(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append({"field": field, "code": code, "message": message})

    def raise_any(self, message: str) -> None:
        if self.items:
            raise InvalidInput(message, code="invalid_request", details=self.items)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_request")
    return body


def _integer(value: Any) -> int | None:
    """An integer as Salesbricks takes it: a JSON integer, a whole number or a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _transaction_id(body: dict[str, Any], problems: _Problems) -> str:
    value = body.get("transaction_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        problems.add("transaction_id", "required", "transaction_id is required")
        return ""
    if len(value) > MAX_TRANSACTION_ID:
        problems.add("transaction_id", "max_length", "at most 255 characters")
    return value


def _value(body: dict[str, Any], problems: _Problems, warnings: list[dict[str, str]]) -> Any:
    """`value`, or its deprecated alias `count`; UNSET when neither is given."""
    name = "value"
    raw = body.get("value")
    if raw is None and body.get("count") is not None:
        name, raw = "count", body["count"]
    if body.get("count") is not None:
        warnings.append(
            {
                "field": "count",
                "code": "deprecated_field",
                "message": "`count` is deprecated; send `value` instead",
            }
        )
    if raw is None:
        return UNSET
    number = _integer(raw)
    if number is None:
        problems.add(name, "invalid", f"{name} must be an integer")
    return number


def _properties(body: dict[str, Any], problems: _Problems) -> Any:
    if "properties" not in body:
        return UNSET
    value = body["properties"]
    if value is not None and not isinstance(value, dict):
        problems.add("properties", "invalid", "properties must be an object or null")
    return value


def _brick(context: AppContext, organization_id: str, brick_id: str) -> Meter:
    with context.db.read() as conn:
        try:
            return get_meter(conn, organization_id, brick_id)
        except NotFound as exc:
            # In a body, an unknown brick is a bad request, like an unknown subscription.
            raise InvalidInput(
                exc.message,
                code="invalid_batch",
                details=[{"field": "meter", "code": exc.code, "message": exc.message}],
            ) from exc


@router.post("/usage/", status_code=201, openapi_extra=_docs(UsageEntryIn))
async def submit_usage(request: Request, organization_id: Organization) -> Response:
    context: AppContext = request.app.state.context
    body = _object(parse_json(await request.body(), exact=True))
    problems = _Problems()
    warnings: list[dict[str, str]] = []
    transaction_id = _transaction_id(body, problems)
    ids = {}
    for name in ("subscription_id", "brick_id"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.add(name, "required", f"{name} is required")
        ids[name] = value
    value = _value(body, problems, warnings)
    if value is UNSET:
        problems.add("value", "required", "value is required")
    raw_time = body.get("time")
    instant = None
    if not isinstance(raw_time, str):
        problems.add("time", "required", "time (ISO-8601) is required")
    else:
        try:
            instant = parse_instant(raw_time)
        except ValueError:
            problems.add("time", "invalid", "time must be an ISO-8601 timestamp")
    properties = _properties(body, problems)
    problems.raise_any("the usage entry is not valid")

    meter = await run_in_threadpool(_brick, context, organization_id, str(ids["brick_id"]))
    call = call_for_brick(meter)
    event = {
        "idempotency_key": transaction_key(transaction_id),
        "subscription_id": ids["subscription_id"],
        "meter": meter.id,
        "timestamp": instant,
        "operation": call.operation,
        "quantity": value,
        "properties": None if properties is UNSET else properties,
    }
    await context.usage.record_async(organization_id, [event], source=SOURCE)
    return ExactJSONResponse({"message": SUBMITTED, "warnings": warnings}, status_code=201)


@router.patch("/usage/", openapi_extra=_docs(UsageUpdateIn))
async def update_usage(request: Request, organization_id: Organization) -> Response:
    context: AppContext = request.app.state.context
    body = _object(parse_json(await request.body(), exact=True))
    problems = _Problems()
    warnings: list[dict[str, str]] = []
    transaction_id = _transaction_id(body, problems)
    value = _value(body, problems, warnings)
    properties = _properties(body, problems)
    if not problems.items and value is UNSET and properties is UNSET:
        problems.add("value", "required", "give value and/or properties to update")
    problems.raise_any("the update is not valid")
    await run_in_threadpool(
        context.usage.amend,
        organization_id,
        transaction_key(transaction_id),
        quantity=value,
        properties=properties,
        source=SOURCE,
    )
    return ExactJSONResponse({"message": UPDATED, "warnings": warnings})


@router.delete("/usage/", openapi_extra=_docs(TransactionIn))
async def delete_usage(request: Request, organization_id: Organization) -> Response:
    context: AppContext = request.app.state.context
    raw = await request.body()
    # The vendor's own example sends no body, so `?transaction_id=` is accepted too.
    body = _object(parse_json(raw, exact=True)) if raw.strip() else dict(request.query_params)
    check_strings(body)
    problems = _Problems()
    transaction_id = _transaction_id(body, problems)
    problems.raise_any("the request is not valid")
    await run_in_threadpool(
        context.usage.void, organization_id, transaction_key(transaction_id), source=SOURCE
    )
    return ExactJSONResponse({"message": DELETED})


# The vendor documents both `/usage/` and `/usage`; answer both rather than redirect (a redirect
# turns a POST into a GET in some clients).
router.add_api_route("/usage", submit_usage, methods=["POST"], include_in_schema=False)
router.add_api_route("/usage", update_usage, methods=["PATCH"], include_in_schema=False)
router.add_api_route("/usage", delete_usage, methods=["DELETE"], include_in_schema=False)
