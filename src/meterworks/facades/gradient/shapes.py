"""Gradient request bodies in, Gradient shapes out: validation and rendering, no rules.

Bodies arrive as exact JSON (numbers as Decimal). Every check here refuses with InvalidInput,
which the facade answers 400, the vendor's status for a malformed request.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

from meterworks.catalog.meters import KEY_PATTERN, Meter
from meterworks.customers.service import Customer
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import DecimalInputError, format_decimal, parse_decimal
from meterworks.kit.instants import format_instant

NAME_LENGTH = 200
# Where a service keeps what Gradient says about it beyond name and description.
SERVICE_METADATA_KEY = "gradient"
# Fields of a service the facade owns; any other field a client sends is kept as given.
SERVICE_FIELDS = frozenset(
    {"id", "name", "description", "category", "subcategory", "key", "unit", "aggregation"}
)
MAX_EXTRA_FIELDS = 50
# A client's account ids are kept as customer external ids, at most this long.
ACCOUNT_ID_LENGTH = 200


# The vendor's own path parameter names, as its docs and SDK show them.
ServiceId = Annotated[str, Path(alias="serviceId", description="a meter id (or key)")]
AccountId = Annotated[str, Path(alias="accountId", description="the customer's external id")]


class GradientError(BaseModel):
    """Every error this facade answers."""

    statusCode: int  # noqa: N815 - the vendor's field name
    message: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": GradientError, "description": meaning}
    for status, meaning in (
        (400, "invalid body, id type or query"),
        (401, "invalid GRADIENT-TOKEN"),
        (403, "the integration is disabled (unit counts)"),
        (404, "unknown or unmapped account or service"),
        (429, "over the per-token rate limit; see Retry-After"),
    )
}


def json_request(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a JSON body the facade reads itself (so FastAPI cannot describe it)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def invalid(message: str, code: str = "invalid_request") -> InvalidInput:
    return InvalidInput(message, code=code)


def json_object(payload: Any, what: str = "the request body") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid(f"{what} must be a JSON object", "invalid_body")
    return payload


def text(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    nullable: bool = True,
    max_length: int = NAME_LENGTH,
) -> str | None:
    """A string field, stripped; None when absent (or null, if allowed)."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(f"{name} is required", "missing_field")
        if name in body and not nullable:
            raise invalid(f"{name} must be a string", "invalid_field")
        return None
    if not isinstance(value, str):
        raise invalid(
            f"{name} must be a string", "invalid_id_type" if "Id" in name else "invalid_field"
        )
    value = value.strip()
    if required and not value:
        raise invalid(f"{name} must not be empty", "invalid_field")
    if len(value) > max_length:
        raise invalid(f"{name} must be at most {max_length} characters", "invalid_field")
    return value


def required_text(body: dict[str, Any], name: str, *, max_length: int = NAME_LENGTH) -> str:
    value = text(body, name, required=True, max_length=max_length)
    assert value is not None  # text() raises for a required field that is missing
    return value


def service_ref(service_id: str) -> str:
    """A serviceId is a meter id or key; anything else cannot name one (vendor: 400)."""
    if not KEY_PATTERN.match(service_id):
        raise invalid(
            f"Invalid serviceId: {service_id!r} is not a service id or key", "invalid_id_type"
        )
    return service_id


def account_ref(account_id: str) -> str:
    """An accountId from a path: something a customer external id could be."""
    if not account_id.strip() or len(account_id) > ACCOUNT_ID_LENGTH or "\x00" in account_id:
        raise invalid(f"Invalid accountId: {account_id!r}", "invalid_id_type")
    return account_id


def flag(value: str | None, name: str) -> bool:
    if value is None or value.strip().lower() in {"", "false", "0"}:
        return False
    if value.strip().lower() in {"true", "1"}:
        return True
    raise invalid(f"{name} must be true or false", "invalid_query")


def unit_count_body(payload: Any) -> tuple[str, Decimal]:
    """(account id, unit count) from a set-unit-count body."""
    body = json_object(payload)
    account_id: str | None = None
    # accountId first; clientOId / clientOid are the deprecated spellings of the same thing.
    for name in ("accountId", "clientOId", "clientOid"):
        account_id = text(body, name, max_length=ACCOUNT_ID_LENGTH)
        if account_id:
            break
    if not account_id:
        raise invalid("accountId (or the deprecated clientOId) is required", "missing_field")
    if body.get("unitCount") is None:
        raise invalid("unitCount is required", "missing_field")
    try:
        unit_count = parse_decimal(body["unitCount"])
    except DecimalInputError as exc:
        raise invalid(f"unitCount {exc}", "invalid_quantity") from exc
    if unit_count < 0:
        raise invalid("unitCount must not be negative", "negative_quantity")
    return account_id, unit_count


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        # Stored JSON keeps exact numbers as decimal strings; answer them the same way.
        return format_decimal(value)
    return value


def service_extras(body: dict[str, Any]) -> dict[str, Any]:
    """The service's Gradient fields: category, subcategory and whatever else the client sent."""
    extras = {k: v for k, v in body.items() if k not in SERVICE_FIELDS}
    if len(extras) > MAX_EXTRA_FIELDS:
        raise invalid(f"a service carries at most {MAX_EXTRA_FIELDS} extra fields")
    for name in ("category", "subcategory"):
        if name in body:
            extras[name] = text(body, name)
    return _jsonable(extras)  # type: ignore[no-any-return]


def sku(meter: Meter) -> dict[str, Any]:
    """A meter as a Gradient service (sku); its `id` is the serviceId."""
    stored = meter.metadata.get(SERVICE_METADATA_KEY)
    extras = dict(stored) if isinstance(stored, dict) else {}
    core = {
        "id": meter.id,
        "name": meter.name,
        "description": meter.description or None,
        "category": extras.get("category"),
        "subcategory": extras.get("subcategory"),
        "key": meter.key,
        "unit": meter.unit,
        "aggregation": meter.aggregation.value,
        "createdAt": format_instant(meter.created_at),
        "updatedAt": format_instant(meter.updated_at),
    }
    # The client's own extra fields follow; they never shadow the facade's.
    return {**core, **{k: v for k, v in _jsonable(extras).items() if k not in core}}


def account(customer: Customer) -> dict[str, Any]:
    """A customer as a Gradient account: its `id` is the customer's external id."""
    description = customer.metadata.get("description")
    return {
        "id": customer.external_id,
        "name": customer.name,
        "description": description if isinstance(description, str) else None,
    }
