"""Saaslogic facade test helpers: a token-holding client, a subscribed customer, the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from meterworks.db import tables as t
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

PREFIX = "/saaslogic/v1"
# The clock of every Saaslogic test: the day after the seed's usageDate (2024-07-25T15:00:00).
NOW = datetime(2024, 7, 26, tzinfo=UTC)
STARTS_AT = "2024-07-01T00:00:00Z"


@dataclass(frozen=True)
class Merchant:
    """An organization as a Saaslogic merchant: its access/secret key and a facade client."""

    server: RunningServer
    org: IsolatedOrganization
    access_key: str
    secret_key: str
    client: httpx.Client  # base URL is the facade; sends `Authorization: Bearer <jwt>`


def access_and_secret(token: str) -> tuple[str, str]:
    access_key, _, secret_key = token.partition(".")
    return access_key, secret_key


def issue_token(server: RunningServer, token: str) -> str:
    access_key, secret_key = access_and_secret(token)
    answer = httpx.post(
        f"{server.base_url}{PREFIX}/token",
        json={"accessKey": access_key, "secretKey": secret_key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    jwt: str = answer.json()["accessToken"]
    return jwt


@contextmanager
def saaslogic_merchant(server: RunningServer, org: IsolatedOrganization) -> Iterator[Merchant]:
    access_key, secret_key = access_and_secret(org.token)
    headers = {"Authorization": f"Bearer {issue_token(server, org.token)}"}
    with httpx.Client(base_url=server.base_url + PREFIX, headers=headers, timeout=30) as client:
        yield Merchant(server, org, access_key, secret_key, client)


def created(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def create_meter(
    org: IsolatedOrganization, key: str, *, aggregation: str = "sum", unit: str = "GB"
) -> dict[str, Any]:
    return created(
        org.client.post(
            "/v1/meters",
            json={"key": key, "name": key.replace("_", " ").title(), "unit": unit,
                  "aggregation": aggregation},
        )
    )  # fmt: skip


def create_plan(
    org: IsolatedOrganization,
    charges: list[dict[str, Any]],
    *,
    product_id: str | None = "prod_storage",
    name: str = "Storage",
    currency: str = "USD",
) -> dict[str, Any]:
    return created(
        org.client.post(
            "/v1/plans",
            json={"name": name, "currency": currency, "interval": "month",
                  "product_id": product_id, "charges": charges},
        )
    )  # fmt: skip


@dataclass(frozen=True)
class Subscribed:
    meters: dict[str, dict[str, Any]]  # by key
    plan_id: str
    customer_id: str
    subscription_id: str


def subscribe(
    org: IsolatedOrganization,
    meters: dict[str, str],
    *,
    starts_at: str = STARTS_AT,
    ends_at: str | None = None,
) -> Subscribed:
    """A customer subscribed from `starts_at` to a plan charging per unit each meter given as
    `{key: aggregation}`."""
    made = {key: create_meter(org, key, aggregation=agg) for key, agg in meters.items()}
    plan = create_plan(
        org,
        [{"type": "usage", "meter": m["id"], "model": "per_unit", "unit_price": "0.10"}
         for m in made.values()],
    )  # fmt: skip
    customer = created(
        org.client.post("/v1/customers", json={"external_id": "acme", "name": "Acme"})
    )
    sub = created(
        org.client.post(
            "/v1/subscriptions",
            json={"customer_id": customer["id"], "plan_id": plan["id"], "starts_at": starts_at,
                  "ends_at": ends_at},
        )
    )  # fmt: skip
    return Subscribed(made, plan["id"], customer["id"], sub["id"])


def ledger_rows(server: RunningServer, organization_id: str) -> int:
    with server.db.read() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(t.usage_events)
            .where(t.usage_events.c.organization_id == organization_id)
        ).scalar_one()
    return int(count)


def native_usage(org: IsolatedOrganization, subscription_id: str) -> dict[str, str]:
    """Quantity per meter key of the current period, as the native API answers it."""
    answer = org.client.get(f"/v1/subscriptions/{subscription_id}/usage")
    assert answer.status_code == 200, answer.text
    return {m["key"]: m["quantity"] for m in answer.json()["meters"]}
