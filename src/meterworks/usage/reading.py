"""Reading usage: one subscription's quantities per meter for one period, from the rollups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection

from meterworks.catalog.meters import Aggregation, Meter, meters_by_ref
from meterworks.catalog.plans import get_plan
from meterworks.db import tables as t
from meterworks.kit.instants import to_micros
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription
from meterworks.usage.aggregations import ZERO, Rollup, quantity
from meterworks.usage.ledger import _rollup_from_row, load_values


@dataclass(frozen=True, slots=True)
class MeterUsage:
    meter: Meter
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    subscription: Subscription
    period: Period
    # The instant the quantities count up to: `now` for a running period, else the period end.
    until: datetime
    meters: tuple[MeterUsage, ...]


def charged_meters(
    conn: Connection, organization_id: str, subscription: Subscription
) -> list[Meter]:
    plan = get_plan(conn, organization_id, subscription.plan_id)
    ids = [c.meter_id for c in plan.usage_charges]
    found = meters_by_ref(conn, organization_id, set(ids))
    return [found[i] for i in ids if i in found]


# The meters each plan charges, as first read, for `charged_meter_kinds`.
_CHARGED: dict[tuple[str, str], list[Meter]] = {}
_CHARGED_KEPT = 10_000


def charged_meter_kinds(
    conn: Connection, organization_id: str, subscription: Subscription
) -> list[Meter]:
    """`charged_meters`, read once per plan by each process, for reads that show of a meter
    only what never changes: its id, key, unit, aggregation and property. A plan never
    changes, nor do these (catalog/meters.py); a meter's name, description and metadata may,
    and here they stay as first read."""
    kept = _CHARGED.get((organization_id, subscription.plan_id))
    if kept is None:
        kept = charged_meters(conn, organization_id, subscription)
        if len(_CHARGED) >= _CHARGED_KEPT:
            _CHARGED.clear()
        _CHARGED[(organization_id, subscription.plan_id)] = kept
    return kept


# Built once, run on every usage read (building a statement costs more than running it). All
# the subscription's rollups of the period: the few of meters it is not charged for are
# skipped, which costs less than a list of meter ids to bind on every read.
_R = t.usage_rollups.c
_PERIOD_ROLLUPS = select(t.usage_rollups).where(
    _R.organization_id == bindparam("organization_id"),
    _R.subscription_id == bindparam("subscription_id"),
    _R.period_start_us == bindparam("start_us"),
)
# Per level meter without a rollup in the period: its latest rollup before, whose level carries.
_LATEST = (
    select(_R.meter_id.label("mid"), func.max(_R.period_start_us).label("ps"))
    .where(
        _R.organization_id == bindparam("organization_id"),
        _R.subscription_id == bindparam("subscription_id"),
        _R.meter_id.in_(bindparam("meter_ids", expanding=True)),
        _R.period_start_us < bindparam("start_us"),
    )
    .group_by(_R.meter_id)
    .subquery()
)
_CARRIED_LEVELS = select(t.usage_rollups).join(
    _LATEST,
    and_(
        _R.organization_id == bindparam("organization_id"),
        _R.subscription_id == bindparam("subscription_id"),
        _R.meter_id == _LATEST.c.mid,
        _R.period_start_us == _LATEST.c.ps,
    ),
)


def usage_for_period(
    conn: Connection,
    organization_id: str,
    subscription: Subscription,
    period: Period,
    *,
    now: datetime,
    meters: list[Meter] | None = None,
) -> PeriodUsage:
    """Quantities of `period` per meter; a running period counts up to `now`."""
    meters = charged_meters(conn, organization_id, subscription) if meters is None else meters
    start_us = to_micros(period.start)
    until = min(period.end, max(now, period.start))
    until_us = to_micros(until)
    rows: dict[str, Rollup] = {}
    keys = {"organization_id": organization_id, "subscription_id": subscription.id}
    if meters:
        wanted = {m.id for m in meters}
        for row in conn.execute(_PERIOD_ROLLUPS, {**keys, "start_us": start_us}):
            if row.meter_id in wanted:
                rows[row.meter_id] = _rollup_from_row(row)
    carried: dict[str, Decimal] = {}
    missing = [m.id for m in meters if m.aggregation.is_level and m.id not in rows]
    if missing:
        for row in conn.execute(
            _CARRIED_LEVELS, {**keys, "meter_ids": missing, "start_us": start_us}
        ):
            carried[row.meter_id] = _rollup_from_row(row).level
    result = []
    for meter in meters:
        stored = rows.get(meter.id)
        if stored is not None and meter.aggregation is Aggregation.UNIQUE_COUNT:
            load_values(conn, organization_id, (subscription.id, meter.id), {start_us: stored})
        result.append(
            MeterUsage(
                meter,
                quantity(
                    stored,
                    meter.aggregation,
                    period_start_us=start_us,
                    until_us=until_us,
                    carried_level=carried.get(meter.id, ZERO),
                ),
            )
        )
    return PeriodUsage(subscription, period, until, tuple(result))
