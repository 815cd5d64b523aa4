"""Subscriptions through the API: status, current period, billing anchor, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from meterworks.db import tables as t
from tests.api.builders import Api, error_of


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_create_and_read(api: Api) -> None:
    meter = api.meter("sum")
    plan = api.plan([meter])
    customer = api.customer()
    api.at(utc(2025, 1, 20, 10))
    sub = api.subscription(customer["id"], plan["id"], utc(2025, 1, 31), metadata={"crm": "x1"})
    assert sub["id"].startswith("sub_")
    assert sub == {
        "id": sub["id"],
        "customer_id": customer["id"],
        "plan_id": plan["id"],
        "status": "pending",
        "interval": "month",
        "currency": "USD",
        "starts_at": "2025-01-31T00:00:00Z",
        "ends_at": None,
        "billing_anchor": "2025-01-31T00:00:00Z",
        "canceled_at": None,
        # Not started yet: the current period is its first one.
        "current_period": {"start": "2025-01-31T00:00:00Z", "end": "2025-02-28T00:00:00Z"},
        "created_at": "2025-01-20T10:00:00Z",
    }
    assert api.client.get(f"/v1/subscriptions/{sub['id']}").json() == sub

    # Time passes: active, and the period follows the anchor on the 31st.
    api.at(utc(2025, 3, 15))
    read = api.client.get(f"/v1/subscriptions/{sub['id']}").json()
    assert read["status"] == "active"
    assert read["current_period"] == {
        "start": "2025-02-28T00:00:00Z",
        "end": "2025-03-31T00:00:00Z",
    }
    api.at(utc(2025, 4, 30))
    assert api.client.get(f"/v1/subscriptions/{sub['id']}").json()["current_period"] == {
        "start": "2025-04-30T00:00:00Z",
        "end": "2025-05-31T00:00:00Z",
    }
    listed = api.client.get("/v1/subscriptions", params={"customer_id": customer["id"]}).json()
    assert [s["id"] for s in listed["data"]] == [sub["id"]]


def test_billing_anchor_and_ends_at_clip_the_periods(api: Api) -> None:
    plan = api.plan([api.meter("sum")], interval="quarter")
    customer = api.customer()
    sub = api.subscription(
        customer["id"],
        plan["id"],
        utc(2025, 1, 10),
        billing_anchor="2025-02-01T00:00:00+00:00",
        ends_at="2025-06-15T12:00:00+02:00",
    )
    assert sub["billing_anchor"] == "2025-02-01T00:00:00Z"
    assert sub["ends_at"] == "2025-06-15T10:00:00Z"
    periods = []
    for when in (utc(2025, 1, 20), utc(2025, 3, 1), utc(2025, 5, 31), utc(2025, 6, 15, 9)):
        api.at(when)
        periods.append(api.client.get(f"/v1/subscriptions/{sub['id']}").json()["current_period"])
    assert periods == [
        {"start": "2025-01-10T00:00:00Z", "end": "2025-02-01T00:00:00Z"},
        {"start": "2025-02-01T00:00:00Z", "end": "2025-05-01T00:00:00Z"},
        {"start": "2025-05-01T00:00:00Z", "end": "2025-06-15T10:00:00Z"},
        {"start": "2025-05-01T00:00:00Z", "end": "2025-06-15T10:00:00Z"},
    ]
    api.at(utc(2025, 7, 1))
    ended = api.client.get(f"/v1/subscriptions/{sub['id']}").json()
    assert ended["status"] == "ended"
    # After the end, the current period stays the last one.
    assert ended["current_period"] == {
        "start": "2025-05-01T00:00:00Z",
        "end": "2025-06-15T10:00:00Z",
    }


def test_cancel_now_and_later(api: Api) -> None:
    plan = api.plan([api.meter("sum")])
    customer = api.customer()
    api.at(utc(2025, 1, 20, 12))
    now_sub = api.subscription(customer["id"], plan["id"], utc(2025, 1, 1))
    later_sub = api.subscription(customer["id"], plan["id"], utc(2025, 1, 1))

    response = api.client.post(f"/v1/subscriptions/{now_sub['id']}/cancel")
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["ends_at"] == "2025-01-20T12:00:00Z"
    assert canceled["canceled_at"] == "2025-01-20T12:00:00Z"
    assert canceled["current_period"] == {
        "start": "2025-01-01T00:00:00Z",
        "end": "2025-01-20T12:00:00Z",
    }
    assert error_of(api.client.post(f"/v1/subscriptions/{now_sub['id']}/cancel"), 409)["code"] == (
        "subscription_ended"
    )

    later = api.client.post(
        f"/v1/subscriptions/{later_sub['id']}/cancel", json={"at": "2025-03-01T00:00:00Z"}
    ).json()
    assert later["status"] == "active"
    assert later["ends_at"] == "2025-03-01T00:00:00Z"
    assert later["canceled_at"] == "2025-01-20T12:00:00Z"
    api.at(utc(2025, 3, 1))
    assert api.client.get(f"/v1/subscriptions/{later_sub['id']}").json()["status"] == "canceled"


def test_cancel_refuses_the_past_and_garbage(api: Api) -> None:
    plan = api.plan([api.meter("sum")])
    customer = api.customer()
    sub = api.subscription(customer["id"], plan["id"], utc(2025, 1, 1))
    for body, field in (({"at": "2025-01-19T00:00:00Z"}, "at"), ({"at": "soon"}, "at")):
        error = error_of(api.client.post(f"/v1/subscriptions/{sub['id']}/cancel", json=body), 422)
        assert [d["field"] for d in error["details"]] == [field]
    assert api.client.get(f"/v1/subscriptions/{sub['id']}").json() == sub


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"starts_at": "not a date"}, 422, "starts_at"),
        ({"ends_at": "2025-01-01T00:00:00Z"}, 422, "ends_at"),
        ({"ends_at": "2024-12-31T00:00:00Z"}, 422, "ends_at"),
        ({"billing_anchor": "31/01/2025"}, 422, "billing_anchor"),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, 422, "starts_at"),
        ({"customer_id": "cus_missing"}, 404, None),
        ({"plan_id": "pln_missing"}, 404, None),
    ],
)
def test_invalid_subscriptions_are_refused(
    api: Api, change: dict[str, Any], status: int, field: str | None
) -> None:
    plan = api.plan([api.meter("sum")])
    customer = api.customer()
    body = {
        "customer_id": customer["id"],
        "plan_id": plan["id"],
        "starts_at": "2025-01-01T00:00:00Z",
    }
    error = error_of(api.client.post("/v1/subscriptions", json={**body, **change}), status)
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field]
    assert api.rows(t.subscriptions) == 0


def test_unknown_subscription_is_404(api: Api) -> None:
    for response in (
        api.client.get("/v1/subscriptions/sub_nope"),
        api.client.post("/v1/subscriptions/sub_nope/cancel"),
        api.client.get("/v1/subscriptions/sub_nope/usage"),
    ):
        assert error_of(response, 404)["code"] == "subscription_not_found"


def test_canceling_before_the_start_gives_a_canceled_empty_subscription(api: Api) -> None:
    plan = api.plan([api.meter("sum")])
    customer = api.customer()
    api.at(utc(2025, 1, 20))
    sub = api.subscription(customer["id"], plan["id"], utc(2025, 2, 1))
    assert sub["status"] == "pending"
    canceled = api.client.post(f"/v1/subscriptions/{sub['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert canceled["ends_at"] == "2025-02-01T00:00:00Z"
    assert canceled["current_period"] == {
        "start": "2025-02-01T00:00:00Z",
        "end": "2025-02-01T00:00:00Z",
    }
    api.at(utc(2025, 3, 1))
    assert api.client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "canceled"
    assert {m["quantity"] for m in api.usage(sub["id"])["meters"]} == {"0"}
