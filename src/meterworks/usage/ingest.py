"""Validating a batch of usage events as a whole, before anything is written.

Every transport (native API, facades) hands events here in the native shape; any invalid event
refuses the whole batch with per-index errors, so a refused batch writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from meterworks.catalog.meters import Aggregation, Meter, meters_by_ref
from meterworks.db import tables as t
from meterworks.db.dialect import Listed
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import plain_trimmed
from meterworks.kit.instants import from_micros, to_micros
from meterworks.subscriptions.service import (
    Subscription,
    active_for_meter,
    subscriptions_by_id,
    subscriptions_charging,
)
from meterworks.usage.drafts import STEP, Draft, Errors, parse_event
from meterworks.usage.periods import PeriodFinder

SOURCES = frozenset({"native", "salesbricks", "gradient", "saaslogic"})
ONE = Decimal(1)
# Read once: each look-up of an Enum member on its class costs a Python call (3.11).
_SUM, _COUNT, _UNIQUE_COUNT = Aggregation.SUM, Aggregation.COUNT, Aggregation.UNIQUE_COUNT
_NONE: frozenset[str] = frozenset()


# A struct, like `Draft`: one is built per event on the hot path, and a dataclass's __init__
# took about four times as long (a frozen one's, a call of object.__setattr__ per field, as much
# as everything else done with the event). It holds its subscription and meter, which never
# hold an event: no reference cycle, so the garbage collector need not track it.
class NewEvent(msgspec.Struct, gc=False):
    """A validated event, resolved to its subscription and meter, ready for the ledger."""

    idempotency_key: str
    subscription: Subscription
    meter: Meter
    ts_us: int
    operation: str
    quantity: Decimal
    properties: dict[str, Any] | None
    source: str
    payload_hash: str
    # Worked out while the batch is validated, in parallel request threads, so the ledger's one
    # writer only stores them: the start of the billing period `ts_us` falls in (µs), the
    # value a unique_count meter counts, and `quantity` as the ledger column stores it.
    period_start_us: int
    unique_value: str | None
    quantity_text: str
    # `properties` as the ledger stores it (the JSON column's text), encoded once on the way in.
    properties_json: str | None = None


def property_value(properties: dict[str, Any] | None, name: str) -> str | None:
    """The `unique_count` value of an event, as a string; None when absent."""
    if not properties or name not in properties:
        return None
    value = properties[name]
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # The ledger stores a JSON number with decimals as its plain text (db/engine.py keeps it
        # exact that way), and rebuilds read it back as that string: name it the same way here,
        # or the running total and a rebuild disagree on the value (1.50 vs 1.5).
        return format(value, "f")[:255]
    return str(value)[:255]


def counted_value(meter: Meter, properties: dict[str, Any] | None) -> str | None:
    """The value a unique_count meter counts for an event with these properties; None for
    other meters, and where the property is absent."""
    if meter.aggregation is not _UNIQUE_COUNT or meter.property is None:
        return None
    return property_value(properties, meter.property)


def payload_hash(
    subscription_id: str,
    meter_id: str,
    ts_us: int,
    operation: str,
    quantity: str,
    properties_text: str | None,
) -> str:
    """The hash a replay is told from a different payload by; `quantity` as `format_decimal`
    writes it. The same payload hashes the same for the life of the ledger."""
    # Ids are generated (no separator inside), so only the trailing properties are free text.
    canonical = f"{subscription_id}\x1f{meter_id}\x1f{ts_us}\x1f{operation}\x1f{quantity}"
    if properties_text is not None and properties_text != "{}":
        canonical += "\x1f" + properties_text
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


class _Kept:
    """What ingestion looks up on every call and can never change once it exists.

    A meter's id, key, aggregation and property are fixed at creation (only its name and
    description change, and ingestion uses neither), and a plan never changes, so neither does
    the set of meters it charges. Each process keeps what it has found; what it has not found
    (a meter created since, by any process) is looked up in the database, and a miss is never
    kept. Bounded: past `limit` entries a table starts again empty.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self._limit = limit
        self._meters: dict[tuple[str, str], Meter] = {}
        self._plans: dict[tuple[str, str], frozenset[str]] = {}

    def kept(self, organization_id: str, ref: str) -> Meter | None:
        return self._meters.get((organization_id, ref))

    def meters(self, conn: Connection, organization_id: str, refs: set[str]) -> dict[str, Meter]:
        found: dict[str, Meter] = {}
        unknown: set[str] = set()
        for ref in refs:
            meter = self._meters.get((organization_id, ref))
            if meter is None:
                unknown.add(ref)
            else:
                found[ref] = meter
        if unknown:
            looked_up = meters_by_ref(conn, organization_id, unknown)
            if len(self._meters) + len(looked_up) > self._limit:
                self._meters.clear()
            for ref, meter in looked_up.items():
                self._meters[(organization_id, ref)] = meter
            found.update(looked_up)
        return found

    def plan_meters(
        self, conn: Connection, organization_id: str, plan_ids: set[str]
    ) -> dict[str, frozenset[str]]:
        found = {
            plan_id: kept
            for plan_id in plan_ids
            if (kept := self._plans.get((organization_id, plan_id))) is not None
        }
        unknown = plan_ids - found.keys()
        if unknown:
            sets: dict[str, set[str]] = {}
            for row in conn.execute(
                select(t.plan_meters.c.plan_id, t.plan_meters.c.meter_id).where(
                    t.plan_meters.c.organization_id == organization_id,
                    t.plan_meters.c.plan_id.in_(unknown),
                )
            ):
                sets.setdefault(row.plan_id, set()).add(row.meter_id)
            if len(self._plans) + len(sets) > self._limit:
                self._plans.clear()
            for plan_id, meter_ids in sets.items():
                # Only plans with rows: a plan charging no meter is looked up again (cheap).
                found[plan_id] = self._plans[(organization_id, plan_id)] = frozenset(meter_ids)
        return found


