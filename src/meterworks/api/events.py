"""Usage events: batched ingestion and corrections."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from meterworks.api.auth import OrganizationId
from meterworks.api.context import AppContext, Context
from meterworks.api.jsonbody import DecimalRoute, parse_body
from meterworks.api.schemas import EventOut, IngestOut
from meterworks.errors import InvalidInput
from meterworks.usage.drafts import decode_batch
from meterworks.usage.service import UNSET

# Bodies up to this size (some 300 events) are decoded on the event loop: a hop to a worker
# thread costs more than decoding them. Larger ones would hold the loop for milliseconds.
DECODED_INLINE_BYTES = 64 * 1024

router = APIRouter(prefix="/v1", route_class=DecimalRoute, tags=["events"])


class EventIn(BaseModel):
    idempotency_key: str = Field(description="your unique id for this event; replays dedupe")
    subscription_id: str | None = None
    customer_id: str | None = None
    external_customer_id: str | None = None
    meter: str = Field(description="meter id or key")
    timestamp: str
    operation: str = Field("add", description="add (a delta) or set (a level)")
    quantity: str | int | None = Field(None, description="decimal string or JSON number")
    properties: dict[str, Any] | None = None


class BatchIn(BaseModel):
    events: list[EventIn] = Field(description="1 to 10,000 events, validated as a whole")


@router.post(
    "/events",
    response_model=IngestOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BatchIn.model_json_schema()}},
        }
    },
)
async def ingest_events(
    request: Request, organization_id: OrganizationId, context: Context
) -> JSONResponse:
    # Most calls are answered by api/hot.py before they reach this route, the same way.
    return await ingest(context, organization_id, await request.body())


def events_of(raw_body: bytes, make_way: Callable[[], None] | None = None) -> Any:
    """The events of a `POST /v1/events` body. An ordinary body is decoded straight into
    drafts; any other is read here, and validated event by event, so a bad batch is answered
    with every bad index at once. Numbers stay exact either way."""
    events = decode_batch(raw_body, make_way)
    if events is None:
        body = parse_body(raw_body)
        if not isinstance(body, dict) or "events" not in body:
            raise InvalidInput(
                "the body must be an object with an `events` list",
                code="invalid_batch",
                details=[{"field": "events", "message": "is required"}],
            )
        events = body["events"]
    return events


async def ingest(context: AppContext, organization_id: str, raw_body: bytes) -> JSONResponse:
    """`POST /v1/events`'s answer to an authenticated caller's body."""
    usage = context.usage
    if len(raw_body) < DECODED_INLINE_BYTES:
        result = await usage.record_async(organization_id, events_of(raw_body), source="native")
    else:
        # Decoded and validated in one worker thread, giving way to the writer between steps.
        result = await usage.record_read_async(
            organization_id, partial(events_of, raw_body, usage.writer.make_way), source="native"
        )
    # IngestOut's shape, written directly: validating our own two integers again through the
    # response model costs more than the answer itself on this hot path.
    return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates})


class AmendIn(BaseModel):
    quantity: str | int | None = None
    properties: dict[str, Any] | None = None


@router.patch("/events/{idempotency_key}", response_model=EventOut)
def amend_event(
    idempotency_key: str, body: dict[str, Any], organization_id: OrganizationId, context: Context
) -> EventOut:
    unknown = sorted(set(body) - {"quantity", "properties"})
    if unknown:
        raise InvalidInput(
            "only quantity and properties can be amended",
            details=[{"field": f, "message": "cannot be amended"} for f in unknown],
        )
    event = context.usage.amend(
        organization_id,
        idempotency_key,
        quantity=body.get("quantity", UNSET),
        properties=body.get("properties", UNSET),
        source="native",
    )
    return EventOut.of(event)


@router.delete("/events/{idempotency_key}", response_model=EventOut)
def void_event(idempotency_key: str, organization_id: OrganizationId, context: Context) -> EventOut:
    return EventOut.of(context.usage.void(organization_id, idempotency_key, source="native"))
