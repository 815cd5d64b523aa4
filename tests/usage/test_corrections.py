"""Corrections: PATCH and DELETE of an event, reflected at once in every aggregation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterworks.db import tables as t
from tests.api.builders import START, Api, error_of, event

DAY = timedelta(days=1)


def seed(api: Api) -> tuple[Any, list[dict[str, Any]]]:
    s = api.metered("sum", "count", "unique_count", "max", "latest", "prorated")
    sub = {"subscription_id": s.id}
    events = [
        event("sum-1", meter=s.key("sum"), quantity=5, **sub),
        event("sum-2", meter=s.key("sum"), quantity=7, timestamp=START + DAY, **sub),
        event("count-1", meter=s.key("count"), quantity=None, **sub),
        event("count-2", meter=s.key("count"), quantity=None, timestamp=START + DAY, **sub),
        event(
            "uniq-1", meter=s.key("unique_count"), quantity=None, properties={"user": "ann"}, **sub
        ),
        event(
            "uniq-2", meter=s.key("unique_count"), quantity=None, properties={"user": "bob"}, **sub
        ),
        event(
            "uniq-3", meter=s.key("unique_count"), quantity=None, properties={"user": "bob"}, **sub
        ),
        event("max-1", meter=s.key("max"), operation="set", quantity=4, **sub),
        event(
            "max-2", meter=s.key("max"), operation="set", quantity=9, timestamp=START + DAY, **sub
        ),
        event(
            "max-3",
            meter=s.key("max"),
            operation="set",
            quantity=2,
            timestamp=START + 2 * DAY,
            **sub,
        ),
        event("latest-1", meter=s.key("latest"), operation="set", quantity=3, **sub),
        event("latest-2", meter=s.key("latest"), quantity=2, timestamp=START + DAY, **sub),
        event("pro-1", meter=s.key("prorated"), operation="set", quantity=2, **sub),
        event(
            "pro-2",
            meter=s.key("prorated"),
            operation="set",
            quantity=6,
            timestamp=START + 10 * DAY,
            **sub,
        ),
    ]
    api.record(events)
    return s, events


def test_patch_and_delete_are_reflected_at_once_in_every_aggregation(api: Api) -> None:
    s, _ = seed(api)
    keys = {a: s.key(a) for a in s.meters}
    # Now is Jan 20: prorated = 2 × 10 days + 6 × 9 days.
    assert api.quantities(s.id) == {
        keys["sum"]: "12",
        keys["count"]: "2",
        keys["unique_count"]: "2",
        keys["max"]: "9",
        keys["latest"]: "5",
        keys["prorated"]: "74",
    }

    def patch(key: str, body: dict[str, Any]) -> dict[str, Any]:
        response = api.client.patch(f"/v1/events/{key}", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    amended = patch("sum-1", {"quantity": "0.5"})
    assert amended == {
        "idempotency_key": "sum-1",
        "status": "amended",
        "revision": 1,
        "subscription_id": s.id,
        "meter": s.meters["sum"]["id"],
        "timestamp": "2025-01-01T00:00:00Z",
        "operation": "add",
        "quantity": "0.5",
        "properties": None,
        "source": "native",
    }
    patch("uniq-1", {"properties": {"user": "bob"}})  # ann's only event now names bob
    patch("max-2", {"quantity": 3})
    patch("latest-1", {"quantity": 10})
    patch("pro-1", {"quantity": 1})
    assert api.quantities(s.id) == {
        keys["sum"]: "7.5",
        keys["count"]: "2",
        keys["unique_count"]: "1",
        keys["max"]: "4",
        keys["latest"]: "12",
        keys["prorated"]: "64",
    }
    api.assert_rollups_match_ledger()

    for key in ("sum-2", "count-1", "uniq-2", "max-1", "latest-2", "pro-2"):
        response = api.client.delete(f"/v1/events/{key}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "voided"
    assert api.quantities(s.id) == {
        keys["sum"]: "0.5",
        keys["count"]: "1",
        keys["unique_count"]: "1",
        keys["max"]: "3",
        keys["latest"]: "10",
        keys["prorated"]: "19",
    }
    api.assert_rollups_match_ledger()

    # Voiding every event leaves nothing counted, and no stale running total.
    for key in ("sum-1", "count-2", "uniq-1", "uniq-3", "max-2", "max-3", "latest-1", "pro-1"):
        assert api.client.delete(f"/v1/events/{key}").status_code == 200
    assert set(api.quantities(s.id).values()) == {"0"}
    api.assert_rollups_match_ledger()
    # Corrections are ledger entries: 14 events, 5 amends, 14 voids; nothing rewritten.
    assert api.ledger_rows() == 14 + 5 + 14


def test_delete_twice_is_idempotent(api: Api) -> None:
    s, _ = seed(api)
    first = api.client.delete("/v1/events/sum-1")
    second = api.client.delete("/v1/events/sum-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["status"] == "voided"
    assert first.json()["revision"] == 1
    assert api.quantities(s.id)[s.key("sum")] == "7"
    assert api.ledger_rows() == 15


def test_a_voided_event_cannot_be_amended(api: Api) -> None:
    s, _ = seed(api)
    api.client.delete("/v1/events/sum-1")
    rows = api.ledger_rows()
    error = error_of(api.client.patch("/v1/events/sum-1", json={"quantity": 1}), 409)
    assert error["code"] == "event_voided"
    assert api.ledger_rows() == rows
    assert api.quantities(s.id)[s.key("sum")] == "7"


def test_a_replay_of_a_corrected_event_stays_a_duplicate(api: Api) -> None:
    s, events = seed(api)
    api.client.patch("/v1/events/sum-1", json={"quantity": 100})
    api.client.delete("/v1/events/sum-2")
    assert api.record(events) == {"accepted": 0, "duplicates": len(events)}
    assert api.quantities(s.id)[s.key("sum")] == "100"


def test_unknown_events_are_404(api: Api) -> None:
    seed(api)
    for response in (
        api.client.patch("/v1/events/nope", json={"quantity": 1}),
        api.client.delete("/v1/events/nope"),
    ):
        assert error_of(response, 404)["code"] == "event_not_found"


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("sum-1", {}, "invalid_input"),
        ("sum-1", {"quantity": "abc"}, "invalid_quantity"),
        ("sum-1", {"quantity": None}, "invalid_quantity"),
        ("sum-1", {"quantity": "NaN"}, "invalid_quantity"),
        ("sum-1", {"quantity": True}, "invalid_quantity"),
        ("sum-1", {"quantity": "-1"}, "negative_quantity"),
        ("max-1", {"quantity": "-1"}, "negative_quantity"),
        ("uniq-1", {"properties": {}}, "missing_property"),
        ("sum-1", {"properties": "x"}, "invalid_input"),
        ("sum-1", {"timestamp": "2025-01-02T00:00:00Z"}, "invalid_input"),
        ("sum-1", {"meter": "other"}, "invalid_input"),
    ],
)
def test_invalid_amendments_are_refused_and_write_nothing(
    api: Api, key: str, body: dict[str, Any], code: str
) -> None:
    s, _ = seed(api)
    before = api.quantities(s.id)
    rows = api.ledger_rows()
    error = error_of(api.client.patch(f"/v1/events/{key}", json=body), 422)
    assert error["code"] == code
    assert api.ledger_rows() == rows
    assert api.quantities(s.id) == before


def test_correcting_a_level_event_in_an_earlier_period_rebuilds_later_periods(api: Api) -> None:
    s = api.metered("latest", "prorated", "max")
    api.at(START + timedelta(days=70))  # mid-March
    sub = {"subscription_id": s.id}
    api.record(
        [
            event("jan", meter=s.key("latest"), operation="set", quantity=5, **sub),
            event("jan-p", meter=s.key("prorated"), operation="set", quantity=5, **sub),
            event("jan-m", meter=s.key("max"), operation="set", quantity=5, **sub),
            event("feb", meter=s.key("latest"), quantity=1, timestamp=START + 40 * DAY, **sub),
        ]
    )
    february = START + 40 * DAY
    assert api.quantities(s.id, at=february) == {
        s.key("latest"): "6",
        s.key("prorated"): "140",  # 5 × 28 days, carried over
        s.key("max"): "5",
    }
    api.client.patch("/v1/events/jan", json={"quantity": 2})
    api.client.patch("/v1/events/jan-p", json={"quantity": 2})
    api.client.patch("/v1/events/jan-m", json={"quantity": 2})
    assert api.quantities(s.id, at=february) == {
        s.key("latest"): "3",
        s.key("prorated"): "56",
        s.key("max"): "2",
    }
    # March has no event of its own: it carries February's closing levels.
    assert api.quantities(s.id, at=START + 70 * DAY) == {
        s.key("latest"): "3",
        s.key("prorated"): "22",  # 2 × the 11 days of March so far
        s.key("max"): "2",
    }
    api.assert_rollups_match_ledger()
    assert api.rows(t.usage_rollups) >= 3


def test_unique_values_given_as_numbers_are_counted_and_voided_consistently(api: Api) -> None:
    s = api.metered("unique_count")
    meter = s.key("unique_count")
    sub = {"subscription_id": s.id}
    api.record(
        [
            event("n1", meter=meter, quantity=None, properties={"user": Decimal("1.50")}, **sub),
            event("n2", meter=meter, quantity=None, properties={"user": 7}, **sub),
            event("n3", meter=meter, quantity=None, properties={"user": "7"}, **sub),
            event("n4", meter=meter, quantity=None, properties={"user": True}, **sub),
        ]
    )
    assert api.quantities(s.id) == {meter: "3"}
    api.assert_rollups_match_ledger()
    for key in ("n1", "n2", "n3", "n4"):
        assert api.client.delete(f"/v1/events/{key}").status_code == 200
    assert api.quantities(s.id) == {meter: "0"}
    api.assert_rollups_match_ledger()
    assert api.rows(t.usage_rollup_values) == 0
