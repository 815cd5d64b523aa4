"""Reporting usage: the seed's call, refusing a batch whole, Replace, retries."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from meterworks.facades.saaslogic import usage
from tests.facades.saaslogic.support import (
    PREFIX,
    Merchant,
    ledger_rows,
    native_usage,
    subscribe,
)
from tests.support.hot import Sent, answered_both_ways

SEED_BODY = """{
    "usageDate": "2024-07-25T15:00:00",
    "reportingType": "Add",
    "usageDetails": [
        {
            "resourceId": "RESOURCE_ID",
            "value": 123.45,
            "uomId": "UOM_ID"
        }
    ]
}"""


def report(
    merchant: Merchant, subscription_id: str, body: object, **headers: str
) -> httpx.Response:
    return merchant.client.post(f"/subscriptions/{subscription_id}/resources", json=body,
                                headers=headers)  # fmt: skip


def test_the_seed_call_verbatim_is_answered_200_without_a_body(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    meter = scene.meters["storage"]
    body = SEED_BODY.replace("RESOURCE_ID", meter["id"]).replace("UOM_ID", meter["unit"])
    # The seed's curl call: its headers, its raw body, only the ids and the token are ours.
    answer = httpx.post(
        f"{merchant.server.base_url}{PREFIX}/subscriptions/{scene.subscription_id}/resources",
        content=body.encode(),
        headers={
            "Accept": "application/json",
            "Authorization": merchant.client.headers["Authorization"],
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.content == b""
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "123.45"}
    events = merchant.org.client.get(f"/v1/subscriptions/{scene.subscription_id}/usage").json()
    assert events["period"] == {"start": "2024-07-01T00:00:00Z", "end": "2024-08-01T00:00:00Z"}
    assert ledger_rows(merchant.server, merchant.org.id) == 1


def test_the_seed_call_without_a_token_is_refused_as_the_seed_shows(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    body = SEED_BODY.replace("RESOURCE_ID", scene.meters["storage"]["id"]).replace("UOM_ID", "GB")
    # curl's `--header 'Authorization;'` sends the header empty.
    answer = httpx.post(
        f"{merchant.server.base_url}{PREFIX}/subscriptions/{scene.subscription_id}/resources",
        content=body.encode(),
        headers={
            "Accept": "application/json",
            "Authorization": "",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert answer.status_code == 401
    assert answer.json()["message"] == "UN_AUTHORIZED"
    assert ledger_rows(merchant.server, merchant.org.id) == 0


def test_details_of_one_call_are_recorded_together_by_id_or_key(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum", "api_calls": "sum"})
    # Raw JSON: the numbers must reach the server as written, never through a float.
    body = """{"usageDate": "2024-07-25T15:00:00", "reportingType": "Add", "usageDetails": [
        {"resourceId": "STORAGE_ID", "value": 0.1},
        {"resourceId": "storage", "value": "0.2", "uomId": "gb"},
        {"resourceId": "api_calls", "value": 12345678901234567.123456789, "uomId": "CALLS_ID"}
    ]}"""
    body = body.replace("STORAGE_ID", scene.meters["storage"]["id"])
    body = body.replace("CALLS_ID", scene.meters["api_calls"]["id"])
    answer = merchant.client.post(
        f"/subscriptions/{scene.subscription_id}/resources",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert native_usage(merchant.org, scene.subscription_id) == {
        "storage": "0.3",
        "api_calls": "12345678901234567.123456789",
    }
    assert ledger_rows(merchant.server, merchant.org.id) == 3


@pytest.mark.parametrize(
    ("bad_detail", "code", "field"),
    [
        ({"resourceId": "nope", "value": 1}, "RESOURCE_NOT_FOUND", "usageDetails[1].resourceId"),
        ({"resourceId": "storage", "value": 1, "uomId": "TB"}, "UOM_MISMATCH",
         "usageDetails[1].uomId"),
        ({"resourceId": "storage", "value": -1}, "NEGATIVE_VALUE", "usageDetails[1].value"),
        ({"resourceId": "storage", "value": "ten"}, "INVALID_VALUE", "usageDetails[1].value"),
        ({"resourceId": "storage"}, "MISSING_FIELD", "usageDetails[1].value"),
        ({"value": 1}, "MISSING_FIELD", "usageDetails[1].resourceId"),
        ({"resourceId": "unplanned", "value": 1}, "RESOURCE_NOT_IN_PLAN",
         "usageDetails[1].resourceId"),
    ],
)  # fmt: skip
def test_one_bad_detail_refuses_the_whole_call_and_writes_nothing(
    merchant: Merchant, bad_detail: dict[str, object], code: str, field: str
) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    merchant.org.client.post(
        "/v1/meters", json={"key": "unplanned", "name": "U", "unit": "GB", "aggregation": "sum"}
    )
    answer = report(
        merchant,
        scene.subscription_id,
        {"usageDate": "2024-07-25T15:00:00", "reportingType": "Add",
         "usageDetails": [{"resourceId": "storage", "value": 5}, bad_detail,
                          {"resourceId": "storage", "value": 7}]},
    )  # fmt: skip
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["message"] == code
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)]
    assert ledger_rows(merchant.server, merchant.org.id) == 0
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "0"}


@pytest.mark.parametrize(
    ("usage_date", "code"),
    [
        ("2024-06-30T23:59:59", "OUTSIDE_SUBSCRIPTION_WINDOW"),
        ("2024-07-26T00:05:01", "TIMESTAMP_IN_FUTURE"),
    ],
)
def test_a_usage_date_the_subscription_cannot_take_is_refused(
    merchant: Merchant, usage_date: str, code: str
) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = report(
        merchant,
        scene.subscription_id,
        {"usageDate": usage_date, "usageDetails": [{"resourceId": "storage", "value": 1}]},
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["message"] == code
    assert body["errors"][0]["field"] == "usageDate"
    assert ledger_rows(merchant.server, merchant.org.id) == 0


def test_a_usage_date_without_a_zone_is_utc_and_one_with_a_zone_is_honoured(
    merchant: Merchant,
) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})  # from 2024-07-01T00:00:00Z
    for usage_date in ("2024-07-01T01:30:00", "2024-07-20T12:00:00Z", "2024-07-20T14:00:00+02:00"):
        answer = report(
            merchant,
            scene.subscription_id,
            {"usageDate": usage_date, "usageDetails": [{"resourceId": "storage", "value": 2}]},
        )
        assert answer.status_code == 200, answer.text
    # The same wall time two hours east of UTC is still June there: before the subscription.
    answer = report(
        merchant,
        scene.subscription_id,
        {"usageDate": "2024-07-01T01:30:00+02:00",
         "usageDetails": [{"resourceId": "storage", "value": 2}]},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["message"] == "OUTSIDE_SUBSCRIPTION_WINDOW"
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "6"}
    assert ledger_rows(merchant.server, merchant.org.id) == 3


def test_replace_sets_the_level_of_a_latest_resource(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"seats": "latest"})
    for when, kind, value in [
        ("2024-07-10T00:00:00", "Add", 5),
        ("2024-07-11T00:00:00", "Replace", 12),
        ("2024-07-12T00:00:00", "Replace", 8),
    ]:
        answer = report(
            merchant,
            scene.subscription_id,
            {"usageDate": when, "reportingType": kind,
             "usageDetails": [{"resourceId": "seats", "value": value}]},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
    assert native_usage(merchant.org, scene.subscription_id) == {"seats": "8"}
    assert ledger_rows(merchant.server, merchant.org.id) == 3


def test_replace_on_a_summed_resource_is_refused(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = report(
        merchant,
        scene.subscription_id,
        {"usageDate": "2024-07-25T15:00:00", "reportingType": "Replace",
         "usageDetails": [{"resourceId": "storage", "value": 3}]},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["message"] == "OPERATION_NOT_ALLOWED"
    assert answer.json()["errors"][0]["field"] == "reportingType"
    assert ledger_rows(merchant.server, merchant.org.id) == 0


def test_a_retried_call_adds_again_unless_it_carries_an_idempotency_key(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    body = {"usageDate": "2024-07-25T15:00:00",
            "usageDetails": [{"resourceId": "storage", "value": 123.45}]}  # fmt: skip
    for _ in range(2):
        assert report(merchant, scene.subscription_id, body).status_code == 200
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "246.9"}
    for _ in range(2):
        answer = report(merchant, scene.subscription_id, body, **{"Idempotency-Key": "job-42"})
        assert answer.status_code == 200
        assert answer.content == b""
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "370.35"}
    assert ledger_rows(merchant.server, merchant.org.id) == 3
    changed = {**body, "usageDetails": [{"resourceId": "storage", "value": 1}]}
    answer = report(merchant, scene.subscription_id, changed, **{"Idempotency-Key": "job-42"})
    assert answer.status_code == 409
    assert answer.json()["message"] == "IDEMPOTENCY_CONFLICT"
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert ledger_rows(merchant.server, merchant.org.id) == 3


def test_an_unknown_subscription_is_404_and_writes_nothing(merchant: Merchant) -> None:
    subscribe(merchant.org, {"storage": "sum"})
    answer = report(
        merchant, "sub_missing", {"usageDetails": [{"resourceId": "storage", "value": 1}]}
    )
    assert answer.status_code == 404
    assert answer.json()["message"] == "SUBSCRIPTION_NOT_FOUND"
    assert ledger_rows(merchant.server, merchant.org.id) == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "INVALID_JSON"),
        (b"[]", "INVALID_REQUEST"),
        (b'{"reportingType": "Subtract", "usageDetails": [{"resourceId": "storage", "value": 1}]}',
         "INVALID_REPORTING_TYPE"),
        (b'{"usageDate": "yesterday", "usageDetails": [{"resourceId": "storage", "value": 1}]}',
         "INVALID_USAGE_DATE"),
        (b'{"usageDetails": []}', "MISSING_USAGE_DETAILS"),
        (b'{"usageDetails": [{"resourceId": "storage", "value": NaN}]}', "INVALID_JSON"),
    ],
)  # fmt: skip
def test_a_malformed_report_is_400_with_its_code(
    merchant: Merchant, content: bytes, code: str
) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = merchant.client.post(
        f"/subscriptions/{scene.subscription_id}/resources",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == code
    assert ledger_rows(merchant.server, merchant.org.id) == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"usageDate": "0001-01-01T00:00:00+02:00", "usageDetails": '
         b'[{"resourceId": "storage", "value": 1}]}', "INVALID_USAGE_DATE"),
        (b'{"usageDate": 20240725, "usageDetails": [{"resourceId": "storage", "value": 1}]}',
         "INVALID_USAGE_DATE"),
        (b'{"reportingType": null, "usageDetails": [{"resourceId": "storage", "value": 1}]}',
         "INVALID_REPORTING_TYPE"),
        (b'{"usageDetails": [{"resourceId": "storage", "value": {"amount": 1}}]}',
         "INVALID_VALUE"),
        (b'{"usageDetails": [{"resourceId": "storage", "value": 1e999999}]}', "INVALID_VALUE"),
        (b'{"usageDetails": [{"resourceId": "storage", "value": true}]}', "INVALID_VALUE"),
        (b'{"usageDetails": [{"resourceId": 42, "value": 1}]}', "INVALID_FIELD"),
        (b'{"usageDetails": [{"resourceId": "storage", "value": 1, "uomId": 7}]}',
         "INVALID_FIELD"),
        (b'{"usageDetails": ["storage"]}', "INVALID_REQUEST"),
        (b'{"usageDetails": {"resourceId": "storage", "value": 1}}', "MISSING_USAGE_DETAILS"),
        (b"", "INVALID_JSON"),
    ],
)  # fmt: skip
def test_odd_reports_are_400_never_500(merchant: Merchant, content: bytes, code: str) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    answer = merchant.client.post(
        f"/subscriptions/{scene.subscription_id}/resources", content=content
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == code
    assert ledger_rows(merchant.server, merchant.org.id) == 0


def test_an_unknown_subscription_is_404_whether_or_not_its_resources_were_met_before(
    merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report whose resources this process has met is checked without a lookup of its own;
    the ledger's refusal of an unknown subscription is then answered as the lookup would."""
    looked_up: list[str] = []
    resolve = usage._resolve

    def counted(context: Any, organization_id: str, subscription_id: str, details: Any) -> None:
        looked_up.append(subscription_id)
        resolve(context, organization_id, subscription_id, details)

    monkeypatch.setattr(usage, "_resolve", counted)
    scene = subscribe(merchant.org, {"storage": "sum"})
    unit = scene.meters["storage"]["unit"]
    body = {"usageDetails": [{"resourceId": "storage", "value": 1, "uomId": unit}]}
    # The first report meets the resource the long way.
    assert report(merchant, scene.subscription_id, body).status_code == 200
    assert looked_up == [scene.subscription_id]
    # Met now: an unknown subscription is refused by the ledger, without a lookup.
    kept = report(merchant, "sub_missing", body)
    assert looked_up == [scene.subscription_id], "a met resource was looked up again"
    # A unit that does not match sends the report the long way, where 404 comes first.
    mismatched = {"usageDetails": [{"resourceId": "storage", "value": 1, "uomId": "parsecs"}]}
    looked = report(merchant, "sub_missing", mismatched)
    assert looked_up == [scene.subscription_id, "sub_missing"]
    assert (kept.status_code, kept.json()) == (looked.status_code, looked.json())
    assert kept.status_code == 404
    assert kept.json()["message"] == "SUBSCRIPTION_NOT_FOUND"
    assert native_usage(merchant.org, scene.subscription_id) == {"storage": "1"}
    assert ledger_rows(merchant.server, merchant.org.id) == 1


