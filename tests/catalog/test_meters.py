"""Meters through the API: the six aggregations, validation, duplicate keys, tenancy."""

from __future__ import annotations

from typing import Any

import pytest

from meterworks.db import tables as t
from tests.api.builders import Api, error_of

AGGREGATIONS = ["sum", "count", "max", "latest", "prorated", "unique_count"]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_create_read_and_list_every_aggregation(api: Api, aggregation: str) -> None:
    body: dict[str, Any] = {
        "key": f"m_{aggregation}",
        "name": f"  {aggregation} meter ",
        "unit": "call",
        "aggregation": aggregation,
        "description": "what it measures",
    }
    if aggregation == "unique_count":
        body["property"] = "user_id"
    created = api.created("/v1/meters", body)
    assert created["id"].startswith("mtr_")
    assert created == {
        "id": created["id"],
        "key": f"m_{aggregation}",
        "name": f"{aggregation} meter",
        "unit": "call",
        "aggregation": aggregation,
        "property": "user_id" if aggregation == "unique_count" else None,
        "description": "what it measures",
        "created_at": "2025-01-20T00:00:00Z",
    }
    by_id = api.client.get(f"/v1/meters/{created['id']}")
    assert by_id.status_code == 200
    assert by_id.json() == created
    by_key = api.client.get(f"/v1/meters/m_{aggregation}")
    assert by_key.json() == created
    listed = api.client.get("/v1/meters").json()
    assert listed == {"data": [created]}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"key": "", "name": "n", "unit": "u", "aggregation": "sum"}, ["key"]),
        ({"key": "has space", "name": "n", "unit": "u", "aggregation": "sum"}, ["key"]),
        ({"key": "k" * 201, "name": "n", "unit": "u", "aggregation": "sum"}, ["key"]),
        (
            {
                "key": "mtr_01m824qqbx6dxy5nrdknew9j00",
                "name": "n",
                "unit": "u",
                "aggregation": "sum",
            },
            ["key"],
        ),
        ({"key": "k", "name": " ", "unit": "u", "aggregation": "sum"}, ["name"]),
        ({"key": "k", "name": "n" * 201, "unit": "u", "aggregation": "sum"}, ["name"]),
        ({"key": "k", "name": "n", "unit": "", "aggregation": "sum"}, ["unit"]),
        ({"key": "k", "name": "n", "unit": "u" * 65, "aggregation": "sum"}, ["unit"]),
        ({"key": "k", "name": "n", "unit": "u", "aggregation": "avg"}, ["aggregation"]),
        ({"key": "k", "name": "n", "unit": "u", "aggregation": "unique_count"}, ["property"]),
        (
            {
                "key": "k",
                "name": "n",
                "unit": "u",
                "aggregation": "unique_count",
                "property": "p" * 201,
            },
            ["property"],
        ),
        (
            {"key": "", "name": "", "unit": "", "aggregation": "x"},
            ["key", "name", "unit", "aggregation"],
        ),
    ],
)
def test_invalid_meters_are_refused_with_every_field_named(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    error = error_of(api.client.post("/v1/meters", json=body), 422)
    assert error["code"] == "invalid_input"
    assert [d["field"] for d in error["details"]] == fields
    assert api.rows(t.meters) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n", "unit": "u", "aggregation": "sum"},
        {"key": 5, "name": "n", "unit": "u", "aggregation": "sum"},
        {"key": "k", "name": "n", "unit": "u", "aggregation": None},
    ],
)
def test_missing_or_mistyped_fields_are_refused(api: Api, body: dict[str, Any]) -> None:
    error = error_of(api.client.post("/v1/meters", json=body), 422)
    assert error["code"] == "invalid_request"
    assert api.rows(t.meters) == 0


def test_a_duplicate_key_is_a_conflict(api: Api) -> None:
    first = api.meter("sum", key="api_calls")
    error = error_of(
        api.client.post(
            "/v1/meters",
            json={"key": "api_calls", "name": "again", "unit": "u", "aggregation": "count"},
        ),
        409,
    )
    assert error["code"] == "meter_key_taken"
    assert error["details"] == {"meter_id": first["id"]}
    assert api.rows(t.meters) == 1


def test_unknown_meter_is_404(api: Api) -> None:
    error = error_of(api.client.get("/v1/meters/mtr_nope"), 404)
    assert error["code"] == "meter_not_found"
