"""REST v2 usage reads of one brick on one subscription: per period, as a series, as entries.

Quantities are answered as exact JSON numbers. Per period, `used` is the meter's billed
quantity (a gauge's in unit-days; a running period counts up to now), `pre_commitment` the
plan's included quantity for that meter, `remaining` what is left of it (never below zero).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sqlalchemy.engine import Connection
from starlette.responses import Response

from meterworks.api.context import AppContext
from meterworks.catalog.meters import Meter, get_meter, quantity_unit
from meterworks.catalog.plans import get_plan
from meterworks.db import tables as t
from meterworks.errors import InvalidInput, NotFound
from meterworks.facades.salesbricks.auth import Organization
from meterworks.facades.salesbricks.bodies import text_problem
from meterworks.facades.salesbricks.rendering import ExactJSONResponse
from meterworks.facades.salesbricks.translate import transaction_id_of
from meterworks.kit.instants import format_instant, from_micros, parse_instant, to_micros
from meterworks.kit.periods import Period, add_months, periods_between
from meterworks.subscriptions.service import Subscription, get_subscription
from meterworks.usage.ledger import live_entries
from meterworks.usage.reading import usage_for_period

router = APIRouter(tags=["usage reads"])

BRICK_PATH = "/subscriptions/{subscription_id}/bricks/{brick_id}/usage"
INTERVALS = ("hour", "day", "week", "month")
MAX_BUCKETS = 10_000
MAX_PAGE = 1_000
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BrickOnSubscription:
    subscription: Subscription
    meter: Meter
    pre_commitment: Decimal


def _brick_on_subscription(
    conn: Connection, organization_id: str, subscription_id: str, brick_id: str
) -> BrickOnSubscription:
    # An id no database could store names nothing (and must not reach a query).
    if text_problem(subscription_id) is not None:
        raise NotFound("subscription not found", code="subscription_not_found")
    if text_problem(brick_id) is not None:
        raise NotFound("brick not found", code="meter_not_found")
    subscription = get_subscription(conn, organization_id, subscription_id)
    meter = get_meter(conn, organization_id, brick_id)
    plan = get_plan(conn, organization_id, subscription.plan_id)
    charges = [c for c in plan.usage_charges if c.meter_id == meter.id]
    if not charges:
        raise NotFound(
            f"brick `{brick_id}` is not on subscription `{subscription_id}`'s plan",
            code="meter_not_in_plan",
        )
    return BrickOnSubscription(subscription, meter, charges[0].included_quantity)


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InvalidInput(
            f"`{name}` must be an ISO-8601 date or timestamp",
            code="invalid_parameter",
            details=[{"field": name, "code": "invalid", "message": "must be ISO-8601"}],
        ) from exc


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.strip() == "":
        return False
    text = value.strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise InvalidInput(f"`{name}` must be true or false", code="invalid_parameter")


def _context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


@router.get(BRICK_PATH)
def brick_usage(
    request: Request,
    subscription_id: str,
    brick_id: str,
    organization_id: Organization,
    current_period: str | None = Query(None, alias="currentPeriod"),
    from_: str | None = Query(None, alias="from", description="periods starting at or after"),
    to: str | None = Query(None, description="periods ending at or before"),
) -> Response:
    context = _context(request)
    now = context.clock.now()
    only_current = _flag(current_period, "currentPeriod")
    since, until = _instant(from_, "from"), _instant(to, "to")
    with context.db.read() as conn:
        found = _brick_on_subscription(conn, organization_id, subscription_id, brick_id)
        sub = found.subscription
        periods: list[Period] = (
            [sub.period_at(now)]
            if only_current
            else periods_between(sub.billing_anchor, sub.interval, sub.starts_at, sub.ends_at, now)
        )
        periods = [
            p
            for p in periods
            if (since is None or p.start >= since) and (until is None or p.end <= until)
        ]
        results = []
        for period in periods:
            usage = usage_for_period(
                conn, organization_id, sub, period, now=now, meters=[found.meter]
            )
            used = usage.meters[0].quantity
            results.append(
                {
                    "starts_at": format_instant(period.start),
                    "ends_at": format_instant(period.end),
                    "subscription_id": sub.id,
                    "brick_id": found.meter.id,
                    "brick_name": found.meter.name,
                    "pre_commitment": found.pre_commitment,
                    "used": used,
                    "remaining": max(ZERO, found.pre_commitment - used),
                    # A gauge's used quantity is in unit-days, as on invoices.
                    "unit": quantity_unit(found.meter),
                }
            )
    return ExactJSONResponse(results)


def _bucket_start(instant: datetime, interval: str) -> datetime:
    """The start of the UTC bucket holding `instant` (weeks start on Monday)."""
    if interval == "hour":
        return instant.replace(minute=0, second=0, microsecond=0)
    day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_bucket(start: datetime, interval: str) -> datetime:
    if interval == "month":
        return add_months(start, 1)
    return start + {"hour": timedelta(hours=1), "day": timedelta(days=1)}.get(
        interval, timedelta(weeks=1)
    )


def _buckets(since: datetime, until: datetime, interval: str) -> list[datetime]:
    """Bucket boundaries covering [since, until): n + 1 instants for n buckets."""
    try:
        edges = [_bucket_start(since, interval)]
        while edges[-1] < until or len(edges) == 1:
            if len(edges) > MAX_BUCKETS:
                raise InvalidInput(
                    f"at most {MAX_BUCKETS} buckets per series; narrow `from`/`to` or widen "
                    "`interval`",
                    code="too_many_buckets",
                )
            edges.append(_next_bucket(edges[-1], interval))
    except (OverflowError, ValueError) as exc:
        # Buckets past year 1 or 9999 do not exist.
        raise InvalidInput("`from`/`to` are out of range", code="invalid_parameter") from exc
    return edges


@router.get(BRICK_PATH + "/series")
def brick_usage_series(
    request: Request,
    subscription_id: str,
    brick_id: str,
    organization_id: Organization,
    interval: str = Query("day", description="hour, day, week or month (UTC)"),
    from_: str | None = Query(None, alias="from", description="default: current period start"),
    to: str | None = Query(None, description="default: now"),
) -> Response:
    if interval not in INTERVALS:
        raise InvalidInput(
            "`interval` must be one of hour, day, week, month", code="invalid_parameter"
        )
    context = _context(request)
    now = context.clock.now()
    since, until = _instant(from_, "from"), _instant(to, "to")
    with context.db.read() as conn:
        found = _brick_on_subscription(conn, organization_id, subscription_id, brick_id)
        since = since or found.subscription.period_at(now).start
        until = until or now
        if until < since:
            raise InvalidInput("`to` must not be before `from`", code="invalid_parameter")
        edges = _buckets(since, until, interval)
        edges_us = [to_micros(e) for e in edges]
        sums = [ZERO] * (len(edges) - 1)
        for entry in live_entries(
            conn, organization_id, found.subscription.id, found.meter, edges_us[0], edges_us[-1]
        ):
            sums[bisect_right(edges_us, entry.ts_us) - 1] += entry.quantity
    return ExactJSONResponse(
        {
            "subscription_id": found.subscription.id,
            "brick_id": found.meter.id,
            "interval": interval,
            "from": format_instant(edges[0]),
            "to": format_instant(edges[-1]),
            "results": [
                {
                    "starts_at": format_instant(edges[i]),
                    "ends_at": format_instant(edges[i + 1]),
                    "count": total,
                }
                for i, total in enumerate(sums)
            ],
        }
    )


def _page_details(
    conn: Connection, organization_id: str, first_seqs: list[int]
) -> dict[int, dict[str, Any]]:
    """Per first-revision seq: the key, first receipt and current properties of its entry."""
    e = t.usage_events.c
    keys = {
        row.seq: row.idempotency_key
        for row in conn.execute(
            select(e.seq, e.idempotency_key).where(
                e.organization_id == organization_id, e.seq.in_(first_seqs)
            )
        )
    }
    revisions: dict[str, list[Any]] = {}
    if keys:
        for row in conn.execute(
            select(e.idempotency_key, e.revision, e.properties, e.source, e.received_at_us)
            .where(e.organization_id == organization_id, e.idempotency_key.in_(keys.values()))
            .order_by(e.revision)
        ):
            revisions.setdefault(row.idempotency_key, []).append(row)
    details = {}
    for seq, key in keys.items():
        rows = revisions[key]
        details[seq] = {
            "key": key,
            "properties": rows[-1].properties,
            "source": rows[0].source,
            "created_at": from_micros(rows[0].received_at_us),
        }
    return details


@router.get(BRICK_PATH + "/entries")
def brick_usage_entries(
    request: Request,
    subscription_id: str,
    brick_id: str,
    organization_id: Organization,
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0),
) -> Response:
    context = _context(request)
    with context.db.read() as conn:
        found = _brick_on_subscription(conn, organization_id, subscription_id, brick_id)
        entries = live_entries(conn, organization_id, found.subscription.id, found.meter)
        entries.sort(key=lambda entry: (entry.ts_us, entry.seq), reverse=True)
        page = entries[offset : offset + limit]
        details = _page_details(conn, organization_id, [entry.seq for entry in page])
    results = []
    for entry in page:
        detail = details[entry.seq]
        results.append(
            {
                "transaction_id": transaction_id_of(detail["key"]),
                "idempotency_key": detail["key"],
                "subscription_id": found.subscription.id,
                "brick_id": found.meter.id,
                "value": entry.quantity,
                "time": format_instant(from_micros(entry.ts_us)),
                "properties": detail["properties"],
                "source": detail["source"],
                "created_at": format_instant(detail["created_at"]),
            }
        )
    count = len(entries)
    url = request.url
    following = offset + limit
    return ExactJSONResponse(
        {
            "count": count,
            "next": (
                str(url.include_query_params(limit=limit, offset=following))
                if following < count
                else None
            ),
            "previous": (
                str(url.include_query_params(limit=limit, offset=max(0, offset - limit)))
                if offset > 0
                else None
            ),
            "results": results,
        }
    )
