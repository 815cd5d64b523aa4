"""Subscriptions and their periods."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Text, and_, bindparam, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection, Dialect, Row
from sqlalchemy.sql.expression import type_coerce
from sqlalchemy.types import NullType

from meterworks.catalog.plans import get_plan
from meterworks.customers.service import get_customer
from meterworks.db import tables as t
from meterworks.db.dialect import Listed
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.kit.clock import ensure_utc
from meterworks.kit.ids import new_id
from meterworks.kit.periods import Interval, Period, clipped_period


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    customer_id: str
    plan_id: str
    interval: Interval
    currency: str
    starts_at: datetime
    ends_at: datetime | None
    billing_anchor: datetime
    canceled_at: datetime | None
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)

    def in_window(self, instant: datetime) -> bool:
        return self.starts_at <= instant and (self.ends_at is None or instant < self.ends_at)

    def period_at(self, instant: datetime) -> Period:
        """The period containing `instant`, clamped into the window (first or last period)."""
        if instant < self.starts_at:
            instant = self.starts_at
        if self.ends_at is not None and instant >= self.ends_at:
            return self.last_period()
        return clipped_period(
            self.billing_anchor, self.interval, self.starts_at, self.ends_at, instant
        )

    def last_period(self) -> Period:
        assert self.ends_at is not None
        probe = clipped_period(
            self.billing_anchor, self.interval, self.starts_at, None, self.ends_at
        )
        if probe.start >= self.ends_at:
            # ends_at falls on a boundary: the last period is the one before it.
            probe = clipped_period(
                self.billing_anchor,
                self.interval,
                self.starts_at,
                None,
                self.ends_at - timedelta(microseconds=1),
            )
        return Period(probe.start, min(probe.end, self.ends_at))

    def status(self, now: datetime) -> str:
        # Canceled before it started, the window is empty: over, not pending.
        if self.ends_at is not None and (now >= self.ends_at or self.ends_at <= self.starts_at):
            return "canceled" if self.canceled_at is not None else "ended"
        if now < self.starts_at:
            return "pending"
        return "active"


_COLUMNS = (
    t.subscriptions.c.id,
    t.subscriptions.c.customer_id,
    t.subscriptions.c.plan_id,
    t.subscriptions.c.starts_at,
    t.subscriptions.c.ends_at,
    t.subscriptions.c.billing_anchor,
    t.subscriptions.c.canceled_at,
    t.subscriptions.c.created_at,
    t.subscriptions.c.metadata,
    t.plans.c.interval,
    t.plans.c.currency,
)


def _joined(columns: Sequence[Any] = _COLUMNS) -> Any:
    return select(*columns).select_from(
        t.subscriptions.join(
            t.plans,
            and_(
                t.plans.c.organization_id == t.subscriptions.c.organization_id,
                t.plans.c.id == t.subscriptions.c.plan_id,
            ),
        )
    )


def _stored(column: Any) -> Any:
    """A column of `_COLUMNS` as the driver returns it, without SQLAlchemy's conversion; the
    metadata as its JSON text (PostgreSQL's driver would parse a jsonb into a dict)."""
    if column.name == "metadata":
        return sql_cast(column, Text).label(column.name)
    return type_coerce(column, NullType()).label(column.name)


def subscription_from_row(row: Row[Any]) -> Subscription:
    """A row of `_joined()`, unpacked in the order of `_COLUMNS`: by name, reading its eleven
    fields cost more than the rest of the work (the billing run reads every subscription)."""
    (
        id_, customer_id, plan_id, starts_at, ends_at, billing_anchor, canceled_at, created_at,
        metadata, interval, currency,
    ) = cast(tuple[Any, ...], row)  # fmt: skip
    return Subscription(
        id=id_,
        customer_id=customer_id,
        plan_id=plan_id,
        interval=Interval(interval),
        currency=currency,
        starts_at=starts_at,
        ends_at=ends_at,
        billing_anchor=billing_anchor,
        canceled_at=canceled_at,
        created_at=created_at,
        metadata=dict(metadata or {}),
    )


def create_subscription(
    conn: Connection,
    organization_id: str,
    *,
    customer_id: str,
    plan_id: str,
    starts_at: datetime,
    ends_at: datetime | None = None,
    billing_anchor: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime,
) -> Subscription:
    customer = get_customer(conn, organization_id, customer_id)
    plan = get_plan(conn, organization_id, plan_id)
    starts_at = ensure_utc(starts_at)
    ends_at = None if ends_at is None else ensure_utc(ends_at)
    anchor = starts_at if billing_anchor is None else ensure_utc(billing_anchor)
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidInput(
            "the subscription is not valid",
            details=[{"field": "ends_at", "message": "must be after starts_at"}],
        )
    subscription_id = new_id("sub")
    conn.execute(
        t.subscriptions.insert().values(
            organization_id=organization_id,
            id=subscription_id,
            customer_id=customer.id,
            plan_id=plan.id,
            starts_at=starts_at,
            ends_at=ends_at,
            billing_anchor=anchor,
            metadata=dict(metadata or {}),
            created_at=now,
        )
    )
    return get_subscription(conn, organization_id, subscription_id)


def get_subscription(conn: Connection, organization_id: str, subscription_id: str) -> Subscription:
    row = conn.execute(
        _BY_ID, {"organization_id": organization_id, "subscription_id": subscription_id}
    ).first()
    if row is None:
        raise subscription_not_found(subscription_id)
    return subscription_from_row(row)


def subscription_not_found(subscription_id: str) -> NotFound:
    return NotFound(f"subscription `{subscription_id}` not found", code="subscription_not_found")


def _one(query: Any) -> Any:
    """`query` narrowed to the subscription `:subscription_id` of `:organization_id`."""
    return query.where(
        t.subscriptions.c.organization_id == bindparam("organization_id"),
        t.subscriptions.c.id == bindparam("subscription_id"),
    )


# Built once: every usage read and ingested batch runs these (building a statement costs more
# than running it).
_BY_ID = _one(_joined())
# Ingestion's lookups read the stored values (`_Built`).
_STORED_JOINED = _joined([_stored(column) for column in _COLUMNS])
_STORED_BY_ID = _one(_STORED_JOINED)
_STORED_BY_IDS = Listed(
    "ids",
    lambda ids: _STORED_JOINED.where(
        t.subscriptions.c.organization_id == bindparam("organization_id"),
        t.subscriptions.c.id.in_(ids),
    ),
)
_STORED_OF_CUSTOMERS = Listed(
    "ids",
    lambda ids: _STORED_JOINED.where(
        t.subscriptions.c.organization_id == bindparam("organization_id"),
        t.subscriptions.c.customer_id.in_(ids),
    ),
)


class _Built:
    """Subscriptions built from their rows, kept per process by what the row holds.

    Ingestion reads the subscriptions of every batch. Read through SQLAlchemy, a subscription
    cost about 9 µs, most of it turning its stored instants and metadata into Python values;
    the row's values as the driver returns them cost about 3. Ingestion's lookups read those
    (`_stored`), and build a subscription only from values not met before: a new one, or one
    changed since. Equal values build an equal subscription, so nothing is ever stale. Kept
    subscriptions are shared by the callers that meet them: their metadata is not to be
    changed. Bounded: past `limit` entries (about 1 KB each) the table starts again empty.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._built: dict[tuple[Any, ...], Subscription] = {}
        self._processors: dict[str, list[Callable[[Any], Any] | None]] = {}

    def of(
        self, conn: Connection, organization_id: str, rows: Sequence[Row[Any]]
    ) -> list[Subscription]:
        subs: list[Subscription] = []
        for row in rows:
            key = (organization_id, *row)
            sub = self._built.get(key)
            if sub is None:
                sub = self._build(conn.dialect, row)
                if len(self._built) >= self._limit:
                    self._built.clear()
                self._built[key] = sub
            subs.append(sub)
        return subs

    def _build(self, dialect: Dialect, row: Row[Any]) -> Subscription:
        processors = self._processors.get(dialect.name)
        if processors is None:
            processors = self._processors[dialect.name] = [
                # The metadata comes as its JSON text on either database (`_stored`).
                json.loads if column.name == "metadata"
                else column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in _COLUMNS
            ]  # fmt: skip
        values = tuple(
            value if process is None or value is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )
        return subscription_from_row(values)  # type: ignore[arg-type]


_BUILT = _Built()


def subscriptions_by_id(
    conn: Connection, organization_id: str, ids: set[str]
) -> dict[str, Subscription]:
    """Ingestion's lookup of subscriptions by id (see `_Built`)."""
    if not ids:
        return {}
    if len(ids) == 1:
        # One id (a single-event call): the plain equality, without expanding an IN list.
        (only,) = ids
        rows = conn.execute(
            _STORED_BY_ID, {"organization_id": organization_id, "subscription_id": only}
        ).all()
    else:
        rows = _STORED_BY_IDS.execute(conn, ids, {"organization_id": organization_id}).all()
    return {sub.id: sub for sub in _BUILT.of(conn, organization_id, rows)}


def list_subscriptions(
    conn: Connection,
    organization_id: str,
    *,
    customer_id: str | None = None,
    limit: int | None = 100,
    after: str | None = None,
    through: str | None = None,
) -> list[Subscription]:
    """In id order: the first `limit` (None: all) after `after`, none past `through`."""
    query = _joined().where(t.subscriptions.c.organization_id == organization_id)
    if customer_id is not None:
        query = query.where(t.subscriptions.c.customer_id == customer_id)
    if after is not None:
        query = query.where(t.subscriptions.c.id > after)
    if through is not None:
        query = query.where(t.subscriptions.c.id <= through)
    query = query.order_by(t.subscriptions.c.id)
    rows = conn.execute(query if limit is None else query.limit(limit)).all()
    return [subscription_from_row(row) for row in rows]


def subscription_ids(
    conn: Connection, organization_id: str, *, limit: int, after: str | None = None
) -> list[str]:
    """The ids `list_subscriptions` pages through, without reading the subscriptions."""
    c = t.subscriptions.c
    query = select(c.id).where(c.organization_id == organization_id)
    if after is not None:
        query = query.where(c.id > after)
    return list(conn.execute(query.order_by(c.id).limit(limit)).scalars())


# (connection, organization id, plan ids) -> the meter ids each plan charges (plans without any
# may be left out).
PlanMeters = Callable[[Connection, str, set[str]], Mapping[str, AbstractSet[str]]]


def subscriptions_charging(
    conn: Connection, organization_id: str, customer_ids: set[str], plan_meters: PlanMeters
) -> dict[str, list[tuple[Subscription, AbstractSet[str]]]]:
    """Per customer: its subscriptions with the meter ids each one's plan charges, as
    `plan_meters` finds them (ingestion's lookup, see `_Built`; ingestion keeps the plans'
    meters per process, since a plan never changes)."""
    if not customer_ids:
        return {}
    rows = _STORED_OF_CUSTOMERS.execute(
        conn, sorted(customer_ids), {"organization_id": organization_id}
    ).all()
    subs = _BUILT.of(conn, organization_id, rows)
    plan_ids = {s.plan_id for s in subs}
    meters_of = plan_meters(conn, organization_id, plan_ids) if plan_ids else {}
    result: dict[str, list[tuple[Subscription, AbstractSet[str]]]] = {}
    for sub in subs:
        charged = meters_of.get(sub.plan_id, frozenset())
        result.setdefault(sub.customer_id, []).append((sub, charged))
    return result


def cancel_subscription(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    *,
    at: datetime | None = None,
    now: datetime,
) -> Subscription:
    """End the subscription at `at` (default now). Its last period ends there."""
    sub = get_subscription(conn, organization_id, subscription_id)
    when = now if at is None else ensure_utc(at)
    if sub.ends_at is not None and sub.ends_at <= now:
        raise Conflict("the subscription has already ended", code="subscription_ended")
    if when < now:
        raise InvalidInput(
            "a subscription cannot be canceled in the past",
            details=[{"field": "at", "message": "must not be before now"}],
        )
    if sub.ends_at is not None and when > sub.ends_at:
        raise InvalidInput(
            "the subscription already ends earlier",
            details=[{"field": "at", "message": "must not be after ends_at"}],
        )
    ends_at = max(when, sub.starts_at)
    conn.execute(
        t.subscriptions.update()
        .where(
            t.subscriptions.c.organization_id == organization_id,
            t.subscriptions.c.id == sub.id,
        )
        .values(ends_at=ends_at, canceled_at=now)
    )
    return get_subscription(conn, organization_id, sub.id)


def active_for_meter(
    candidates: list[tuple[Subscription, AbstractSet[str]]], meter_id: str, instant: datetime
) -> Subscription | None:
    """The subscription whose window contains `instant` and whose plan charges `meter_id`."""
    matches = [s for s, meters in candidates if meter_id in meters and s.in_window(instant)]
    if not matches:
        return None
    return sorted(matches, key=lambda s: (s.starts_at, s.id))[-1]
