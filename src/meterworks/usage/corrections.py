"""Corrections: amending or voiding an event appends a superseding ledger entry."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from meterworks.catalog.meters import Aggregation, get_meter
from meterworks.db import tables as t
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.kit.decimals import DecimalInputError, parse_decimal
from meterworks.subscriptions.service import get_subscription
from meterworks.usage.aggregations import Entry, Rollup, apply, opened
from meterworks.usage.ingest import check_quantity, counted_value
from meterworks.usage.ledger import (
    advance_sequence,
    load_rollups,
    load_values,
    lock_sequence,
    rebuild_pair,
    save_rollups,
)
from meterworks.usage.periods import PeriodFinder

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """An event as it stands now: its latest revision."""

    idempotency_key: str
    revision: int
    status: str  # active | amended | voided
    subscription_id: str
    meter_id: str
    ts_us: int
    operation: str
    quantity: Decimal
    properties: dict[str, Any] | None
    source: str
    seq: int
    received_at_us: int


def current_event(conn: Connection, organization_id: str, key: str) -> LedgerEvent:
    e = t.usage_events.c
    row = conn.execute(
        select(t.usage_events)
        .where(e.organization_id == organization_id, e.idempotency_key == key)
        .order_by(e.revision.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(f"event `{key}` not found", code="event_not_found")
    status = {"event": "active", "amend": "amended", "void": "voided"}[row.kind]
    return LedgerEvent(
        idempotency_key=row.idempotency_key,
        revision=row.revision,
        status=status,
        subscription_id=row.subscription_id,
        meter_id=row.meter_id,
        ts_us=row.ts_us,
        operation=row.operation,
        quantity=row.quantity,
        properties=row.properties,
        source=row.source,
        seq=row.seq,
        received_at_us=row.received_at_us,
    )


def correct(
    conn: Connection,
    organization_id: str,
    key: str,
    *,
    void: bool,
    quantity: Any = _UNSET,
    properties: Any = _UNSET,
    source: str,
    received_at_us: int,
) -> LedgerEvent:
    """Amend (new quantity and/or properties) or void the event `key`; usage follows at once.

    Voiding a voided event changes nothing and answers the voided event (safe to retry).
    """
    next_seq = lock_sequence(conn, organization_id)
    before = current_event(conn, organization_id, key)
    if before.status == "voided":
        if void:
            return before
        raise Conflict(f"event `{key}` is voided and cannot be amended", code="event_voided")
    meter = get_meter(conn, organization_id, before.meter_id)
    subscription = get_subscription(conn, organization_id, before.subscription_id)
    new_quantity = before.quantity
    new_properties = before.properties
    if not void:
        if quantity is _UNSET and properties is _UNSET:
            raise InvalidInput(
                "nothing to amend: give quantity and/or properties",
                details=[{"field": "quantity", "message": "quantity or properties is required"}],
            )
        if quantity is not _UNSET:
            try:
                new_quantity = parse_decimal(quantity)
            except DecimalInputError as exc:
                raise InvalidInput(
                    f"quantity {exc}",
                    code="invalid_quantity",
                    details=[{"field": "quantity", "message": str(exc)}],
                ) from exc
        if properties is not _UNSET:
            if properties is not None and not isinstance(properties, dict):
                raise InvalidInput(
                    "properties must be an object",
                    details=[{"field": "properties", "message": "must be an object"}],
                )
            new_properties = properties
        problem = check_quantity(meter, before.operation, new_quantity, new_properties)
        if problem is not None:
            field, code, message = problem
            raise InvalidInput(message, code=code, details=[{"field": field, "message": message}])
    conn.execute(
        t.usage_events.insert().values(
            organization_id=organization_id,
            seq=next_seq,
            idempotency_key=key,
            revision=before.revision + 1,
            kind="void" if void else "amend",
            subscription_id=before.subscription_id,
            meter_id=before.meter_id,
            ts_us=before.ts_us,
            operation=before.operation,
            quantity=new_quantity,
            properties=new_properties,
            source=source,
            received_at_us=received_at_us,
            payload_hash=_correction_hash(before.revision + 1),
        )
    )
    advance_sequence(conn, organization_id, next_seq + 1)

    start = PeriodFinder(subscription).start_of(before.ts_us)
    if meter.aggregation.is_level:
        rebuild_pair(conn, organization_id, subscription, meter, start)
    else:
        pair = (subscription.id, meter.id)
        rows = load_rollups(conn, organization_id, {pair}, start).get(pair, {})
        rows = {s: r for s, r in rows.items() if s == start}
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            load_values(conn, organization_id, pair, rows)
        rollup = rows.get(start) or opened(start, meter.aggregation, Decimal(0))
        old_value = counted_value(meter, before.properties)
        apply(rollup, Entry(before.ts_us, 0, before.operation, before.quantity, old_value),
              meter.aggregation, sign=-1)  # fmt: skip
        if not void:
            new_value = counted_value(meter, new_properties)
            apply(rollup, Entry(before.ts_us, 0, before.operation, new_quantity, new_value),
                  meter.aggregation)  # fmt: skip
        _store_single(conn, organization_id, pair, rollup, meter.aggregation, old_value)
    return current_event(conn, organization_id, key)


def _store_single(
    conn: Connection,
    organization_id: str,
    pair: tuple[str, str],
    rollup: Rollup,
    aggregation: Aggregation,
    old_value: str | None,
) -> None:
    """Save one order-free rollup; a period left with no live event has no row at all."""
    if aggregation is Aggregation.UNIQUE_COUNT and old_value is not None:
        v = t.usage_rollup_values.c
        if old_value not in rollup.values:
            conn.execute(
                delete(t.usage_rollup_values).where(
                    v.organization_id == organization_id,
                    v.subscription_id == pair[0],
                    v.meter_id == pair[1],
                    v.period_start_us == rollup.period_start_us,
                    v.value == old_value,
                )
            )
    if rollup.event_count == 0:
        for table in (t.usage_rollup_values, t.usage_rollups):
            conn.execute(
                delete(table).where(
                    table.c.organization_id == organization_id,
                    table.c.subscription_id == pair[0],
                    table.c.meter_id == pair[1],
                    table.c.period_start_us == rollup.period_start_us,
                )
            )
        return
    save_rollups(conn, organization_id, [(pair, rollup, aggregation is Aggregation.UNIQUE_COUNT)])


def _correction_hash(revision: int) -> str:
    return f"correction-{revision}"
