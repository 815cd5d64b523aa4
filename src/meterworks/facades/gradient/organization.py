"""The partner integration and its accounts: a Gradient account is a customer by external id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from meterworks.api.context import Context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.customers.service import (
    Customer,
    create_customer,
    get_customer_by_external_id,
    list_customers,
    update_customer,
)
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.facades.gradient import integration
from meterworks.facades.gradient.auth import GradientCaller
from meterworks.facades.gradient.body import Payload
from meterworks.facades.gradient.shapes import (
    ACCOUNT_ID_LENGTH,
    ERROR_RESPONSES,
    AccountId,
    account,
    account_ref,
    invalid,
    json_object,
    json_request,
    required_text,
    text,
)
from meterworks.kit.instants import format_instant

router = APIRouter(route_class=DecimalRoute, responses=ERROR_RESPONSES, tags=["organization"])

MAX_ACCOUNTS_PER_CALL = 10_000
PAGE = 1_000
DESCRIPTION_LENGTH = 10_000


def _details(found: integration.Integration) -> dict[str, Any]:
    return {
        "organizationId": found.partner_id,
        "name": found.partner_name,
        "vendorId": found.organization_id,
        "vendorName": found.organization_name,
        "integrationId": found.partner_id,
        "status": found.status,
        "lastSyncedAt": format_instant(found.last_synced_at) if found.last_synced_at else None,
    }


@router.get(
    "/organization",
    summary="Get partner integration settings",
    description="The partner integration this token belongs to; also a credentials check.",
)
def get_integration(caller: GradientCaller, context: Context) -> dict[str, Any]:
    with context.db.read() as conn:
        found = integration.read_integration(conn, caller.organization_id, caller.partner_id)
    return _details(found)


@router.patch(
    "/organization/status/{status}",
    summary="Set integration status",
    description=f"One of {', '.join(integration.STATUSES)}. `disabled` refuses unit counts "
    "(403) until the status changes again.",
)
def set_integration_status(status: str, caller: GradientCaller, context: Context) -> dict[str, Any]:
    with context.db.transaction() as conn:
        integration.set_status(conn, caller.organization_id, status)
        found = integration.read_integration(conn, caller.organization_id, caller.partner_id)
    return {"status": 200, "message": "Updated integration status", "data": _details(found)}


def _all_customers(context: Context, organization_id: str) -> list[Customer]:
    found: list[Customer] = []
    with context.db.read() as conn:
        while True:
            after = found[-1].id if found else None
            page = list_customers(conn, organization_id, limit=PAGE, after=after)
            found.extend(page)
            if len(page) < PAGE:
                return found


@router.get("/organization/accounts", summary="Get accounts")
def get_accounts(caller: GradientCaller, context: Context) -> list[dict[str, Any]]:
    return [account(c) for c in _all_customers(context, caller.organization_id)]


@router.get(
    "/organization/clients",
    summary="Get clients (deprecated)",
    description="Deprecated by the vendor in favour of accounts; answers the same list.",
    deprecated=True,
)
def get_clients(caller: GradientCaller, context: Context) -> list[dict[str, Any]]:
    return [account(c) for c in _all_customers(context, caller.organization_id)]


def _account_items(payload: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, name, metadata changes) per account; the whole array is checked before any write."""
    if not isinstance(payload, list):
        raise invalid("the request body must be a JSON array of accounts", "invalid_body")
    if len(payload) > MAX_ACCOUNTS_PER_CALL:
        raise invalid(f"at most {MAX_ACCOUNTS_PER_CALL} accounts per call", "too_many_accounts")
    items: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for index, raw in enumerate(payload):
        try:
            body = json_object(raw, "each account")
            account_id = required_text(body, "id", max_length=ACCOUNT_ID_LENGTH)
            name = required_text(body, "name")
            description = text(body, "description", max_length=DESCRIPTION_LENGTH)
        except InvalidInput as exc:
            raise invalid(f"account [{index}]: {exc.message}", exc.code) from exc
        if account_id in seen:
            raise invalid(f"account [{index}]: id {account_id} appears twice", "duplicate_account")
        seen.add(account_id)
        changes = {"description": description} if "description" in body else {}
        items.append((account_id, name, changes))
    return items


def _upsert_accounts(
    context: Context,
    conn: Connection,
    organization_id: str,
    items: list[tuple[str, str, dict[str, Any]]],
) -> tuple[list[dict[str, Any]], int]:
    """The accounts as written, and how many of them are new."""
    now = context.clock.now()
    created = 0
    written: list[dict[str, Any]] = []
    for account_id, name, changes in items:
        try:
            existing = get_customer_by_external_id(conn, organization_id, account_id)
        except NotFound:
            customer = create_customer(
                conn,
                organization_id,
                external_id=account_id,
                name=name,
                metadata=changes,
                now=now,
            )
            created += 1
        else:
            customer = update_customer(
                conn, organization_id, existing.id, name=name, metadata=changes, now=now
            )
        written.append(account(customer))
    return written, created


@router.post(
    "/organization/accounts",
    status_code=201,
    summary="Create accounts",
    description="A JSON array of `{id, name, description?}`, written all or nothing. An id "
    "that already exists is updated (name, and description when given): syncing the full "
    "account list again is harmless.",
    openapi_extra=json_request(
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                },
            },
        }
    ),
)
def create_accounts(caller: GradientCaller, context: Context, payload: Payload) -> dict[str, Any]:
    items = _account_items(payload)
    try:
        with context.db.transaction() as conn:
            written, created = _upsert_accounts(context, conn, caller.organization_id, items)
    except IntegrityError as exc:
        # Another call created one of these ids between our read and our insert.
        raise Conflict(
            "accounts were changed by a concurrent call; retry (it is harmless)",
            code="concurrent_update",
        ) from exc
    updated = len(written) - created
    return {
        "status": 201,
        "message": "Created accounts",
        "created": created,
        "updated": updated,
        "data": written,
    }


@router.patch(
    "/organization/accounts/{accountId}",
    summary="Update account",
    openapi_extra=json_request(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
        }
    ),
)
def update_account(
    account_id: AccountId,
    caller: GradientCaller,
    context: Context,
    payload: Payload,
) -> dict[str, Any]:
    account_id = account_ref(account_id)
    body = json_object(payload)
    new_id = text(body, "id", nullable=False, max_length=ACCOUNT_ID_LENGTH)
    if new_id is not None and new_id != account_id:
        raise invalid("an account's id cannot change", "immutable_field")
    name = text(body, "name", nullable=False)
    if name == "":
        raise invalid("name must not be empty", "invalid_field")
    description = text(body, "description", max_length=DESCRIPTION_LENGTH)
    changes = {"description": description} if "description" in body else None
    with context.db.transaction() as conn:
        try:
            existing = get_customer_by_external_id(conn, caller.organization_id, account_id)
        except NotFound as exc:
            raise NotFound(
                f"No account found with id: {account_id}", code="account_not_found"
            ) from exc
        customer = update_customer(
            conn,
            caller.organization_id,
            existing.id,
            **({"name": name} if name is not None else {}),
            metadata=changes,
            now=context.clock.now(),
        )
    return {"status": 200, "message": "Updated account", "data": account(customer)}
