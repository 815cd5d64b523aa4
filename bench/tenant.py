"""An organization to load: three meters, a plan charging them, customers on subscriptions.

Built through the native API, as a vendor would, with a key from `meterworks keys create`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from bench.server import create_key
from bench.workload import METERS, micros

CHARGES: list[dict[str, str]] = [
    {"type": "fixed", "name": "Platform", "amount": "10.00"},
    {"type": "usage", "meter": "bench_calls", "model": "per_unit", "unit_price": "0.001"},
    {"type": "usage", "meter": "bench_storage", "model": "package", "package_size": "10",
     "unit_price": "1.00"},
    {"type": "usage", "meter": "bench_seats", "model": "per_unit", "unit_price": "0.30"},
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tenant:
    base_url: str
    token: str
    subscriptions: tuple[str, ...]
    meter_ids: dict[str, str]  # key -> id
    starts_at: datetime

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def window_us(self, margin: timedelta = timedelta(minutes=10)) -> tuple[int, int]:
        """Where events may be dated: after the start, and safely before the server's now."""
        now = datetime.now(UTC)
        return micros(self.starts_at) + 1_000_000, micros(now - margin)


def _created(response: httpx.Response) -> dict[str, object]:
    if response.status_code != 201:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text}"
        )
    body = response.json()
    assert isinstance(body, dict)
    return body


def build_tenant(db_url: str, base_url: str, name: str, subscriptions: int) -> Tenant:
    token = create_key(db_url, f"bench {name}")
    # A day ago, so the current period holds a day of past instants to date events at.
    starts_at = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        meter_ids: dict[str, str] = {}
        for key, aggregation, unit in METERS:
            meter = _created(
                client.post(
                    "/v1/meters",
                    json={"key": key, "name": key, "unit": unit, "aggregation": aggregation},
                )
            )
            meter_ids[key] = str(meter["id"])
        plan = _created(
            client.post(
                "/v1/plans",
                json={
                    "name": "Bench",
                    "currency": "USD",
                    "interval": "month",
                    "charges": CHARGES,
                },
            )
        )
        subscription_ids = []
        for n in range(subscriptions):
            customer = _created(
                client.post(
                    "/v1/customers", json={"external_id": f"bench-{n}", "name": f"Customer {n}"}
                )
            )
            subscription = _created(
                client.post(
                    "/v1/subscriptions",
                    json={
                        "customer_id": customer["id"],
                        "plan_id": plan["id"],
                        "starts_at": starts_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                )
            )
            subscription_ids.append(str(subscription["id"]))
    return Tenant(base_url, token, tuple(subscription_ids), meter_ids, starts_at)
