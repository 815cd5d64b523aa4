"""The Salesbricks GraphQL Usage API over real HTTP, built from the vendor's own examples."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from tests.facades.salesbricks.support import (
    IDEMPOTENCY_HEADER,
    KEY_HEADER,
    Company,
    at,
    company,
    ledger_rows,
    native_quantity,
)
from tests.support.hot import Sent, answered_both_ways
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization, new_organization

USAGE = "/api/v1/usage"

INCREMENT = """
mutation Increment($timestamp: DateTime!, $subscriptionId: String!, $brickId: String!, $count: Int!) {
  incrementCounter(timestamp: $timestamp, subscriptionId: $subscriptionId, brickId: $brickId, count: $count) {
    success
  }
}
"""  # noqa: E501
SET_GAUGE = """
mutation Gauge($timestamp: DateTime!, $subscriptionId: String!, $brickId: String!, $value: Int!) {
  setGauge(timestamp: $timestamp, subscriptionId: $subscriptionId, brickId: $brickId, value: $value) {
    success
  }
}
"""  # noqa: E501


def increment_variables(
    sb: Company, timestamp: str, count: int, brick: str | None = None
) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "subscriptionId": sb.subscription_id,
        "brickId": brick or sb.counter_id,
        "count": count,
    }


def increment(sb: Company, timestamp: str, count: int, brick: str | None = None) -> httpx.Response:
    variables = increment_variables(sb, timestamp, count, brick)
    return sb.client.post(USAGE, json={"query": INCREMENT, "variables": variables})


def set_gauge(sb: Company, timestamp: str, value: int, brick: str | None = None) -> httpx.Response:
    variables = {
        "timestamp": timestamp,
        "subscriptionId": sb.subscription_id,
        "brickId": brick or sb.gauge_id,
        "value": value,
    }
    return sb.client.post(USAGE, json={"query": SET_GAUGE, "variables": variables})


def success(response: httpx.Response, field: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {field: {"success": True}}}


def refused(response: httpx.Response) -> dict[str, Any]:
    """The one GraphQL error of a refused mutation (HTTP 200, `data: null`)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None
    assert len(body["errors"]) == 1
    error: dict[str, Any] = body["errors"][0]
    return error


