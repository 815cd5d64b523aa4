"""Helpers for the Gradient facade tests: the vendor SDK's token, a mapped account, the ledger."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from meterworks.db import tables as t
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import format_instant
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

PREFIX = "/gradient/api/vendor-api"


def gradient_token(api_key: str, partner_key: str) -> str:
    """Exactly as the vendor SDK builds GRADIENT-TOKEN."""
    return base64.b64encode(f"{api_key}:{partner_key}".encode()).decode()


@dataclass(frozen=True)
class Vendor:
    """An organization as a Gradient vendor: a partner key and a facade client."""

    server: RunningServer
    org: IsolatedOrganization
    partner_id: str
    partner_key: str
    token: str
    client: httpx.Client  # base URL is the facade; sends `Gradient-Token`


@contextmanager
def gradient_vendor(server: RunningServer, org: IsolatedOrganization) -> Iterator[Vendor]:
    answer = org.client.post("/v1/partners", json={"name": "Synthesize partner"})
    assert answer.status_code == 201, answer.text
    partner = answer.json()
    token = gradient_token(org.token, partner["partner_key"])
    with httpx.Client(
        base_url=server.base_url + PREFIX, headers={"Gradient-Token": token}, timeout=30
    ) as client:
        yield Vendor(server, org, partner["id"], partner["partner_key"], token, client)


@dataclass(frozen=True)
class Mapping:
    service_id: str
    account_id: str
    subscription_id: str


def create_service(vendor: Vendor, name: str = "Seats", **fields: Any) -> dict[str, Any]:
    answer = vendor.client.post("/service", json={"name": name, **fields})
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def create_account(vendor: Vendor, account_id: str, name: str = "Acme") -> None:
    answer = vendor.client.post("/organization/accounts", json=[{"id": account_id, "name": name}])
    assert answer.status_code == 201, answer.text


def subscribe(vendor: Vendor, account_id: str, meter_ids: list[str]) -> str:
    """The partner's mapping, done natively: a plan charging the meters, a running subscription."""
    native = vendor.org.client
    plan = native.post(
        "/v1/plans",
        json={
            "name": "Per seat",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"type": "usage", "meter": m, "model": "per_unit", "unit_price": "2"}
                for m in meter_ids
            ],
        },
    )
    assert plan.status_code == 201, plan.text
    customers = native.get("/v1/customers").json()["data"]
    customer_id = next(c["id"] for c in customers if c["external_id"] == account_id)
    starts_at = vendor.server.clock.now() - timedelta(days=1)
    sub = native.post(
        "/v1/subscriptions",
        json={
            "customer_id": customer_id,
            "plan_id": plan.json()["id"],
            "starts_at": format_instant(starts_at),
        },
    )
    assert sub.status_code == 201, sub.text
    subscription_id: str = sub.json()["id"]
    return subscription_id


def mapped_account(vendor: Vendor, account_id: str = "acct-1", **service: Any) -> Mapping:
    """A service and an account, mapped: the account's subscription charges the service."""
    service_id = create_service(vendor, **service)["id"]
    create_account(vendor, account_id)
    return Mapping(service_id, account_id, subscribe(vendor, account_id, [service_id]))


def usage(vendor: Vendor, subscription_id: str, meter_id: str) -> str:
    """The native API's reading of the meter in the current period."""
    answer = vendor.org.client.get(f"/v1/subscriptions/{subscription_id}/usage")
    assert answer.status_code == 200, answer.text
    quantity: str = next(m["quantity"] for m in answer.json()["meters"] if m["meter"] == meter_id)
    return quantity


def ledger_rows(vendor: Vendor) -> int:
    with vendor.server.db.read() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(t.usage_events)
            .where(t.usage_events.c.organization_id == vendor.org.id)
        ).scalar_one()
    return int(count)


def ledger(vendor: Vendor) -> list[tuple[str, str, str, str]]:
    """(operation, quantity, source, meter id) of the organization's ledger, in order."""
    e = t.usage_events.c
    with vendor.server.db.read() as conn:
        rows = conn.execute(
            select(e.operation, e.quantity, e.source, e.meter_id)
            .where(e.organization_id == vendor.org.id)
            .order_by(e.seq)
        ).all()
    return [(r.operation, format_decimal(r.quantity), r.source, r.meter_id) for r in rows]
