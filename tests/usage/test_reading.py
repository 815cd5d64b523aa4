"""Reading usage: the running period counts up to now, a past period whole, levels carry over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.builders import START, Api, error_of, event

DAY = timedelta(days=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_the_answer_names_the_period_and_each_meter(api: Api) -> None:
    s = api.metered("sum", "prorated")
    api.at(utc(2025, 1, 20, 6))
    usage = api.usage(s.id)
    assert usage == {
        "subscription_id": s.id,
        "period": {"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"},
        "counted_until": "2025-01-20T06:00:00Z",
        "meters": [
            {
                "meter": s.meters["sum"]["id"],
                "key": s.key("sum"),
                "aggregation": "sum",
                "quantity": "0",
                "unit": "unit",
            },
            {
                "meter": s.meters["prorated"]["id"],
                "key": s.key("prorated"),
                "aggregation": "prorated",
                "quantity": "0",
                "unit": "unit-days",
            },
        ],
    }


def test_the_seed_gauge_example_bills_113_unit_days(api: Api) -> None:
    """3 for 6 days, 4 for 8, 8 for 6, 5 for 3: a 23-day window, 113 unit-days."""
    s = api.metered("prorated", starts_at=utc(2025, 2, 1), ends_at="2025-02-24T00:00:00Z")
    api.at(utc(2025, 3, 1))
    meter = s.key("prorated")
    api.record(
        [
            event(subscription_id=s.id, meter=meter, operation="set", quantity=q, timestamp=at)
            for q, at in (
                (3, utc(2025, 2, 1)),
                (4, utc(2025, 2, 7)),
                (8, utc(2025, 2, 15)),
                (5, utc(2025, 2, 21)),
            )
        ]
    )
    usage = api.usage(s.id)
    assert usage["period"] == {"start": "2025-02-01T00:00:00Z", "end": "2025-02-24T00:00:00Z"}
    assert usage["counted_until"] == "2025-02-24T00:00:00Z"
    assert api.quantities(s.id) == {meter: "113"}


def test_a_running_prorated_period_accrues_with_the_clock(api: Api) -> None:
    s = api.metered("prorated", "max", "latest")
    api.at(utc(2025, 1, 2))
    sub = {"subscription_id": s.id}
    api.record(
        [
            event(meter=s.key("prorated"), operation="set", quantity=2, **sub),
            event(meter=s.key("max"), operation="set", quantity=2, **sub),
            event(meter=s.key("latest"), operation="set", quantity=2, **sub),
        ]
    )
    readings = []
    for now in (utc(2025, 1, 2), utc(2025, 1, 11), utc(2025, 1, 11, 12), utc(2025, 1, 31, 18)):
        api.at(now)
        readings.append(api.quantities(s.id)[s.key("prorated")])
    assert readings == ["2", "20", "21", "61.5"]
    # After the period ends, it counts whole, and the next period carries the level on.
    api.at(utc(2025, 2, 10))
    assert api.quantities(s.id, at=utc(2025, 1, 15)) == {
        s.key("prorated"): "62",
        s.key("max"): "2",
        s.key("latest"): "2",
    }
    assert api.quantities(s.id) == {
        s.key("prorated"): "18",
        s.key("max"): "2",
        s.key("latest"): "2",
    }


def test_a_past_period_is_read_whole_with_at(api: Api) -> None:
    s = api.metered("sum", "count", "unique_count", "max", "latest", "prorated")
    api.at(utc(2025, 3, 10))
    sub = {"subscription_id": s.id}
    api.record(
        [
            # January
            event(meter=s.key("sum"), quantity=10, timestamp=utc(2025, 1, 5), **sub),
            event(meter=s.key("count"), quantity=None, timestamp=utc(2025, 1, 5), **sub),
            event(
                meter=s.key("unique_count"),
                quantity=None,
                properties={"user": "ann"},
                timestamp=utc(2025, 1, 5),
                **sub,
            ),
            event(
                meter=s.key("max"), operation="set", quantity=8, timestamp=utc(2025, 1, 5), **sub
            ),
            event(
                meter=s.key("max"), operation="set", quantity=3, timestamp=utc(2025, 1, 6), **sub
            ),
            event(
                meter=s.key("latest"), operation="set", quantity=4, timestamp=utc(2025, 1, 5), **sub
            ),
            event(
                meter=s.key("prorated"),
                operation="set",
                quantity=1,
                timestamp=utc(2025, 1, 1),
                **sub,
            ),
            # February
            event(meter=s.key("sum"), quantity=1, timestamp=utc(2025, 2, 27), **sub),
            event(meter=s.key("prorated"), quantity=1, timestamp=utc(2025, 2, 15), **sub),
            # March, after the first week
            event(meter=s.key("latest"), quantity=-1, timestamp=utc(2025, 3, 8), **sub),
        ]
    )
    keys = {a: s.key(a) for a in s.meters}
    january = api.usage(s.id, at=utc(2025, 1, 31, 23))
    assert january["period"] == {"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}
    assert january["counted_until"] == "2025-02-01T00:00:00Z"
    assert api.quantities(s.id, at=utc(2025, 1, 1)) == {
        keys["sum"]: "10",
        keys["count"]: "1",
        keys["unique_count"]: "1",
        keys["max"]: "8",
        keys["latest"]: "4",
        keys["prorated"]: "31",
    }
    # February: its own sum; levels carried from January where February has no event.
    assert api.quantities(s.id, at=utc(2025, 2, 1)) == {
        keys["sum"]: "1",
        keys["count"]: "0",
        keys["unique_count"]: "0",
        keys["max"]: "3",
        keys["latest"]: "4",
        keys["prorated"]: "42",  # 1 × 14 days + 2 × 14 days
    }
    # March, running: up to now (the 10th).
    assert api.quantities(s.id) == {
        keys["sum"]: "0",
        keys["count"]: "0",
        keys["unique_count"]: "0",
        keys["max"]: "3",
        keys["latest"]: "3",
        keys["prorated"]: "18",
    }
    # Before the window is the first period; a future period has counted nothing yet.
    assert api.usage(s.id, at=utc(2024, 6, 1))["period"]["start"] == "2025-01-01T00:00:00Z"
    future = api.usage(s.id, at=utc(2025, 5, 5))
    assert future["period"] == {"start": "2025-05-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"}
    assert future["counted_until"] == "2025-05-01T00:00:00Z"
    assert {m["key"]: m["quantity"] for m in future["meters"]}[keys["prorated"]] == "0"


def test_out_of_order_level_events_are_folded_in_ledger_order(api: Api) -> None:
    s = api.metered("latest", "max", "prorated")
    api.at(utc(2025, 2, 1))
    sub = {"subscription_id": s.id}
    for at, quantity in ((utc(2025, 1, 21), 1), (utc(2025, 1, 11), 5), (utc(2025, 1, 1), 2)):
        api.record(
            [
                event(meter=s.key(a), operation="set", quantity=quantity, timestamp=at, **sub)
                for a in ("latest", "max", "prorated")
            ]
        )
    assert api.quantities(s.id, at=START) == {
        s.key("latest"): "1",
        s.key("max"): "5",
        s.key("prorated"): "81",  # 2 × 10 + 5 × 10 + 1 × 11
    }
    api.assert_rollups_match_ledger()


def test_at_must_be_a_timestamp(api: Api) -> None:
    s = api.metered("sum")
    response = api.client.get(f"/v1/subscriptions/{s.id}/usage", params={"at": "later"})
    assert [d["field"] for d in error_of(response, 422)["details"]] == ["at"]
