"""Building a tenant's catalog through the real API, and looking at what the ledger holds.

`Api` wraps one test's organization: it creates meters, plans, customers and subscriptions
over HTTP (asserting each call succeeds), sends events, reads usage, and counts the rows the
organization has in the database, so a refused call can be shown to have written nothing.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from meterworks.catalog.meters import get_meter
from meterworks.db import tables as t
from meterworks.subscriptions.service import get_subscription
from meterworks.usage.aggregations import same
from meterworks.usage.ledger import load_rollups, load_values, recompute_pair
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

# Where `api` puts the clock before each test: a month into the subscriptions tests create.
START = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 1, 20, tzinfo=UTC)


def dumps(value: Any) -> str:
    """JSON with Decimals written as exact JSON numbers (never through float)."""
    return _MARKED.sub(r"\1", json.dumps(_mark(value)))


_MARKED = re.compile(r'"@@decimal:([^"@]*)@@"')


def _mark(value: Any) -> Any:
    # Decimals become marked strings, and then lose their quotes in the JSON text.
    if isinstance(value, Decimal):
        return f"@@decimal:{format(value, 'f')}@@"
    if isinstance(value, dict):
        return {k: _mark(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark(v) for v in value]
    return value


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The native error body of a refused call, after checking its status and shape."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


@dataclass
class Metered:
    """A customer on a plan charging one meter per aggregation asked for."""

    customer: dict[str, Any]
    plan: dict[str, Any]
    subscription: dict[str, Any]
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)  # by aggregation

    @property
    def id(self) -> str:
        return str(self.subscription["id"])

    def key(self, aggregation: str) -> str:
        return str(self.meters[aggregation]["key"])


@dataclass
class Api:
    server: RunningServer
    org: IsolatedOrganization

    @property
    def client(self) -> httpx.Client:
        return self.org.client

    def at(self, when: datetime) -> None:
        self.server.clock.set(when)

    # --- creating the catalog -----------------------------------------------------------

    def created(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, content=dumps(body))
        assert response.status_code == 201, (path, response.status_code, response.text)
        result: dict[str, Any] = response.json()
        return result

    def meter(
        self, aggregation: str = "sum", *, key: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        if aggregation == "unique_count":
            extra.setdefault("property", "user")
        return self.created(
            "/v1/meters",
            {
                "key": key or f"{aggregation}_{secrets.token_hex(4)}",
                "name": f"{aggregation} meter",
                "unit": "unit",
                "aggregation": aggregation,
                **extra,
            },
        )

    def plan(
        self, meters: Sequence[dict[str, Any]], *, interval: str = "month", currency: str = "USD"
    ) -> dict[str, Any]:
        charges: list[dict[str, Any]] = [{"type": "fixed", "name": "Platform", "amount": "10"}]
        charges += [
            {"type": "usage", "meter": m["key"], "model": "per_unit", "unit_price": "0.01"}
            for m in meters
        ]
        return self.created(
            "/v1/plans",
            {"name": "Plan", "currency": currency, "interval": interval, "charges": charges},
        )

    def customer(self, external_id: str | None = None, **extra: Any) -> dict[str, Any]:
        return self.created(
            "/v1/customers",
            {"external_id": external_id or f"ext-{secrets.token_hex(4)}", "name": "Acme", **extra},
        )

    def subscription(
        self, customer_id: str, plan_id: str, starts_at: datetime = START, **extra: Any
    ) -> dict[str, Any]:
        return self.created(
            "/v1/subscriptions",
            {"customer_id": customer_id, "plan_id": plan_id, "starts_at": iso(starts_at), **extra},
        )

    def metered(
        self,
        *aggregations: str,
        starts_at: datetime = START,
        interval: str = "month",
        customer: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Metered:
        meters = {a: self.meter(a) for a in aggregations or ("sum",)}
        plan = self.plan(list(meters.values()), interval=interval)
        customer = customer or self.customer()
        sub = self.subscription(customer["id"], plan["id"], starts_at, **extra)
        return Metered(customer, plan, sub, meters)

    # --- usage ----------------------------------------------------------------------------

    def send(self, events: Sequence[Any]) -> httpx.Response:
        return self.client.post("/v1/events", content=dumps({"events": list(events)}))

    def record(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        response = self.send(events)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def usage(self, subscription_id: str, at: datetime | None = None) -> dict[str, Any]:
        params = {} if at is None else {"at": iso(at)}
        response = self.client.get(f"/v1/subscriptions/{subscription_id}/usage", params=params)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def quantities(self, subscription_id: str, at: datetime | None = None) -> dict[str, str]:
        """Meter key → quantity of the period containing `at` (default now)."""
        return {m["key"]: m["quantity"] for m in self.usage(subscription_id, at)["meters"]}

    # --- what the database holds -----------------------------------------------------------

    def rows(self, table: Any) -> int:
        with self.server.db.read() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.organization_id == self.org.id)
            ).scalar_one()
        return int(count)

    def ledger_rows(self) -> int:
        return self.rows(t.usage_events)

    def rollup_rows(self) -> int:
        return self.rows(t.usage_rollups)

    def assert_rollups_match_ledger(self) -> None:
        """What `ledger verify` checks, for this organization: stored totals = recomputed."""
        e = t.usage_events.c
        with self.server.db.read() as conn:
            pairs = conn.execute(
                select(e.subscription_id, e.meter_id)
                .where(e.organization_id == self.org.id)
                .distinct()
            ).all()
            for subscription_id, meter_id in pairs:
                subscription = get_subscription(conn, self.org.id, subscription_id)
                meter = get_meter(conn, self.org.id, meter_id)
                expected = recompute_pair(conn, self.org.id, subscription, meter, 0)
                pair = (subscription_id, meter_id)
                stored = load_rollups(conn, self.org.id, {pair}, 0).get(pair, {})
                load_values(conn, self.org.id, pair, stored)
                assert set(stored) == set(expected), (meter.aggregation, stored, expected)
                for start, rollup in expected.items():
                    assert same(stored[start], rollup), (meter.aggregation, stored[start], rollup)


def event(
    key: str | None = None,
    *,
    subscription_id: Any = None,
    meter: str,
    timestamp: datetime | str = START,
    quantity: Any = 1,
    **extra: Any,
) -> dict[str, Any]:
    """A native event; `quantity=None` leaves the field out."""
    body: dict[str, Any] = {
        "idempotency_key": key or f"evt-{secrets.token_hex(8)}",
        "meter": meter,
        "timestamp": timestamp if isinstance(timestamp, str) else iso(timestamp),
        **extra,
    }
    if subscription_id is not None:
        body["subscription_id"] = subscription_id
    if quantity is not None:
        body["quantity"] = quantity
    return body


@pytest.fixture
def api(server: RunningServer, org: IsolatedOrganization) -> Api:
    """This test's organization through the API, with the clock set to NOW."""
    server.clock.set(NOW)
    return Api(server, org)