_KEPT = _Kept()


def kept_meter(organization_id: str, ref: str) -> Meter | None:
    """The meter `ref` (id or key) names, from this process's copy, without a database read;
    None where the process has not met it yet. Read only what never changes from it: id, key,
    unit, aggregation and property (its name and description may have changed since)."""
    return _KEPT.kept(organization_id, ref)


def find_meter(conn: Connection, organization_id: str, ref: str) -> Meter | None:
    """The meter `ref` names, from this process's copy or else the database (then kept)."""
    return find_meters(conn, organization_id, {ref}).get(ref)


def find_meters(conn: Connection, organization_id: str, refs: set[str]) -> dict[str, Meter]:
    """`find_meter` for several refs at once: each one found maps to its meter."""
    return _KEPT.meters(conn, organization_id, refs)


def check_quantity(
    meter: Meter, operation: str, quantity: Decimal | None, properties: dict[str, Any] | None
) -> tuple[str, str, str] | None:
    """What is wrong with this operation on this meter, as (field, code, message), or None."""
    aggregation = meter.aggregation
    if operation == "set" and not aggregation.is_level:
        return (
            "operation",
            "operation_not_allowed",
            f"`set` is not allowed on a `{aggregation.value}` meter; it counts `add` events",
        )
    if quantity is None:
        if aggregation is _COUNT or aggregation is _UNIQUE_COUNT:
            return None
        return ("quantity", "missing_field", "quantity is required")
    if quantity < 0 and (aggregation is _SUM or operation == "set"):
        return (
            "quantity",
            "negative_quantity",
            "quantity must not be negative"
            + (" on a `sum` meter" if aggregation is _SUM else " for `set`"),
        )
    if aggregation is _UNIQUE_COUNT:
        assert meter.property is not None
        if property_value(properties, meter.property) is None:
            return (
                "properties",
                "missing_property",
                f"properties.{meter.property} is required by this unique_count meter",
            )
    return None


# Built once (single-event calls run them on every request).
_BY_EXTERNAL_IDS = Listed(
    "ids",
    lambda ids: select(t.customers.c.id, t.customers.c.external_id).where(
        t.customers.c.organization_id == bindparam("organization_id"),
        t.customers.c.external_id.in_(ids),
        t.customers.c.deleted_at.is_(None),
    ),
)
_LIVE_CUSTOMERS = Listed(
    "ids",
    lambda ids: select(t.customers.c.id).where(
        t.customers.c.organization_id == bindparam("organization_id"),
        t.customers.c.id.in_(ids),
        t.customers.c.deleted_at.is_(None),
    ),
)


