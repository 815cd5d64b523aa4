"""`ledger verify`: every running total recomputed from the ledger alone and compared."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select, union
from sqlalchemy.engine import Connection

from meterworks.catalog.meters import Aggregation, get_meter
from meterworks.db import tables as t
from meterworks.subscriptions.service import get_subscription
from meterworks.usage.aggregations import describe, same
from meterworks.usage.ledger import load_rollups, load_values, recompute_pair


@dataclass(frozen=True, slots=True)
class Difference:
    organization_id: str
    subscription_id: str
    meter_id: str
    period_start_us: int
    stored: str
    expected: str


@dataclass(frozen=True, slots=True)
class Report:
    pairs_checked: int
    periods_checked: int
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def _pairs(conn: Connection) -> Iterator[tuple[str, str, str]]:
    e, r = t.usage_events.c, t.usage_rollups.c
    query = union(
        select(e.organization_id, e.subscription_id, e.meter_id).distinct(),
        select(r.organization_id, r.subscription_id, r.meter_id).distinct(),
    )
    for row in conn.execute(query):
        yield row[0], row[1], row[2]


def verify(conn: Connection) -> Report:
    differences: list[Difference] = []
    pairs = 0
    periods = 0
    for organization_id, subscription_id, meter_id in sorted(_pairs(conn)):
        pairs += 1
        subscription = get_subscription(conn, organization_id, subscription_id)
        meter = get_meter(conn, organization_id, meter_id)
        expected = recompute_pair(conn, organization_id, subscription, meter, 0)
        pair = (subscription_id, meter_id)
        stored = load_rollups(conn, organization_id, {pair}, 0).get(pair, {})
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            load_values(conn, organization_id, pair, stored)
        for start in sorted(set(expected) | set(stored)):
            periods += 1
            want, have = expected.get(start), stored.get(start)
            if want is not None and have is not None and same(want, have):
                continue
            differences.append(
                Difference(
                    organization_id,
                    subscription_id,
                    meter_id,
                    start,
                    stored="(none)" if have is None else describe(have),
                    expected="(none)" if want is None else describe(want),
                )
            )
    return Report(pairs, periods, tuple(differences))
