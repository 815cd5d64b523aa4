"""Odd client input is a 4xx in the vendor's shape, never a 500, and writes nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.facades.salesbricks.support import at, company, ledger_rows
from tests.facades.salesbricks.test_graphql import INCREMENT
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


def test_graphql_odd_input(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:

        def variables(**change: Any) -> dict[str, Any]:
            base = {
                "timestamp": "2025-01-10T00:00:00Z",
                "subscriptionId": sb.subscription_id,
                "brickId": sb.counter_id,
                "count": 1,
            }
            return {"query": INCREMENT, "variables": {**base, **change}}

        requests: list[tuple[bytes | dict[str, Any], int, str]] = [
            (variables(subscriptionId="sub\x00x"), 400, "BAD_REQUEST"),
            (variables(brickId="\ud800"), 400, "BAD_REQUEST"),
            (variables(timestamp="0001-01-01T00:00:00+01:00"), 200, "INVALID_TIMESTAMP"),
            (variables(timestamp="9999-12-31T23:59:59-01:00"), 200, "INVALID_TIMESTAMP"),
            (variables(count=2**31), 400, "BAD_USER_INPUT"),
            (variables(count="1"), 400, "BAD_USER_INPUT"),
            (
                {
                    "query": 'mutation { incrementCounter(timestamp: "2025-01-10T00:00:00Z", '
                    f'subscriptionId: "{sb.subscription_id}", brickId: "a\\u0000b", count: 1)'
                    " { success } }"
                },
                200,
                "BAD_USER_INPUT",
            ),
            ({"query": INCREMENT, "variables": [1]}, 400, "BAD_REQUEST"),
            ({"query": INCREMENT, "operationName": 5}, 400, "BAD_REQUEST"),
            ({"query": INCREMENT, "operationName": "Other"}, 400, "GRAPHQL_VALIDATION_FAILED"),
            (b"[" * 100_000 + b"]" * 100_000, 400, "BAD_REQUEST"),
            ({"query": "{" * 5_000 + "}" * 5_000}, 400, "GRAPHQL_PARSE_FAILED"),
            ({"query": "subscription { ping }"}, 400, "GRAPHQL_VALIDATION_FAILED"),
        ]
        for body, status, code in requests:
            # Escaped JSON, as a client that sends lone surrogates would.
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = sb.client.post("/api/v1/usage", content=raw)
            assert response.status_code == status, (str(body)[:80], response.text[:300])
            assert response.json()["errors"][0]["extensions"]["code"] == code, response.text[:300]
        get = sb.client.get("/api/v1/usage")
        assert get.status_code == 405
        assert get.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        too_big = sb.client.post(
            "/api/v1/usage", content=b" " * (server.settings.max_body_bytes + 1)
        )
        assert too_big.status_code == 413
        assert too_big.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert ledger_rows(server, org.id) == 0


def test_rest_odd_input(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        good = {
            "transaction_id": "t",
            "subscription_id": sb.subscription_id,
            "brick_id": sb.counter_id,
            "value": 1,
            "time": "2025-01-10T00:00:00Z",
        }
        bodies: list[dict[str, Any]] = [
            {**good, "transaction_id": "t\x00"},
            {**good, "properties": {"note": "\x00"}},
            {**good, "properties": {"\ud800": 1}},
            {**good, "time": "0001-01-01T00:00:00+01:00"},
            {**good, "value": 10**40},
            {**good, "value": "1e3"},
        ]
        for body in bodies:
            response = sb.client.post("/api/v2/usage/", content=json.dumps(body).encode())
            assert response.status_code == 400, (body, response.text)
        deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
        assert sb.client.post("/api/v2/usage/", content=deep).status_code == 400
        assert sb.client.delete(
            "/api/v2/usage/", params={"transaction_id": "x\x00"}
        ).status_code == (400)
        base = f"/api/v2/subscriptions/{sb.subscription_id}/bricks/{sb.counter_id}/usage"
        assert (
            sb.client.get(f"/api/v2/subscriptions/a%00b/bricks/{sb.counter_id}/usage").status_code
            == 404
        )
        for params in (
            {"from": "0001-01-01T00:00:00+01:00"},
            {"from": "0001-01-01", "interval": "week"},
            {"from": "9999-12-31T23:00:00Z", "to": "9999-12-31T23:59:59Z", "interval": "month"},
            {"from": "2025-01-01", "to": "2025-01-02", "interval": "\x00"},
        ):
            response = sb.client.get(base + "/series", params=params)
            assert response.status_code == 400, (params, response.text)
        assert sb.client.get(base, params={"currentPeriod": "maybe"}).status_code == 400
        assert sb.client.get(base, params={"to": "not a date"}).status_code == 400
        assert sb.client.get(base + "/entries", params={"offset": -1}).status_code == 400
        assert ledger_rows(server, org.id) == 0