def prepare_batch(
    conn: Connection,
    organization_id: str,
    raw_events: Any,
    *,
    source: str,
    now: datetime,
    max_events: int,
    future_tolerance_seconds: int,
    make_way: Callable[[], None] | None = None,
) -> list[NewEvent]:
    """Validate and resolve a whole batch; raise InvalidInput listing every bad event.

    `make_way`, where given, is called every `STEP` events (the ledger writer's `make_way`).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source}")
    if not isinstance(raw_events, list) or not raw_events:
        raise InvalidInput("`events` must be a non-empty list", code="invalid_batch", details=[])
    if len(raw_events) > max_events:
        raise InvalidInput(
            f"a batch holds at most {max_events} events",
            code="batch_too_large",
            details={"max_events": max_events, "received": len(raw_events)},
        )
    errors = Errors()
    drafts: list[Draft] = []
    for start in range(0, len(raw_events), STEP):
        if make_way is not None:
            make_way()
        for index, raw in enumerate(raw_events[start : start + STEP], start):
            if type(raw) is Draft:  # decoded with its body (`decode_batch`)
                raw.index = index
                drafts.append(raw)
            elif (draft := parse_event(index, raw, errors)) is not None:
                drafts.append(draft)

    meters = _KEPT.meters(conn, organization_id, {d.meter_ref for d in drafts})
    subs = subscriptions_by_id(
        conn, organization_id, {d.subscription_id for d in drafts if d.subscription_id}
    )
    customer_ids = {d.customer_id for d in drafts if d.customer_id}
    external_ids = {d.external_customer_id for d in drafts if d.external_customer_id}
    by_external: dict[str, str] = {}
    if external_ids:
        for row in _BY_EXTERNAL_IDS.execute(
            conn, sorted(external_ids), {"organization_id": organization_id}
        ):
            by_external[row.external_id] = row.id
    known_customers = set(by_external.values())
    if customer_ids:
        known_customers.update(
            row.id
            for row in _LIVE_CUSTOMERS.execute(
                conn, sorted(customer_ids), {"organization_id": organization_id}
            )
        )
    candidates = subscriptions_charging(
        conn, organization_id, customer_ids | set(by_external.values()), _KEPT.plan_meters
    )
    plan_meters: dict[str, AbstractSet[str]] = {}
    for pairs in candidates.values():
        for sub, meter_ids in pairs:
            plan_meters[sub.id] = meter_ids
    missing_plans = {s.plan_id for s in subs.values() if s.id not in plan_meters}
    if missing_plans:
        meter_sets = _KEPT.plan_meters(conn, organization_id, missing_plans)
        for sub in subs.values():
            plan_meters.setdefault(sub.id, meter_sets.get(sub.plan_id, _NONE))

    now_us = to_micros(now)
    horizon_us = now_us + future_tolerance_seconds * 1_000_000
    # Each subscription's window [starts_at, ends_at) in µs, the unit events are compared in.
    windows: dict[str, tuple[int, int]] = {}
    finders: dict[str, PeriodFinder] = {}
    no_end = 2**63
    events: list[NewEvent] = []
    for position, d in enumerate(drafts):
        if make_way is not None and position % STEP == 0:
            make_way()
        meter = meters.get(d.meter_ref)
        if meter is None:
            errors.add(d.index, "meter", "meter_not_found", f"meter `{d.meter_ref}` not found")
            continue
        found: Subscription | None
        if d.subscription_id is not None:
            found = subs.get(d.subscription_id)
            if found is None:
                errors.add(
                    d.index,
                    "subscription_id",
                    "subscription_not_found",
                    f"subscription `{d.subscription_id}` not found",
                )
                continue
        else:
            field = "customer_id" if d.customer_id else "external_customer_id"
            customer_id = d.customer_id or by_external.get(d.external_customer_id or "")
            if customer_id is None or customer_id not in known_customers:
                errors.add(d.index, field, "customer_not_found", "customer not found")
                continue
            found = active_for_meter(
                candidates.get(customer_id, []), meter.id, from_micros(d.ts_us)
            )
            if found is None:
                errors.add(
                    d.index,
                    field,
                    "no_active_subscription",
                    "the customer has no subscription at that timestamp whose plan has meter "
                    f"`{meter.key}`",
                )
                continue
        sub = found
        if meter.id not in plan_meters.get(sub.id, _NONE):
            errors.add(
                d.index,
                "meter",
                "meter_not_in_plan",
                f"the subscription's plan does not charge meter `{meter.key}`",
            )
            continue
        ts_us = d.ts_us
        if ts_us > horizon_us:
            errors.add(
                d.index,
                "timestamp",
                "timestamp_in_future",
                f"timestamp is more than {future_tolerance_seconds} seconds in the future",
            )
            continue
        window = windows.get(sub.id)
        if window is None:
            end = no_end if sub.ends_at is None else to_micros(sub.ends_at)
            window = windows[sub.id] = (to_micros(sub.starts_at), end)
        if not window[0] <= ts_us < window[1]:
            errors.add(
                d.index,
                "timestamp",
                "outside_subscription_window",
                "timestamp is outside the subscription's window [starts_at, ends_at)",
            )
            continue
        problem = check_quantity(meter, d.operation, d.quantity, d.properties)
        if problem is not None:
            errors.add(d.index, *problem)
            continue
        quantity = d.quantity if d.quantity is not None else ONE
        finder = finders.get(sub.id)
        if finder is None:
            finder = finders[sub.id] = PeriodFinder(sub)
        # The ledger's text of the quantity, and the hash's (`format_decimal`'s) made from it.
        text = format(quantity, "f")
        hashed = plain_trimmed(text) if quantity else "0"
        events.append(
            NewEvent(
                d.key,
                sub,
                meter,
                ts_us,
                d.operation,
                quantity,
                d.properties,
                source,
                payload_hash(sub.id, meter.id, ts_us, d.operation, hashed, d.properties_hashed),
                finder.start_of(ts_us),
                counted_value(meter, d.properties),
                text,
                d.properties_json,
            )
        )
    if errors.items:
        errors.items.sort(key=lambda e: e["index"])
        raise InvalidInput(
            f"{len({e['index'] for e in errors.items})} of {len(raw_events)} events are not "
            "valid; nothing was written",
            code="invalid_batch",
            details=errors.items,
        )
    return events
