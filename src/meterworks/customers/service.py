"""Customers: create, read, update, delete (soft: invoices keep pointing at them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from meterworks.db import tables as t
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.kit.decimals import DecimalInputError, parse_decimal
from meterworks.kit.ids import new_id

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    external_id: str
    name: str
    email: str | None
    address: dict[str, Any] | None
    tax_rate: Decimal | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


def customer_from_row(row: Row[Any]) -> Customer:
    return Customer(
        id=row.id,
        external_id=row.external_id,
        name=row.name,
        email=row.email,
        address=row.address,
        tax_rate=row.tax_rate,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=dict(row.metadata or {}),
    )


def _check(
    external_id: Any, name: Any, email: Any, tax_rate: Any, address: Any
) -> tuple[list[dict[str, str]], Decimal | None]:
    problems: list[dict[str, str]] = []
    if external_id is not _UNSET and (
        not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 200
    ):
        problems.append({"field": "external_id", "message": "is required, 1-200 characters"})
    if name is not _UNSET and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        problems.append({"field": "name", "message": "is required, 1-200 characters"})
    if email not in (_UNSET, None) and (
        not isinstance(email, str) or "@" not in email or len(email) > 320
    ):
        problems.append({"field": "email", "message": "must be an e-mail address"})
    if address not in (_UNSET, None) and not isinstance(address, dict):
        problems.append({"field": "address", "message": "must be an object"})
    rate: Decimal | None = None
    if tax_rate not in (_UNSET, None):
        try:
            rate = parse_decimal(tax_rate)
            if not Decimal(0) <= rate <= Decimal(100):
                problems.append({"field": "tax_rate", "message": "must be between 0 and 100"})
        except DecimalInputError as exc:
            problems.append({"field": "tax_rate", "message": str(exc)})
    return problems, rate


def _ensure_external_id_free(
    conn: Connection, organization_id: str, external_id: str, except_id: str | None = None
) -> None:
    query = select(t.customers.c.id).where(
        t.customers.c.organization_id == organization_id,
        t.customers.c.external_id == external_id,
        t.customers.c.deleted_at.is_(None),
    )
    row = conn.execute(query).first()
    if row is not None and row.id != except_id:
        raise Conflict(
            f"a customer with external_id `{external_id}` already exists",
            code="external_id_taken",
            details={"customer_id": row.id},
        )


def create_customer(
    conn: Connection,
    organization_id: str,
    *,
    external_id: str,
    name: str,
    email: str | None = None,
    address: dict[str, Any] | None = None,
    tax_rate: Any = None,
    metadata: dict[str, Any] | None = None,
    now: datetime,
) -> Customer:
    problems, rate = _check(external_id, name, email, tax_rate, address)
    if problems:
        raise InvalidInput("the customer is not valid", details=problems)
    external_id = external_id.strip()
    _ensure_external_id_free(conn, organization_id, external_id)
    customer = Customer(
        id=new_id("cus"),
        external_id=external_id,
        name=name.strip(),
        email=email,
        address=address,
        tax_rate=rate,
        created_at=now,
        updated_at=now,
        metadata=dict(metadata or {}),
    )
    conn.execute(
        t.customers.insert().values(
            organization_id=organization_id,
            id=customer.id,
            external_id=customer.external_id,
            name=customer.name,
            email=customer.email,
            address=customer.address,
            tax_rate=customer.tax_rate,
            metadata=customer.metadata,
            created_at=now,
            updated_at=now,
        )
    )
    return customer


def update_customer(
    conn: Connection,
    organization_id: str,
    customer_id: str,
    *,
    external_id: Any = _UNSET,
    name: Any = _UNSET,
    email: Any = _UNSET,
    address: Any = _UNSET,
    tax_rate: Any = _UNSET,
    metadata: dict[str, Any] | None = None,
    now: datetime,
) -> Customer:
    """Change only the fields given; `None` clears an optional field."""
    current = get_customer(conn, organization_id, customer_id)
    problems, rate = _check(external_id, name, email, tax_rate, address)
    if metadata is not None and not isinstance(metadata, dict):
        # A PATCH body is free-form JSON: metadata may arrive as any JSON value.
        problems.append({"field": "metadata", "message": "must be an object"})
    if problems:
        raise InvalidInput("the customer is not valid", details=problems)
    values: dict[str, Any] = {"updated_at": now}
    if external_id is not _UNSET:
        _ensure_external_id_free(conn, organization_id, external_id.strip(), current.id)
        values["external_id"] = external_id.strip()
    if name is not _UNSET:
        values["name"] = name.strip()
    if email is not _UNSET:
        values["email"] = email
    if address is not _UNSET:
        values["address"] = address
    if tax_rate is not _UNSET:
        values["tax_rate"] = rate
    if metadata is not None:
        values["metadata"] = {**current.metadata, **metadata}
    conn.execute(
        t.customers.update()
        .where(t.customers.c.organization_id == organization_id, t.customers.c.id == current.id)
        .values(**values)
    )
    return get_customer(conn, organization_id, current.id)


def delete_customer(
    conn: Connection, organization_id: str, customer_id: str, now: datetime
) -> None:
    """Soft delete: the row stays for invoices; its external_id is freed for reuse."""
    current = get_customer(conn, organization_id, customer_id)
    active = conn.execute(
        select(t.subscriptions.c.id).where(
            t.subscriptions.c.organization_id == organization_id,
            t.subscriptions.c.customer_id == current.id,
            (t.subscriptions.c.ends_at.is_(None)) | (t.subscriptions.c.ends_at > now),
        )
    ).first()
    if active is not None:
        raise Conflict(
            "the customer has a running subscription; cancel it first",
            code="customer_has_subscriptions",
            details={"subscription_id": active.id},
        )
    conn.execute(
        t.customers.update()
        .where(t.customers.c.organization_id == organization_id, t.customers.c.id == current.id)
        .values(deleted_at=now, updated_at=now)
    )


def get_customer(conn: Connection, organization_id: str, customer_id: str) -> Customer:
    row = conn.execute(
        select(t.customers).where(
            t.customers.c.organization_id == organization_id,
            t.customers.c.id == customer_id,
            t.customers.c.deleted_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(f"customer `{customer_id}` not found", code="customer_not_found")
    return customer_from_row(row)


def get_customer_by_external_id(
    conn: Connection, organization_id: str, external_id: str
) -> Customer:
    row = conn.execute(
        select(t.customers).where(
            t.customers.c.organization_id == organization_id,
            t.customers.c.external_id == external_id,
            t.customers.c.deleted_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(
            f"customer with external_id `{external_id}` not found", code="customer_not_found"
        )
    return customer_from_row(row)


def list_customers(
    conn: Connection, organization_id: str, *, limit: int = 100, after: str | None = None
) -> list[Customer]:
    query = select(t.customers).where(
        t.customers.c.organization_id == organization_id, t.customers.c.deleted_at.is_(None)
    )
    if after is not None:
        query = query.where(t.customers.c.id > after)
    rows = conn.execute(query.order_by(t.customers.c.id).limit(limit)).all()
    return [customer_from_row(row) for row in rows]
