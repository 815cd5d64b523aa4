"""No client input produces a 5xx: random JSON shapes against every writing endpoint.

Hypothesis builds bodies from the real field names with values of every JSON kind (and the
awkward ones: NUL characters, lone surrogates, huge and tiny numbers, instants at the ends of
the calendar); whatever it sends, the answer is below 500 and, when refused, in the error shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.builders import Api, Metered

AWKWARD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "NaN",
    "Infinity",
    "-0",
    "1e400",
    "1e-400",
    "0.1000000000000000000001",
    "99999999999999999999999",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01",
    "2025-01-15T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "x" * 300,
    "month",
    "quarter",
    "sum",
    "unique_count",
    "set",
    "add",
    "per_unit",
    "usage",
    "fixed",
    "USD",
]


def url_text(text: str) -> str:
    """Text as a client may put it in a path or query: a lone surrogate, which has no UTF-8,
    goes as the bytes a careless encoder makes of it (%ED%A0%80)."""
    return quote(text, safe="", errors="surrogatepass")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(AWKWARD_TEXT),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def objects(fields: list[str], known: dict[str, list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly real field names, with real or random values."""

    def value_for(name: str) -> st.SearchStrategy[Any]:
        choices = [json_values]
        if name in known:
            choices.append(st.sampled_from(known[name]))
        return st.one_of(*choices)

    return st.fixed_dictionaries(
        {},
        optional={name: value_for(name) for name in fields},
    ).flatmap(
        lambda base: st.dictionaries(st.text(max_size=6), json_values, max_size=2).map(
            lambda extra: {**extra, **base}
        )
    )


def assert_client_error_at_most(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["code"], str)
        assert isinstance(body["error"]["message"], str)


def post(api: Api, path: str, body: Any, method: str = "POST") -> httpx.Response:
    # ensure_ascii keeps lone surrogates sendable as \ud800 escapes.
    return api.client.request(method, path, content=json.dumps(body, ensure_ascii=True))


def known_values(setup: Metered) -> dict[str, list[Any]]:
    meters = [m["key"] for m in setup.meters.values()] + [m["id"] for m in setup.meters.values()]
    return {
        "subscription_id": [setup.id],
        "customer_id": [setup.customer["id"]],
        "external_customer_id": [setup.customer["external_id"]],
        "plan_id": [setup.plan["id"]],
        "meter": meters,
        "timestamp": ["2025-01-15T00:00:00Z", "2025-01-20T00:04:59Z"],
        "starts_at": ["2025-01-01T00:00:00Z"],
        "operation": ["add", "set"],
        "quantity": ["1", 2, "0.5"],
        "properties": [{"user": "u1"}, {"user": 1.5}],
        "aggregation": ["sum", "count", "max", "latest", "prorated", "unique_count"],
        "interval": ["month", "quarter", "year"],
        "currency": ["USD", "JPY"],
        "model": ["per_unit", "graduated", "volume", "package"],
        "type": ["fixed", "usage"],
    }


EVENT_FIELDS = [
    "idempotency_key",
    "subscription_id",
    "customer_id",
    "external_customer_id",
    "meter",
    "timestamp",
    "operation",
    "quantity",
    "properties",
]

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
def test_events_never_answer_5xx(api: Api, data: st.DataObject) -> None:
    setup = api.metered("sum", "max", "unique_count")
    known = known_values(setup)
    for _ in range(3):
        shape = data.draw(
            st.one_of(
                json_values,
                st.builds(lambda events: {"events": events}, json_values),
                st.builds(
                    lambda events: {"events": events},
                    st.lists(st.one_of(objects(EVENT_FIELDS, known), json_values), max_size=5),
                ),
            )
        )
        assert_client_error_at_most(post(api, "/v1/events", shape))


@FUZZ
@given(data=st.data())
def test_catalog_customer_and_subscription_writes_never_answer_5xx(
    api: Api, data: st.DataObject
) -> None:
    setup = api.metered("sum")
    known = known_values(setup)
    charge = objects(
        ["type", "name", "amount", "meter", "model", "unit_price", "tiers", "package_size",
         "included_quantity"],
        known,
    )  # fmt: skip
    bodies = {
        "/v1/meters": objects(
            ["key", "name", "unit", "aggregation", "property", "description"], known
        ),
        "/v1/plans": objects(["name", "currency", "interval", "product_id"], known).flatmap(
            lambda plan: st.lists(st.one_of(charge, json_values), max_size=3).map(
                lambda charges: {**plan, "charges": charges}
            )
        ),
        "/v1/customers": objects(
            ["external_id", "name", "email", "address", "tax_rate", "metadata"], known
        ),
        "/v1/subscriptions": objects(
            ["customer_id", "plan_id", "starts_at", "ends_at", "billing_anchor", "metadata"], known
        ),
        "/v1/partners": objects(["name"], known),
    }  # fmt: skip
    path = data.draw(st.sampled_from(sorted(bodies)))
    body = data.draw(st.one_of(bodies[path], json_values))
    assert_client_error_at_most(post(api, path, body))


