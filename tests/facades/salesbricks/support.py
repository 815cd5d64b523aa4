"""A Salesbricks company in meterworks terms: bricks (meters), a plan, a subscription."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from meterworks.db import tables as t
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

KEY_HEADER = "X-SALESBRICKS-KEY"
IDEMPOTENCY_HEADER = "X-SALESBRICKS-IDEMPOTENT-OPERATION-KEY"


@dataclass(frozen=True)
class Company:
    """One organization seen through the facade: its bricks and one customer's subscription."""

    org: IsolatedOrganization
    client: httpx.Client  # sends X-SALESBRICKS-KEY, base URL /salesbricks
    subscription_id: str
    plan_id: str
    counter_id: str  # "Final value" brick: a sum meter, 100 units included
    gauge_id: str  # "Prorated" brick: a prorated meter
    peak_id: str  # a max meter, on the plan: neither a counter nor a gauge
    stray_id: str  # a sum meter that the plan does not charge


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def create_meter(org: IsolatedOrganization, key: str, aggregation: str, unit: str) -> str:
    body = {"key": key, "name": key.replace("_", " ").title(), "unit": unit}
    meter = created(org.client.post("/v1/meters", json={**body, "aggregation": aggregation}))
    return str(meter["id"])


def subscribe(
    org: IsolatedOrganization, plan_id: str, starts_at: str, ends_at: str | None = None
) -> str:
    customer = created(
        org.client.post("/v1/customers", json={"external_id": "acme", "name": "Acme"})
    )
    body = {"customer_id": customer["id"], "plan_id": plan_id, "starts_at": starts_at}
    if ends_at is not None:
        body["ends_at"] = ends_at
    return str(created(org.client.post("/v1/subscriptions", json=body))["id"])


@contextmanager
def facade_client(server: RunningServer, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.base_url}/salesbricks", headers={KEY_HEADER: token}, timeout=30
    ) as client:
        yield client


@contextmanager
def company(
    server: RunningServer,
    org: IsolatedOrganization,
    *,
    starts_at: str = "2025-01-01T00:00:00Z",
    ends_at: str | None = None,
) -> Iterator[Company]:
    counter = create_meter(org, "api_calls", "sum", "call")
    gauge = create_meter(org, "seats", "prorated", "seat")
    peak = create_meter(org, "peak_storage", "max", "GB")
    stray = create_meter(org, "sms", "sum", "message")
    plan = created(
        org.client.post(
            "/v1/plans",
            json={
                "name": "Growth",
                "currency": "USD",
                "interval": "month",
                "charges": [
                    {
                        "type": "usage",
                        "meter": "api_calls",
                        "model": "per_unit",
                        "unit_price": "0.10",
                        "included_quantity": "100",
                    },
                    {"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "2"},
                    {"type": "usage", "meter": peak, "model": "per_unit", "unit_price": "1"},
                ],
            },
        )
    )
    subscription = subscribe(org, plan["id"], starts_at, ends_at)
    with facade_client(server, org.token) as client:
        yield Company(org, client, subscription, plan["id"], counter, gauge, peak, stray)


def ledger_rows(server: RunningServer, organization_id: str) -> int:
    """Every row this organization has in the ledger (events, amends and voids)."""
    with server.db.read() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(t.usage_events)
            .where(t.usage_events.c.organization_id == organization_id)
        ).scalar()
    return int(count or 0)


def native_quantity(org: IsolatedOrganization, subscription_id: str, meter: str, at: str) -> str:
    """The quantity the native API reports for one meter in the period containing `at`."""
    response = org.client.get(f"/v1/subscriptions/{subscription_id}/usage", params={"at": at})
    assert response.status_code == 200, response.text
    for item in response.json()["meters"]:
        if meter in (item["meter"], item["key"]):
            return str(item["quantity"])
    raise AssertionError(f"meter {meter} not in {response.json()}")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
