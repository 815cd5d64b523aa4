"""A small vocabulary for billing stories: set up a catalogue, send usage, move the clock, bill.

Everything goes through the public HTTP API; the clock is the server's injected one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from meterworks.kit.instants import format_instant
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


def at(text: str) -> datetime:
    """`2025-01-01` or `2025-01-01T12:00` as an aware UTC instant."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


@dataclass
class Story:
    server: RunningServer
    org: IsolatedOrganization

    @property
    def client(self) -> httpx.Client:
        return self.org.client

    def now(self, when: str | datetime) -> None:
        self.server.clock.set(at(when) if isinstance(when, str) else when)

    def meter(self, key: str, aggregation: str = "sum", unit: str = "unit", **extra: Any) -> str:
        body = {"key": key, "name": key.replace("_", " ").title(), "unit": unit}
        body |= {"aggregation": aggregation, **extra}
        return str(ok(self.client.post("/v1/meters", json=body), 201)["id"])

    def plan(self, charges: list[dict[str, Any]], currency: str = "USD", interval: str = "month",
             name: str = "Plan") -> str:  # fmt: skip
        body = {"name": name, "currency": currency, "interval": interval, "charges": charges}
        return str(ok(self.client.post("/v1/plans", json=body), 201)["id"])

    def customer(self, external_id: str = "acme", **extra: Any) -> str:
        body = {"external_id": external_id, "name": external_id.title(), **extra}
        return str(ok(self.client.post("/v1/customers", json=body), 201)["id"])

    def subscribe(self, customer_id: str, plan_id: str, starts_at: str, **extra: Any) -> str:
        body = {"customer_id": customer_id, "plan_id": plan_id, "starts_at": starts_at, **extra}
        return str(ok(self.client.post("/v1/subscriptions", json=body), 201)["id"])

    def usage(self, subscription_id: str, meter: str, timestamp: str, quantity: Any, *,
              key: str, operation: str = "add") -> httpx.Response:  # fmt: skip
        event = {
            "idempotency_key": key,
            "subscription_id": subscription_id,
            "meter": meter,
            "timestamp": format_instant(at(timestamp)),
            "operation": operation,
            "quantity": str(quantity),
        }
        return self.client.post("/v1/events", json={"events": [event]})

    def send(self, subscription_id: str, meter: str, timestamp: str, quantity: Any, *,
             key: str, operation: str = "add") -> None:  # fmt: skip
        ok(self.usage(subscription_id, meter, timestamp, quantity, key=key, operation=operation))

    def run(self, as_of: str | None = None) -> dict[str, Any]:
        body = {} if as_of is None else {"as_of": format_instant(at(as_of))}
        return dict(ok(self.client.post("/v1/billing/run", json=body)))

    def invoices(self, subscription_id: str, **filters: str) -> list[dict[str, Any]]:
        params = {"subscription_id": subscription_id, **filters}
        found = ok(self.client.get("/v1/invoices", params=params))["data"]
        return sorted(found, key=lambda i: (i["closes_at"], i["id"]))

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        return dict(ok(self.client.get(f"/v1/invoices/{invoice_id}")))

    def period_invoice(self, subscription_id: str, start: str) -> dict[str, Any]:
        wanted = format_instant(at(start))
        found = [
            i
            for i in self.invoices(subscription_id)
            if i["kind"] == "period" and i["period"]["start"] == wanted
        ]
        assert len(found) == 1, found
        return found[0]


def amounts(invoice: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["type"], line["amount"]) for line in invoice["lines"]]