def test_a_report_is_answered_below_the_framework_exactly_as_by_its_route(
    merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """facades/saaslogic/hot.py answers the usage report; a query string sends the call through
    the route instead (FastAPI ignores the unknown parameter). Both must answer alike."""
    from meterworks.facades.saaslogic import hot

    through_layer: list[str] = []
    report_of_route = usage.report

    async def counted(context: Any, organization_id: str, subscription_id: str, *rest: Any) -> Any:
        through_layer.append(subscription_id)
        return await report_of_route(context, organization_id, subscription_id, *rest)

    # The layer looks the function up on the module at each call; the route calls it directly.
    monkeypatch.setattr(hot, "report", counted)
    scene = subscribe(merchant.org, {"storage": "sum"})
    unit = scene.meters["storage"]["unit"]
    token = merchant.client.headers["authorization"]
    limit = merchant.server.settings.max_body_bytes

    def body(value: object = "1.5", resource: str = "storage", **extra: object) -> bytes:
        detail = {"resourceId": resource, "value": value, "uomId": unit}
        return json.dumps({"usageDetails": [detail], **extra}).encode()

    sub = scene.subscription_id
    keyed = {"authorization": token, "idempotency-key": "{}-job"}
    reports = [
        ("valid", sub, {"authorization": token}, body()),
        ("keyed", sub, keyed, body("2")),
        ("keyed replay", sub, keyed, body("2")),
        ("keyed conflict", sub, keyed, body("3")),
        ("no token", sub, {}, body()),
        ("bad token", sub, {"authorization": "Bearer not.a.jwt"}, body()),
        ("not json", sub, {"authorization": token}, b"{not json"),
        ("bad type", sub, {"authorization": token}, body(reportingType="Subtract")),
        ("no details", sub, {"authorization": token}, b'{"usageDetails": []}'),
        ("unknown resource", sub, {"authorization": token}, body(resource="nope")),
        ("unknown subscription", "sub_missing", {"authorization": token}, body()),
        ("NUL in path", "sub%00x", {"authorization": token}, body()),
        ("long key", sub, {"authorization": token, "idempotency-key": "k" * 300}, body()),
        ("too large", sub, {"authorization": token}, b" " * (limit + 1)),
    ]
    base = f"{merchant.server.base_url}{PREFIX}/subscriptions"
    calls = [Sent(name, f"{base}/{target}/resources", h, b) for name, target, h, b in reports]
    # Every call past the path and token checks whose body could be read.
    answers = answered_both_ways(
        calls,
        route_query="?via=route",
        header="www-authenticate",
        reached=through_layer,
        reaching=len(calls) - 4,
    )
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "valid": 200, "keyed": 200, "keyed replay": 200, "keyed conflict": 409, "no token": 401,
        "bad token": 401, "not json": 400, "bad type": 400, "no details": 400,
        "unknown resource": 400, "unknown subscription": 404, "NUL in path": 400,
        "long key": 400, "too large": 413,
    }  # fmt: skip
    # Each path: the valid report and the keyed one (its replay counted once).
    assert native_usage(merchant.org, sub) == {"storage": "7"}
    assert ledger_rows(merchant.server, merchant.org.id) == 4
