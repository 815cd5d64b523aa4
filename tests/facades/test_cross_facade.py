"""The same usage through the native API and every facade lands as the same ledger totals.

Four customers on one plan, each reporting through its own channel: native `POST /v1/events`,
Salesbricks GraphQL, Saaslogic resources, Gradient unit counts. After the same story, their
usage reads identical, and `meterworks ledger verify` finds the running totals equal to the
ledger.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from meterworks.kit.instants import format_instant
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

START = datetime(2025, 3, 1, tzinfo=UTC)
READ_AT = datetime(2025, 3, 20, tzinfo=UTC)
# (instant, calls added, seats level): the counter adds, the gauge sets a level.
STORY = [
    (datetime(2025, 3, 2, 9, tzinfo=UTC), 10, 3),
    (datetime(2025, 3, 8, 9, tzinfo=UTC), 7, 4),
    (datetime(2025, 3, 16, 9, tzinfo=UTC), 13, 8),
]
CHANNELS = ("native", "salesbricks", "saaslogic", "gradient")


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_every_channel_gives_the_same_ledger_totals(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(START)
    native = org.client
    calls = _created(
        native.post(
            "/v1/meters",
            json={"key": "calls", "name": "API calls", "unit": "call", "aggregation": "sum"},
        )
    )
    seats = _created(
        native.post(
            "/v1/meters",
            json={"key": "seats", "name": "Seats", "unit": "seat", "aggregation": "prorated"},
        )
    )
    plan = _created(
        native.post(
            "/v1/plans",
            json={
                "name": "Cross",
                "currency": "USD",
                "interval": "month",
                "charges": [
                    {"type": "usage", "meter": "calls", "model": "per_unit", "unit_price": "0.01"},
                    {"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "2"},
                ],
            },
        )
    )
    subscription: dict[str, str] = {}
    for channel in CHANNELS:
        customer = _created(
            native.post("/v1/customers", json={"external_id": f"acct-{channel}", "name": channel})
        )
        subscription[channel] = _created(
            native.post(
                "/v1/subscriptions",
                json={
                    "customer_id": customer["id"],
                    "plan_id": plan["id"],
                    "starts_at": format_instant(START),
                },
            )
        )["id"]

    partner_key = _created(native.post("/v1/partners", json={"name": "cross"}))["partner_key"]
    gradient_token = base64.b64encode(f"{org.token}:{partner_key}".encode()).decode()
    access, secret = org.token.split(".", 1)
    with httpx.Client(base_url=server.base_url, timeout=30) as raw:
        salesbricks = {"X-SALESBRICKS-KEY": org.token}
        gradient = {"Gradient-Token": gradient_token}

        for step, (at, added, level) in enumerate(STORY):
            server.clock.set(at)  # Gradient's unit count is dated by the server's clock
            # Saaslogic tokens expire within the hour: take one at each step's instant.
            token = raw.post("/saaslogic/v1/token", json={"accessKey": access, "secretKey": secret})
            assert token.status_code == 200, token.text
            saaslogic = {"Authorization": f"Bearer {token.json()['accessToken']}"}
            when = format_instant(at)
            sent = native.post(
                "/v1/events",
                json={
                    "events": [
                        {
                            "idempotency_key": f"calls-{step}",
                            "subscription_id": subscription["native"],
                            "meter": "calls",
                            "timestamp": when,
                            "quantity": added,
                        },
                        {
                            "idempotency_key": f"seats-{step}",
                            "subscription_id": subscription["native"],
                            "meter": "seats",
                            "operation": "set",
                            "timestamp": when,
                            "quantity": level,
                        },
                    ]
                },
            )
            assert sent.json() == {"accepted": 2, "duplicates": 0}

            for mutation in (
                f'incrementCounter(timestamp: "{when}", subscriptionId: '
                f'"{subscription["salesbricks"]}", brickId: "{calls["id"]}", count: {added})',
                f'setGauge(timestamp: "{when}", subscriptionId: '
                f'"{subscription["salesbricks"]}", brickId: "{seats["id"]}", value: {level})',
            ):
                answer = raw.post(
                    "/salesbricks/api/v1/usage",
                    headers=salesbricks,
                    json={"query": f"mutation {{ {mutation} {{ success }} }}"},
                )
                assert answer.status_code == 200, answer.text
                assert "errors" not in answer.json(), answer.text

            usage_date = at.strftime("%Y-%m-%dT%H:%M:%S")
            for kind, meter, value in (("Add", calls, added), ("Replace", seats, level)):
                reported = raw.post(
                    f"/saaslogic/v1/subscriptions/{subscription['saaslogic']}/resources",
                    headers=saaslogic,
                    json={
                        "usageDate": usage_date,
                        "reportingType": kind,
                        "usageDetails": [{"resourceId": meter["id"], "value": value}],
                    },
                )
                assert reported.status_code == 200, reported.text

            counted = raw.post(
                f"/gradient/api/vendor-api/service/{seats['id']}/count",
                headers=gradient,
                json={"accountId": "acct-gradient", "unitCount": level},
            )
            assert counted.status_code == 201, counted.text

    # Gradient sets levels only: its counter usage goes through the native API, same instants.
    for step, (at, added, _) in enumerate(STORY):
        sent = native.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "idempotency_key": f"gradient-calls-{step}",
                        "meter": "calls",
                        "external_customer_id": "acct-gradient",
                        "timestamp": format_instant(at),
                        "quantity": added,
                    }
                ]
            },
        )
        assert sent.json() == {"accepted": 1, "duplicates": 0}

    server.clock.set(READ_AT)
    quantities = {}
    for channel in CHANNELS:
        usage = native.get(f"/v1/subscriptions/{subscription[channel]}/usage")
        assert usage.status_code == 200, usage.text
        quantities[channel] = {m["key"]: m["quantity"] for m in usage.json()["meters"]}
    # 10 + 7 + 13 calls; seats 3 for 6 days + 4 for 8 days + 8 for 3.625 days (to the read).
    expected = {"calls": "30", "seats": "79"}
    assert quantities == dict.fromkeys(CHANNELS, expected)

    env = {**os.environ, "COLUMNS": "250"}
    env.pop("METERWORKS_DATABASE_URL", None)
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "meterworks",
            "ledger",
            "verify",
            "--db",
            server.settings.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok" in verified.stdout