def test_the_vendor_doc_examples_run_verbatim(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    # The docs' example timestamp, 2020-01-11T10:15:30Z, inside this subscription's window.
    server.clock.set(at("2020-01-11T12:00:00Z"))
    with company(server, org, starts_at="2020-01-01T00:00:00Z") as sb:
        counter = f"""mutation {{
  incrementCounter(
    count: 1
    subscriptionId: "{sb.subscription_id}"
    brickId: "{sb.counter_id}"
    timestamp: "2020-01-11T10:15:30Z"
  ) {{
    success
  }}
}}"""
        gauge = f"""mutation {{
  setGauge(
    subscriptionId: "{sb.subscription_id}"
    brickId: "{sb.gauge_id}"
    timestamp: "2020-01-11T10:15:30Z"
    value: 1
  ) {{
    success
  }}
}}"""
        success(sb.client.post(USAGE, json={"query": counter}), "incrementCounter")
        success(sb.client.post(USAGE, json={"query": gauge}), "setGauge")
        assert ledger_rows(server, org.id) == 2
        instant = "2020-01-11T12:00:00Z"
        assert native_quantity(org, sb.subscription_id, "api_calls", instant) == "1"
        # Level 1 from 10:15:30 until now (12:00): 6,270 s = 0.072569444444… unit-days.
        assert native_quantity(org, sb.subscription_id, "seats", instant) == "0.072569444444"


def test_a_graphql_client_library_sends_variables(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        transport = HTTPXTransport(
            url=f"{server.base_url}/salesbricks{USAGE}", headers={KEY_HEADER: org.token}
        )
        # Fetching the schema makes the client check every document against it, as Altair does.
        with Client(transport=transport, fetch_schema_from_transport=True) as session:
            counted = session.execute(
                GraphQLRequest(
                    INCREMENT,
                    variable_values={
                        "timestamp": "2025-01-05T08:00:00Z",
                        "subscriptionId": sb.subscription_id,
                        "brickId": "api_calls",  # a meter key works as well as its id
                        "count": 7,
                    },
                )
            )
            gauged = session.execute(
                GraphQLRequest(
                    SET_GAUGE,
                    variable_values={
                        "timestamp": "2025-01-05T08:00:00Z",
                        "subscriptionId": sb.subscription_id,
                        "brickId": sb.gauge_id,
                        "value": 4,
                    },
                )
            )
            with pytest.raises(TransportQueryError) as refusal:
                session.execute(
                    GraphQLRequest(
                        INCREMENT,
                        variable_values={
                            "timestamp": "2025-01-05T08:00:00Z",
                            "subscriptionId": sb.subscription_id,
                            "brickId": sb.counter_id,
                            "count": -3,
                        },
                    )
                )
        assert counted == {"incrementCounter": {"success": True}}
        assert gauged == {"setGauge": {"success": True}}
        assert refusal.value.errors is not None
        assert refusal.value.errors[0]["extensions"]["code"] == "NEGATIVE_COUNT"
        assert ledger_rows(server, org.id) == 2
        assert native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z") == "7"


def test_counter_sums_week_one_and_week_four_to_thirty(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    # "one counter is sent in week one for 10 units and another call in week 4 for 20 units,
    # Salesbricks will add those (30) and bill the customer for that quantity"
    server.clock.set(at("2025-01-03T12:00:00Z"))
    with company(server, org) as sb:
        success(increment(sb, "2025-01-03T09:00:00Z", 10), "incrementCounter")
        server.clock.set(at("2025-01-24T12:00:00Z"))
        success(increment(sb, "2025-01-24T09:00:00Z", 20), "incrementCounter")
        server.clock.set(at("2025-02-03T00:00:00Z"))  # the period has closed: billed in arrears
        assert native_quantity(org, sb.subscription_id, sb.counter_id, "2025-01-15T00:00:00Z") == (
            "30"
        )
        periods = sb.client.get(
            f"/api/v2/subscriptions/{sb.subscription_id}/bricks/{sb.counter_id}/usage"
        )
        assert periods.status_code == 200, periods.text
        assert periods.json()[0] == {
            "starts_at": "2025-01-01T00:00:00Z",
            "ends_at": "2025-02-01T00:00:00Z",
            "subscription_id": sb.subscription_id,
            "brick_id": sb.counter_id,
            "brick_name": "Api Calls",
            "pre_commitment": 100,
            "used": 30,
            "remaining": 70,
            "unit": "call",
        }
        assert ledger_rows(server, org.id) == 2


def test_gauge_bills_value_times_days(server: RunningServer, org: IsolatedOrganization) -> None:
    # ((3×6) + (4×8) + (8×6) + (5×3)) = 113 unit-days, × $2 = $226
    server.clock.set(at("2025-01-24T00:00:00Z"))
    with company(server, org, ends_at="2025-01-24T00:00:00Z") as sb:
        for day, value in (("01", 3), ("07", 4), ("15", 8), ("21", 5)):
            success(set_gauge(sb, f"2025-01-{day}T00:00:00Z", value), "setGauge")
        server.clock.set(at("2025-02-01T00:00:00Z"))
        assert native_quantity(org, sb.subscription_id, "seats", "2025-01-10T00:00:00Z") == "113"
        periods = sb.client.get(
            f"/api/v2/subscriptions/{sb.subscription_id}/bricks/seats/usage",
            params={"currentPeriod": "true"},
        )
        assert periods.status_code == 200, periods.text
        [period] = periods.json()
        assert (period["starts_at"], period["ends_at"]) == (
            "2025-01-01T00:00:00Z",
            "2025-01-24T00:00:00Z",
        )
        assert (period["used"], period["pre_commitment"], period["remaining"]) == (113, 0, 0)
        assert period["unit"] == "seat-days"


@pytest.mark.parametrize(
    ("call", "timestamp", "quantity", "brick", "subscription", "code", "argument"),
    [
        ("counter", "2025-01-10T00:00:00Z", 5, "gauge", None, "WRONG_BRICK_KIND", "brickId"),
        ("gauge", "2025-01-10T00:00:00Z", 5, "counter", None, "WRONG_BRICK_KIND", "brickId"),
        ("counter", "2025-01-10T00:00:00Z", 5, "peak", None, "WRONG_BRICK_KIND", "brickId"),
        ("gauge", "2025-01-10T00:00:00Z", 5, "peak", None, "WRONG_BRICK_KIND", "brickId"),
        ("counter", "2025-01-10T00:00:00Z", -1, "counter", None, "NEGATIVE_COUNT", "count"),
        ("gauge", "2025-01-10T00:00:00Z", -1, "gauge", None, "NEGATIVE_VALUE", "value"),
        (
            "counter",
            "2024-12-31T23:59:59Z",
            5,
            "counter",
            None,
            "OUTSIDE_SUBSCRIPTION_WINDOW",
            "timestamp",
        ),
        (
            "gauge",
            "2025-01-16T00:00:00Z",
            5,
            "gauge",
            None,
            "OUTSIDE_SUBSCRIPTION_WINDOW",
            "timestamp",
        ),
        ("counter", "2025-01-20T00:10:00Z", 5, "counter", None, "TIMESTAMP_IN_FUTURE", "timestamp"),
        (
            "counter",
            "2025-01-10T00:00:00Z",
            5,
            "counter",
            "sub_unknown",
            "SUBSCRIPTION_NOT_FOUND",
            "subscriptionId",
        ),
        ("counter", "2025-01-10T00:00:00Z", 5, "mtr_unknown", None, "BRICK_NOT_FOUND", "brickId"),
        ("gauge", "2025-01-10T00:00:00Z", 5, "no_such_key", None, "BRICK_NOT_FOUND", "brickId"),
        ("counter", "2025-01-10T00:00:00Z", 5, "stray", None, "BRICK_NOT_IN_PLAN", "brickId"),
    ],
)
def test_a_refused_call_names_its_reason_and_writes_nothing(
    server: RunningServer,
    org: IsolatedOrganization,
    call: str,
    timestamp: str,
    quantity: int,
    brick: str,
    subscription: str | None,
    code: str,
    argument: str,
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org, ends_at="2025-01-15T00:00:00Z") as sb:
        bricks = {"counter": sb.counter_id, "gauge": sb.gauge_id, "peak": sb.peak_id}
        bricks["stray"] = sb.stray_id
        target = replace(sb, subscription_id=subscription or sb.subscription_id)
        send = increment if call == "counter" else set_gauge
        error = refused(send(target, timestamp, quantity, bricks.get(brick, brick)))
        assert error["extensions"]["code"] == code
        assert error["extensions"].get("argument") == argument
        assert error["path"] == ["incrementCounter" if call == "counter" else "setGauge"]
        assert ledger_rows(server, org.id) == 0


def test_another_organizations_subscription_is_not_found(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb, new_organization(server, "salesbricks other") as other:
        with company(server, other) as theirs:
            stolen = replace(sb, subscription_id=theirs.subscription_id)
            error = refused(increment(stolen, "2025-01-10T00:00:00Z", 5))
        assert error["extensions"]["code"] == "SUBSCRIPTION_NOT_FOUND"
        assert ledger_rows(server, org.id) == ledger_rows(server, other.id) == 0


def test_without_a_valid_key_the_answer_is_401(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        url = f"{server.base_url}/salesbricks{USAGE}"
        body = {
            "query": INCREMENT,
            "variables": increment_variables(sb, "2025-01-10T00:00:00Z", 1),
        }
        for headers in ({}, {KEY_HEADER: "nope"}, {KEY_HEADER: org.token + "x"}):
            response = httpx.post(url, json=body, headers=headers, timeout=30)
            assert response.status_code == 401, response.text
            [error] = response.json()["errors"]
            assert error["extensions"] == {"code": "UNAUTHENTICATED"}
        # The native bearer header is not a Salesbricks credential.
        response = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {org.token}"}, timeout=30
        )
        assert response.status_code == 401
        assert ledger_rows(server, org.id) == 0


def test_requests_that_cannot_run_are_400(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        cases: list[tuple[Any, str]] = [
            ({"query": "mutation { incrementCounter("}, "GRAPHQL_PARSE_FAILED"),
            ({"query": "mutation { decrementCounter { success } }"}, "GRAPHQL_VALIDATION_FAILED"),
            (
                {
                    "query": INCREMENT,
                    "variables": {
                        "timestamp": "2025-01-10T00:00:00Z",
                        "subscriptionId": sb.subscription_id,
                        "brickId": sb.counter_id,
                        "count": 1.5,
                    },
                },
                "BAD_USER_INPUT",
            ),
            (
                {
                    "query": INCREMENT,
                    "variables": {
                        "timestamp": "yesterday",
                        "subscriptionId": sb.subscription_id,
                        "brickId": sb.counter_id,
                        "count": 1,
                    },
                },
                "BAD_USER_INPUT",
            ),
            ({"variables": {}}, "BAD_REQUEST"),
        ]
        for body, code in cases:
            response = sb.client.post(USAGE, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["errors"][0]["extensions"]["code"] == code, response.text
            assert "data" not in response.json()
        response = sb.client.post(USAGE, content=b"{not json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert ledger_rows(server, org.id) == 0


def test_a_document_is_validated_once_per_text_and_refused_alike_every_time(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterworks.facades.salesbricks import direct
    from meterworks.facades.salesbricks import schema as usage_schema

    validated: list[str] = []
    validate = usage_schema.validate_document

    def counted(*args: Any) -> Any:
        validated.append(args[1].loc.source.body)
        return validate(*args)

    monkeypatch.setattr(usage_schema, "validate_document", counted)
    monkeypatch.setattr(usage_schema, "_validated", {})
    monkeypatch.setattr(direct, "_plans", {})
    server.clock.set(at("2025-01-03T12:00:00Z"))
    unknown = {"query": "mutation { decrementCounter { success } }"}
    with company(server, org) as sb:
        for count in (1, 2, 3):
            success(increment(sb, "2025-01-03T09:00:00Z", count), "incrementCounter")
            response = sb.client.post(USAGE, json=unknown)
            assert response.status_code == 400, response.text
            (error,) = response.json()["errors"]
            assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            assert "decrementCounter" in error["message"]
        assert native_quantity(org, sb.subscription_id, sb.counter_id, "2025-01-15T00:00:00Z") == (
            "6"
        )
    assert validated == [INCREMENT, unknown["query"]]


def test_a_usage_call_leaves_nothing_for_the_garbage_collector(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    import gc

    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    # A directive keeps the document from running without the executor (`direct`).
    through_executor = INCREMENT.replace("success", "success @include(if: true)")
    server.clock.set(at("2025-01-03T12:00:00Z"))
    with company(server, org) as sb:

        def send(document: str, count: int) -> None:
            variables = increment_variables(sb, "2025-01-03T09:00:00Z", count)
            answer = sb.client.post(USAGE, json={"query": document, "variables": variables})
            success(answer, "incrementCounter")

        send(INCREMENT, 1)  # warmed up, each way
        send(through_executor, 1)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for count in (2, 3):
                send(INCREMENT, count)
                send(through_executor, count)
            gc.collect()
            executors = [
                o for o in gc.garbage if isinstance(o, StrawberryGraphQLCoreExecutionContext)
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        # Each call's executor was freed as the call ended, not left in a reference cycle.
        assert executors == []
        assert native_quantity(org, sb.subscription_id, sb.counter_id, "2025-01-15T00:00:00Z") == (
            "12"
        )


def test_the_query_root_is_harmless(server: RunningServer, org: IsolatedOrganization) -> None:
    with company(server, org) as sb:
        response = sb.client.post(USAGE, json={"query": "{ ping }"})
        assert response.status_code == 200
        assert response.json() == {"data": {"ping": True}}
        assert ledger_rows(server, org.id) == 0


def test_a_usage_call_is_answered_below_the_framework_exactly_as_by_its_route(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """facades/salesbricks/hot.py answers the Usage API; a query string sends the call through
    the route instead (the route ignores it). Both must answer every call alike."""
    from meterworks.facades.salesbricks import graphql_api, hot

    through_layer: list[str] = []
    answer_of_route = graphql_api.answer_usage

    async def counted(context: Any, request: Any) -> Any:
        through_layer.append(request.content_type)
        return await answer_of_route(context, request)

    # The layer looks the function up on its module at each call; the route on its own.
    monkeypatch.setattr(hot, "answer_usage", counted)
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        url = f"{server.base_url}/salesbricks{USAGE}"
        variables = increment_variables(sb, "2025-01-10T00:00:00Z", 2)

        def body(**changes: Any) -> bytes:
            return json.dumps({"query": INCREMENT, "variables": {**variables, **changes}}).encode()

        good = {KEY_HEADER: org.token, "Content-Type": "application/json"}
        keyed = {**good, IDEMPOTENCY_HEADER: "key-{}"}
        gauge = {"query": SET_GAUGE, "variables": {**variables, "brickId": sb.gauge_id}}
        gauge["variables"]["value"] = gauge["variables"].pop("count")
        sent = [
            ("increment", url, good, body()),
            ("slash", url + "/", good, body(count=3)),
            ("gauge", url, good, json.dumps(gauge).encode()),
            ("keyed", url, keyed, body(count=4)),
            ("replayed", url, keyed, body(count=4)),
            ("key reused", url, keyed, body(count=5)),
            ("long key", url, {**good, IDEMPOTENCY_HEADER: "k" * 256}, body()),
            ("no api key", url, {"Content-Type": "application/json"}, body()),
            ("bad api key", url, {**good, KEY_HEADER: "nope"}, body()),
            ("not json", url, good, b"{not json"),
            ("no query", url, good, b'{"variables": null}'),
            ("syntax", url, good, b'{"query": "mutation { incrementCounter("}'),
            ("wrong type", url, good, body(count=1.5)),
            ("unknown brick", url, good, body(brickId="mtr_unknown")),
            ("plain graphql", url, {**good, "Content-Type": "application/graphql"}, b"{ ping }"),
            ("too large", url, good, b" " * (server.settings.max_body_bytes + 1)),
        ]
        answers = answered_both_ways(
            [Sent(name, target, headers, raw) for name, target, headers, raw in sent],
            route_query="?via=route",
            header="idempotent-replayed",
            reached=through_layer,
            reaching=len(sent),
        )
        statuses = {name: answer.status for name, answer in answers.items()}
        assert statuses == {
            "increment": 200, "slash": 200, "gauge": 200, "keyed": 200, "replayed": 200,
            "key reused": 400, "long key": 400, "no api key": 401, "bad api key": 401,
            "not json": 400, "no query": 400, "syntax": 400, "wrong type": 400,
            "unknown brick": 200, "plain graphql": 200, "too large": 413,
        }  # fmt: skip
        assert answers["replayed"].header == "true"
        assert answers["keyed"].header is None
        assert "BRICK_NOT_FOUND" in answers["unknown brick"].text
        # Each way: three increments (2 + 3 + 4) and one gauge.
        assert (
            native_quantity(org, sb.subscription_id, sb.counter_id, "2025-01-10T00:00:00Z") == "18"
        )
        assert ledger_rows(server, org.id) == 8


def test_an_unexpected_failure_is_the_same_500_both_ways(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterworks.facades.salesbricks import graphql_api

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault of ours")

    # Both ways a document may run: without the executor (`direct`), and through it.
    monkeypatch.setattr(graphql_api.direct, "execute", broken)
    monkeypatch.setattr(graphql_api.schema, "execute", broken)
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        url = f"{server.base_url}/salesbricks{USAGE}"
        variables = increment_variables(sb, "2025-01-10T00:00:00Z", 1)
        for query in ("", "?via=route"):  # below the framework, then through the route
            answer = httpx.post(
                url + query,
                json={"query": INCREMENT, "variables": variables},
                headers={KEY_HEADER: org.token},
                timeout=30,
            )
            assert answer.status_code == 500, (query, answer.text)
            assert answer.json() == {
                "errors": [
                    {
                        "message": "an unexpected error occurred",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                    }
                ]
            }
        assert ledger_rows(server, org.id) == 0