@FUZZ
@given(data=st.data())
def test_updates_corrections_and_reads_never_answer_5xx(api: Api, data: st.DataObject) -> None:
    setup = api.metered("sum", "unique_count")
    known = known_values(setup)
    api.record(
        [
            {
                "idempotency_key": f"fuzzed-{setup.id}",
                "subscription_id": setup.id,
                "meter": setup.key("sum"),
                "timestamp": "2025-01-15T00:00:00Z",
                "quantity": 1,
            }
        ]
    )
    segment = data.draw(
        st.one_of(
            st.sampled_from([f"fuzzed-{setup.id}", setup.id, setup.customer["id"]]),
            st.text(max_size=10),
        )
    )
    ref = url_text(segment) or "x"
    choice = data.draw(st.integers(0, 5))
    if choice == 0:
        body = data.draw(st.one_of(objects(["quantity", "properties"], known), json_values))
        response = post(api, f"/v1/events/{ref}", body, "PATCH")
    elif choice == 1:
        response = api.client.delete(f"/v1/events/{ref}")
    elif choice == 2:
        body = data.draw(
            st.one_of(
                objects(["name", "email", "external_id", "tax_rate", "metadata", "address"], known),
                json_values,
            )
        )
        response = post(api, f"/v1/customers/{quote(setup.customer['id'])}", body, "PATCH")
    elif choice == 3:
        body = data.draw(st.one_of(objects(["at"], {"at": ["2030-01-01T00:00:00Z"]}), json_values))
        response = post(api, f"/v1/subscriptions/{ref}/cancel", body)
    elif choice == 4:
        at = data.draw(st.one_of(st.sampled_from(AWKWARD_TEXT), st.text(max_size=12)))
        response = api.client.get(f"/v1/subscriptions/{setup.id}/usage?at={url_text(at)}")
    else:
        params = data.draw(
            st.dictionaries(st.sampled_from(["limit", "after", "customer_id"]), st.text(max_size=8))
        )
        path = data.draw(
            st.sampled_from(["/v1/customers", "/v1/subscriptions", "/v1/meters", "/v1/plans"])
        )
        query = "&".join(f"{name}={url_text(value)}" for name, value in params.items())
        response = api.client.get(
            f"{path}/{ref}?{query}" if data.draw(st.booleans()) else f"{path}?{query}"
        )
    assert_client_error_at_most(response)


def test_instants_at_the_ends_of_the_calendar_never_answer_5xx(api: Api) -> None:
    setup = api.metered("sum", "prorated")
    extremes = [
        "9999-12-31T23:59:59.999999Z",
        "9999-12-15T00:00:00Z",
        "9999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-01:00",
        "1900-01-01T00:00:00Z",
    ]
    for instant in extremes:
        for field in ("starts_at", "ends_at", "billing_anchor"):
            body = {
                "customer_id": setup.customer["id"],
                "plan_id": setup.plan["id"],
                "starts_at": "2025-01-01T00:00:00Z",
                field: instant,
            }
            assert_client_error_at_most(post(api, "/v1/subscriptions", body))
        assert_client_error_at_most(
            api.client.get(f"/v1/subscriptions/{setup.id}/usage", params={"at": instant})
        )
        assert_client_error_at_most(
            post(api, f"/v1/subscriptions/{setup.id}/cancel", {"at": instant})
        )
        event = {
            "idempotency_key": f"edge-{instant}",
            "subscription_id": setup.id,
            "meter": setup.key("sum"),
            "timestamp": instant,
            "quantity": 1,
        }
        assert_client_error_at_most(post(api, "/v1/events", {"events": [event]}))
    for sub in api.client.get("/v1/subscriptions").json()["data"]:
        assert_client_error_at_most(api.client.get(f"/v1/subscriptions/{sub['id']}/usage"))


def test_overlong_text_never_answers_5xx(api: Api) -> None:
    setup = api.metered("sum")
    long = "x" * 5000
    bodies = {
        "/v1/partners": {"name": long},
        "/v1/meters": {"key": "k", "name": "n", "unit": "u", "aggregation": "unique_count",
                       "property": long, "description": long},
        "/v1/plans": {"name": "p", "currency": "USD", "interval": "month", "product_id": long,
                      "charges": [{"type": "fixed", "name": long, "amount": "1"}]},
        "/v1/customers": {"external_id": long, "name": long, "email": f"{long}@x"},
        "/v1/subscriptions": {"customer_id": long, "plan_id": long, "starts_at": long},
        "/v1/events": {"events": [{"idempotency_key": "k", "subscription_id": long,
                                   "customer_id": None, "meter": long,
                                   "timestamp": "2025-01-02T00:00:00Z", "quantity": long}]},
    }  # fmt: skip
    for path, body in bodies.items():
        assert_client_error_at_most(post(api, path, body))
    for path in ("/v1/meters", "/v1/plans", "/v1/customers", "/v1/subscriptions"):
        assert_client_error_at_most(api.client.get(f"{path}/{long}"))
    assert_client_error_at_most(post(api, f"/v1/events/{long}", {"quantity": 1}, "PATCH"))
    assert_client_error_at_most(post(api, f"/v1/customers/{setup.customer['id']}",
                                     {"name": long, "email": f"{long}@x"}, "PATCH"))  # fmt: skip
