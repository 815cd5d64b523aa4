"""Tracing a usage line back to the ledger: the entries that made it, as they stood at a ledger
sequence, re-aggregated from the ledger alone (not from the running totals).

Streams the entries in time order, so memory stays bounded by the listing limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from meterworks.catalog.meters import Aggregation, Meter
from meterworks.db import tables as t
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import MICROS_PER_DAY, format_instant, from_micros, to_micros
from meterworks.kit.periods import Period
from meterworks.usage.aggregations import ZERO, Entry, apply, opened, quantity
from meterworks.usage.ingest import counted_value

E = t.usage_events.c


@dataclass(slots=True)
class Trace:
    quantity: Decimal
    carried_level: Decimal | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    counted: int = 0
    voided: int = 0
    # (level, µs held) from the period start, for prorated meters (first ones only).
    segments: list[tuple[Decimal, int]] = field(default_factory=list)
    segments_complete: bool = True


def _resolved(rows: list[Row[Any]], meter: Meter) -> Iterator[tuple[Entry, Row[Any], Row[Any]]]:
    """Per key of one instant: (entry as counted, its first revision, its latest revision)."""
    by_key: dict[str, list[Row[Any]]] = {}
    for row in rows:
        by_key.setdefault(row.idempotency_key, []).append(row)
    ordered = []
    for revisions in by_key.values():
        revisions.sort(key=lambda r: r.revision)
        first, latest = revisions[0], revisions[-1]
        if first.revision != 0:
            continue
        ordered.append((first.seq, first, latest))
    for first_seq, first, latest in sorted(ordered, key=lambda item: item[0]):
        value = counted_value(meter, latest.properties)
        entry = Entry(latest.ts_us, first_seq, latest.operation, latest.quantity, value)
        yield entry, first, latest


def stream(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    meter: Meter,
    from_us: int,
    until_us: int,
    below_seq: int | None,
) -> Iterator[tuple[Entry, Row[Any], Row[Any]]]:
    """The entries of [from_us, until_us) in ledger order, each key at its latest revision below
    `below_seq` (all revisions when None); voided keys come with kind `void`."""
    query = select(
        E.seq, E.idempotency_key, E.revision, E.kind, E.ts_us, E.operation, E.quantity,
        E.properties, E.received_at_us, E.source,
    ).where(
        E.organization_id == organization_id,
        E.subscription_id == subscription_id,
        E.meter_id == meter.id,
        E.ts_us >= from_us,
        E.ts_us < until_us,
    )  # fmt: skip
    if below_seq is not None:
        query = query.where(E.seq < below_seq)
    result = conn.execution_options(yield_per=2_000).execute(query.order_by(E.ts_us, E.seq))
    group: list[Any] = []
    for row in result:
        if group and row.ts_us != group[0].ts_us:
            yield from _resolved(group, meter)
            group = []
        group.append(row)
    if group:
        yield from _resolved(group, meter)


def carried_level(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    meter: Meter,
    before_us: int,
    below_seq: int | None,
) -> Decimal:
    level = ZERO
    for entry, _, latest in stream(
        conn, organization_id, subscription_id, meter, 0, before_us, below_seq
    ):
        if latest.kind == "void":
            continue
        level = entry.quantity if entry.operation == "set" else level + entry.quantity
    return level


def trace(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    meter: Meter,
    period: Period,
    *,
    below_seq: int | None,
    late_from_seq: int | None = None,
    limit: int = 200,
) -> Trace:
    """Re-aggregate one (subscription, meter, period) from the ledger, listing its entries."""
    start_us, end_us = to_micros(period.start), to_micros(period.end)
    aggregation = meter.aggregation
    carried = (
        carried_level(conn, organization_id, subscription_id, meter, start_us, below_seq)
        if aggregation.is_level
        else None
    )
    rollup = opened(start_us, aggregation, carried or ZERO)
    result = Trace(quantity=ZERO, carried_level=carried)
    last_ts, level = start_us, carried or ZERO
    for entry, first, latest in stream(
        conn, organization_id, subscription_id, meter, start_us, end_us, below_seq
    ):
        if latest.kind == "void":
            result.voided += 1
            continue
        if aggregation is Aggregation.PRORATED:
            _segment(result, level, entry.ts_us - last_ts, limit)
        apply(rollup, entry, aggregation)
        last_ts, level = entry.ts_us, rollup.level
        result.counted += 1
        if len(result.entries) < limit:
            item: dict[str, Any] = {
                "idempotency_key": latest.idempotency_key,
                "timestamp": format_instant(from_micros(entry.ts_us)),
                "operation": entry.operation,
                "quantity": format_decimal(entry.quantity),
                "revision": latest.revision,
                "status": "amended" if latest.kind == "amend" else "active",
                "seq": first.seq,
                "source": first.source,
                "received_at": format_instant(from_micros(latest.received_at_us)),
            }
            if aggregation.is_level:
                item["level_after"] = format_decimal(rollup.level)
            if entry.value is not None:
                item["value"] = entry.value
            if late_from_seq is not None and latest.seq >= late_from_seq:
                item["late"] = True
            result.entries.append(item)
    if aggregation is Aggregation.PRORATED:
        _segment(result, level, end_us - last_ts, limit)
    result.quantity = quantity(
        rollup,
        aggregation,
        period_start_us=start_us,
        until_us=end_us,
        carried_level=carried or ZERO,
    )
    return result


def _segment(result: Trace, level: Decimal, held_us: int, limit: int) -> None:
    if held_us <= 0:
        return
    if len(result.segments) >= limit:
        result.segments_complete = False
        return
    result.segments.append((level, held_us))


def days_text(held_us: int) -> str:
    days = Decimal(held_us) / Decimal(MICROS_PER_DAY)
    return (
        format_decimal(days.quantize(Decimal("1e-6")))
        if days != days.to_integral()
        else (format_decimal(days))
    )
