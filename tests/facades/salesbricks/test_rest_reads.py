"""REST v2 usage reads: per period, as a zero-filled series, and entry by entry."""

from __future__ import annotations

from typing import Any

from tests.facades.salesbricks.support import Company, at, company, ledger_rows
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

USAGE = "/api/v2/usage/"


def post(sb: Company, transaction_id: str, time: str, value: int, brick: str = "") -> None:
    body = {
        "transaction_id": transaction_id,
        "subscription_id": sb.subscription_id,
        "brick_id": brick or sb.counter_id,
        "value": value,
        "time": time,
    }
    response = sb.client.post(USAGE, json=body)
    assert response.status_code == 201, response.text


def reads(sb: Company, suffix: str = "", brick: str = "", **params: Any) -> Any:
    path = f"/api/v2/subscriptions/{sb.subscription_id}/bricks/{brick or sb.counter_id}/usage"
    response = sb.client.get(path + suffix, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def period(sb: Company, start: str, end: str, used: int) -> dict[str, Any]:
    return {
        "starts_at": start,
        "ends_at": end,
        "subscription_id": sb.subscription_id,
        "brick_id": sb.counter_id,
        "brick_name": "Api Calls",
        "pre_commitment": 100,
        "used": used,
        "remaining": max(0, 100 - used),
        "unit": "call",
    }


def test_usage_per_period_with_pre_commitment(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-03-10T00:00:00Z"))
    with company(server, org) as sb:
        post(sb, "jan-1", "2025-01-05T00:00:00Z", 60)
        post(sb, "jan-2", "2025-01-25T00:00:00Z", 70)
        post(sb, "feb-1", "2025-02-14T00:00:00Z", 40)
        post(sb, "mar-1", "2025-03-02T00:00:00Z", 5)
        january = period(sb, "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", 130)
        february = period(sb, "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z", 40)
        march = period(sb, "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z", 5)
        assert january["remaining"] == 0  # used past the pre-commitment
        assert reads(sb) == [january, february, march]
        assert reads(sb, currentPeriod="true") == [march]
        assert reads(sb, currentPeriod="1") == [march]
        assert reads(sb, **{"from": "2025-02-01"}) == [february, march]
        # `to` keeps periods ending on or before it: to=2025-03-01 includes February.
        assert reads(sb, to="2025-03-01") == [january, february]
        assert reads(sb, **{"from": "2025-02-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}) == [
            february
        ]


def test_series_sums_per_bucket_and_fills_gaps(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        post(sb, "a", "2025-01-02T09:00:00Z", 3)
        post(sb, "b", "2025-01-02T18:00:00Z", 4)
        post(sb, "c", "2025-01-04T00:00:00Z", 5)
        post(sb, "d", "2025-01-13T12:00:00Z", 6)
        deleted = sb.client.request("DELETE", USAGE, json={"transaction_id": "c"})
        assert deleted.status_code == 200
        series = reads(sb, "/series", interval="day", **{"from": "2025-01-01", "to": "2025-01-05"})
        assert series == {
            "subscription_id": sb.subscription_id,
            "brick_id": sb.counter_id,
            "interval": "day",
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-05T00:00:00Z",
            "results": [
                {"starts_at": f"2025-01-0{d}T00:00:00Z", "ends_at": f"2025-01-0{d + 1}T00:00:00Z",
                 "count": count}
                for d, count in ((1, 0), (2, 7), (3, 0), (4, 0))
            ],
        }  # fmt: skip
        weekly = reads(sb, "/series", interval="week", **{"from": "2025-01-01"})
        # ISO weeks start on Monday: 2024-12-30, 2025-01-06, 2025-01-13 (up to now, Jan 20).
        assert [(b["starts_at"], b["count"]) for b in weekly["results"]] == [
            ("2024-12-30T00:00:00Z", 7),
            ("2025-01-06T00:00:00Z", 0),
            ("2025-01-13T00:00:00Z", 6),
        ]
        monthly = reads(sb, "/series", interval="month")  # default: this period up to now
        assert monthly["results"] == [
            {"starts_at": "2025-01-01T00:00:00Z", "ends_at": "2025-02-01T00:00:00Z", "count": 13}
        ]
        hourly = reads(
            sb,
            "/series",
            interval="hour",
            **{"from": "2025-01-02T08:30:00Z", "to": "2025-01-02T10:00:00Z"},
        )
        assert [b["count"] for b in hourly["results"]] == [0, 3]
        for params in ({"interval": "minute"}, {"from": "later"}, {"from": "2025-01-05", "to":
                       "2025-01-01"}, {"interval": "hour", "from": "2000-01-01"}):  # fmt: skip
            path = f"/api/v2/subscriptions/{sb.subscription_id}/bricks/{sb.counter_id}/usage"
            response = sb.client.get(path + "/series", params=params)
            assert response.status_code == 400, (params, response.text)


def test_entries_newest_first_with_pages(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        for day in range(1, 6):
            post(sb, f"e{day}", f"2025-01-0{day}T00:00:00Z", day)
        amended = sb.client.patch(
            USAGE, json={"transaction_id": "e2", "value": 20, "properties": {"why": "recount"}}
        )
        assert amended.status_code == 200
        assert sb.client.request("DELETE", USAGE, json={"transaction_id": "e4"}).status_code == 200
        first = reads(sb, "/entries", limit=2)
        assert first["count"] == 4
        assert first["previous"] is None
        assert first["next"].endswith("limit=2&offset=2")
        assert first["results"] == [
            {
                "transaction_id": "e5",
                "idempotency_key": "sb:e5",
                "subscription_id": sb.subscription_id,
                "brick_id": sb.counter_id,
                "value": 5,
                "time": "2025-01-05T00:00:00Z",
                "properties": None,
                "source": "salesbricks",
                "created_at": "2025-01-20T00:00:00Z",
            },
            {
                "transaction_id": "e3",
                "idempotency_key": "sb:e3",
                "subscription_id": sb.subscription_id,
                "brick_id": sb.counter_id,
                "value": 3,
                "time": "2025-01-03T00:00:00Z",
                "properties": None,
                "source": "salesbricks",
                "created_at": "2025-01-20T00:00:00Z",
            },
        ]
        second = sb.client.get(first["next"])
        assert second.status_code == 200
        page = second.json()
        assert [(e["transaction_id"], e["value"], e["properties"]) for e in page["results"]] == [
            ("e2", 20, {"why": "recount"}),
            ("e1", 1, None),
        ]
        assert page["next"] is None
        assert page["previous"].endswith("limit=2&offset=0")
        assert reads(sb, "/entries", offset=10)["results"] == []


def test_reads_of_unknown_things_are_404(server: RunningServer, org: IsolatedOrganization) -> None:
    with company(server, org) as sb:
        base = "/api/v2/subscriptions"
        cases = [
            (f"{base}/sub_unknown/bricks/{sb.counter_id}/usage", "subscription_not_found"),
            (f"{base}/{sb.subscription_id}/bricks/mtr_unknown/usage", "brick_not_found"),
            (f"{base}/{sb.subscription_id}/bricks/sms/usage/series", "brick_not_in_plan"),
            (f"{base}/{sb.subscription_id}/bricks/sms/usage/entries", "brick_not_in_plan"),
        ]
        for path, code in cases:
            response = sb.client.get(path)
            assert response.status_code == 404, response.text
            assert response.json()["code"] == code
        wrong = sb.client.get(f"{base}/{sb.subscription_id}/bricks/{sb.counter_id}/usage/entries",
                              params={"limit": 0})  # fmt: skip
        assert wrong.status_code == 400
        assert sb.client.get("/api/v2/nothing-here").status_code == 404
        assert sb.client.get("/nothing-here").json()["code"] == "not_found"
        assert ledger_rows(server, org.id) == 0
