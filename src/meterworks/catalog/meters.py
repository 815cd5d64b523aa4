"""Meters: what is measured, in which unit, aggregated how."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection, Row

from meterworks.db import tables as t
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.kit.ids import new_id


class Aggregation(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    LATEST = "latest"
    PRORATED = "prorated"
    UNIQUE_COUNT = "unique_count"

    @property
    def is_level(self) -> bool:
        """Level meters follow a level that `set` replaces and `add` moves, carried over periods."""
        return self in _LEVEL


_LEVEL = frozenset({Aggregation.MAX, Aggregation.LATEST, Aggregation.PRORATED})

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")
# Meters are found by id or by key: a key shaped like an id could name another meter.
ID_SHAPED = re.compile(r"^mtr_[0-9a-z]{26}$")


@dataclass(frozen=True, slots=True)
class Meter:
    id: str
    key: str
    name: str
    unit: str
    aggregation: Aggregation
    property: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


def quantity_unit(meter: Meter) -> str:
    """The unit of a meter's billed quantity: a prorated meter counts unit-days."""
    return meter.unit + ("-days" if meter.aggregation is Aggregation.PRORATED else "")


def meter_from_row(row: Row[Any]) -> Meter:
    return Meter(
        id=row.id,
        key=row.key,
        name=row.name,
        unit=row.unit,
        aggregation=Aggregation(row.aggregation),
        property=row.property,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=dict(row.metadata or {}),
    )


def create_meter(
    conn: Connection,
    organization_id: str,
    *,
    key: str,
    name: str,
    unit: str,
    aggregation: str,
    property: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime,
) -> Meter:
    problems: list[dict[str, str]] = []
    if not KEY_PATTERN.match(key or ""):
        problems.append(
            {"field": "key", "message": "1-200 characters of letters, digits, `_ . : -`"}
        )
    elif ID_SHAPED.match(key):
        problems.append({"field": "key", "message": "must not have the shape of a meter id"})
    if not (name or "").strip() or len(name.strip()) > 200:
        problems.append({"field": "name", "message": "is required, at most 200 characters"})
    if not (unit or "").strip() or len(unit) > 64:
        problems.append({"field": "unit", "message": "is required, at most 64 characters"})
    try:
        kind = Aggregation(aggregation)
    except ValueError:
        problems.append(
            {
                "field": "aggregation",
                "message": "must be one of " + ", ".join(a.value for a in Aggregation),
            }
        )
        kind = Aggregation.SUM
    if kind is Aggregation.UNIQUE_COUNT and not (property or "").strip():
        problems.append({"field": "property", "message": "is required for unique_count"})
    elif len((property or "").strip()) > 200:
        problems.append({"field": "property", "message": "at most 200 characters"})
    if problems:
        raise InvalidInput("the meter is not valid", details=problems)
    existing = conn.execute(
        select(t.meters.c.id).where(
            t.meters.c.organization_id == organization_id, t.meters.c.key == key
        )
    ).first()
    if existing is not None:
        raise Conflict(
            f"a meter with key `{key}` already exists",
            code="meter_key_taken",
            details={"meter_id": existing.id},
        )
    meter = Meter(
        id=new_id("mtr"),
        key=key,
        name=name.strip(),
        unit=unit.strip(),
        aggregation=kind,
        property=(property or "").strip() or None,
        description=description,
        created_at=now,
        updated_at=now,
        metadata=dict(metadata or {}),
    )
    conn.execute(
        t.meters.insert().values(
            organization_id=organization_id,
            id=meter.id,
            key=meter.key,
            name=meter.name,
            unit=meter.unit,
            aggregation=meter.aggregation.value,
            property=meter.property,
            description=meter.description,
            metadata=meter.metadata,
            created_at=now,
            updated_at=now,
        )
    )
    return meter


def update_meter(
    conn: Connection,
    organization_id: str,
    meter_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime,
) -> Meter:
    """Names and descriptions may change; key, unit and aggregation never do (the ledger
    relies on them)."""
    meter = get_meter(conn, organization_id, meter_id)
    values: dict[str, Any] = {"updated_at": now}
    if name is not None:
        if not name.strip() or len(name.strip()) > 200:
            raise InvalidInput(
                "the meter is not valid",
                details=[{"field": "name", "message": "is required, at most 200 characters"}],
            )
        values["name"] = name.strip()
    if description is not None:
        values["description"] = description
    if metadata is not None:
        values["metadata"] = {**meter.metadata, **metadata}
    conn.execute(
        t.meters.update()
        .where(t.meters.c.organization_id == organization_id, t.meters.c.id == meter.id)
        .values(**values)
    )
    return get_meter(conn, organization_id, meter.id)


def get_meter(conn: Connection, organization_id: str, ref: str) -> Meter:
    """A meter by id or by key."""
    row = conn.execute(
        select(t.meters).where(
            t.meters.c.organization_id == organization_id,
            or_(t.meters.c.id == ref, t.meters.c.key == ref),
        )
    ).first()
    if row is None:
        raise NotFound(f"meter `{ref}` not found", code="meter_not_found")
    return meter_from_row(row)


def list_meters(conn: Connection, organization_id: str) -> list[Meter]:
    rows = conn.execute(
        select(t.meters)
        .where(t.meters.c.organization_id == organization_id)
        .order_by(t.meters.c.created_at, t.meters.c.id)
    ).all()
    return [meter_from_row(row) for row in rows]


# Built once: every ingested batch runs this lookup, and building a statement costs more than
# running it on an indexed table.
_BY_REF = select(t.meters).where(
    t.meters.c.organization_id == bindparam("organization_id"),
    or_(
        t.meters.c.id.in_(bindparam("refs", expanding=True)),
        t.meters.c.key.in_(bindparam("refs", expanding=True)),
    ),
)


def meters_by_ref(conn: Connection, organization_id: str, refs: set[str]) -> dict[str, Meter]:
    """Meters found by id or key; each ref found maps to its meter."""
    if not refs:
        return {}
    rows = conn.execute(_BY_REF, {"organization_id": organization_id, "refs": list(refs)}).all()
    found: dict[str, Meter] = {}
    for row in rows:
        meter = meter_from_row(row)
        if meter.id in refs:
            found[meter.id] = meter
        if meter.key in refs:
            found[meter.key] = meter
    return found
