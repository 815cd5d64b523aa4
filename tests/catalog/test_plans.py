"""Plans through the API: charges of every pricing model, and errors with field paths."""

from __future__ import annotations

from typing import Any

import pytest

from meterworks.db import tables as t
from tests.api.builders import Api, error_of


def test_create_read_and_list_a_plan_with_every_model(api: Api) -> None:
    calls = api.meter("sum", key="calls")
    seats = api.meter("prorated", key="seats")
    storage = api.meter("max", key="storage")
    users = api.meter("unique_count", key="users")
    body = {
        "name": " Growth ",
        "currency": "usd",
        "interval": "quarter",
        "charges": [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {
                "type": "usage",
                "meter": "calls",
                "model": "graduated",
                "tiers": [
                    {"up_to": 1000, "unit_price": "0"},
                    {"up_to": "10000", "unit_price": "0.002", "flat_fee": "5"},
                    {"up_to": None, "unit_price": "0.001"},
                ],
                "included_quantity": "100",
            },
            {"type": "usage", "meter": seats["id"], "model": "per_unit", "unit_price": "0.50"},
            {
                "type": "usage",
                "meter": "storage",
                "model": "package",
                "package_size": "100",
                "unit_price": "5.00",
                "name": "Storage packs",
            },
            {
                "type": "usage",
                "meter": "users",
                "model": "volume",
                "tiers": [{"up_to": "10", "unit_price": "1"}, {"up_to": None, "unit_price": "0.5"}],
            },
        ],
    }
    plan = api.created("/v1/plans", body)
    assert plan["id"].startswith("pln_")
    assert plan["name"] == "Growth"
    assert plan["currency"] == "USD"
    assert plan["interval"] == "quarter"
    assert plan["charges"] == [
        {"type": "fixed", "name": "Platform fee", "amount": "49"},
        {
            "type": "usage",
            "meter": calls["id"],
            "meter_key": "calls",
            "name": "sum meter",
            "model": "graduated",
            "unit_price": None,
            "tiers": [
                {"up_to": "1000", "unit_price": "0", "flat_fee": "0"},
                {"up_to": "10000", "unit_price": "0.002", "flat_fee": "5"},
                {"up_to": None, "unit_price": "0.001", "flat_fee": "0"},
            ],
            "package_size": None,
            "included_quantity": "100",
        },
        {
            "type": "usage",
            "meter": seats["id"],
            "meter_key": "seats",
            "name": "prorated meter",
            "model": "per_unit",
            "unit_price": "0.5",
            "tiers": [],
            "package_size": None,
            "included_quantity": "0",
        },
        {
            "type": "usage",
            "meter": storage["id"],
            "meter_key": "storage",
            "name": "Storage packs",
            "model": "package",
            "unit_price": "5",
            "tiers": [],
            "package_size": "100",
            "included_quantity": "0",
        },
        {
            "type": "usage",
            "meter": users["id"],
            "meter_key": "users",
            "name": "unique_count meter",
            "model": "volume",
            "unit_price": None,
            "tiers": [
                {"up_to": "10", "unit_price": "1", "flat_fee": "0"},
                {"up_to": None, "unit_price": "0.5", "flat_fee": "0"},
            ],
            "package_size": None,
            "included_quantity": "0",
        },
    ]
    assert api.client.get(f"/v1/plans/{plan['id']}").json() == plan
    assert api.client.get("/v1/plans").json() == {"data": [plan]}
    assert api.rows(t.plan_meters) == 4


def _plan(charges: Any, **fields: Any) -> dict[str, Any]:
    return {"name": "P", "currency": "EUR", "interval": "month", "charges": charges, **fields}


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (_plan([], name=" "), ["name"]),
        (_plan([], currency="XYZ"), ["currency"]),
        (_plan([], interval="week"), ["interval"]),
        (_plan([{"type": "other"}]), ["charges[0].type"]),
        (_plan([{"type": "fixed", "amount": "1"}]), ["charges[0].name"]),
        (_plan([{"type": "fixed", "name": "f", "amount": "-1"}]), ["charges[0].amount"]),
        (_plan([{"type": "fixed", "name": "f", "amount": "NaN"}]), ["charges[0].amount"]),
        (_plan([{"type": "fixed", "name": "f", "amount": 1.5}]), []),  # JSON numbers are exact
        (_plan([{"type": "usage", "meter": "nope", "model": "per_unit"}]), ["charges[0].meter"]),
        (
            _plan([{"type": "usage", "meter": "calls", "model": "flat"}]),
            ["charges[0].model"],
        ),
        (
            _plan([{"type": "usage", "meter": "calls", "model": "per_unit"}]),
            ["charges[0].unit_price"],
        ),
        (
            _plan([{"type": "usage", "meter": "calls", "model": "package", "unit_price": "1"}]),
            ["charges[0].package_size"],
        ),
        (
            _plan(
                [
                    {
                        "type": "usage",
                        "meter": "calls",
                        "model": "package",
                        "unit_price": "1",
                        "package_size": "0",
                    }
                ]
            ),
            ["charges[0].package_size"],
        ),
        (
            _plan([{"type": "usage", "meter": "calls", "model": "graduated"}]),
            ["charges[0].tiers"],
        ),
        (
            _plan(
                [
                    {
                        "type": "usage",
                        "meter": "calls",
                        "model": "volume",
                        "tiers": [
                            {"up_to": "10", "unit_price": "1"},
                            {"up_to": "5", "unit_price": "1"},
                            {"up_to": None, "unit_price": "x"},
                        ],
                    }
                ]
            ),
            ["charges[0].tiers[1].up_to", "charges[0].tiers[2].unit_price"],
        ),
        (
            _plan(
                [
                    {
                        "type": "usage",
                        "meter": "calls",
                        "model": "graduated",
                        "tiers": [
                            {"up_to": None, "unit_price": "1"},
                            {"up_to": "5", "unit_price": "1"},
                        ],
                    }
                ]
            ),
            ["charges[0].tiers[0].up_to", "charges[0].tiers[1].up_to"],
        ),
        (
            _plan(
                [
                    {"type": "usage", "meter": "calls", "model": "per_unit", "unit_price": "1"},
                    {"type": "usage", "meter": "calls", "model": "per_unit", "unit_price": "2"},
                ]
            ),
            ["charges[1].meter"],
        ),
        (
            _plan(
                [
                    {
                        "type": "usage",
                        "meter": "calls",
                        "model": "per_unit",
                        "unit_price": "1",
                        "included_quantity": "-3",
                    }
                ]
            ),
            ["charges[0].included_quantity"],
        ),
    ],
)
def test_invalid_plans_name_each_problem_by_its_path(
    api: Api, body: dict[str, Any], problems: list[str]
) -> None:
    api.meter("sum", key="calls")
    response = api.client.post("/v1/plans", json=body)
    if not problems:
        assert response.status_code == 201, response.text
        return
    error = error_of(response, 422)
    assert error["code"] == "invalid_input"
    assert [d["field"] for d in error["details"]] == problems
    assert api.rows(t.plans) == 0
    assert api.rows(t.plan_meters) == 0


def test_a_plan_needs_its_shape(api: Api) -> None:
    error = error_of(api.client.post("/v1/plans", json={"name": "P"}), 422)
    assert error["code"] == "invalid_request"
    assert {d["field"] for d in error["details"]} == {"currency", "interval", "charges"}
    error = error_of(api.client.post("/v1/plans", json=_plan(["x"])), 422)
    assert error["code"] == "invalid_request"
    assert [d["field"] for d in error["details"]] == ["charges.0"]
    assert api.rows(t.plans) == 0


def test_long_plan_names_and_product_ids_are_refused(api: Api) -> None:
    body = _plan([], name="n" * 201, product_id="p" * 201)
    error = error_of(api.client.post("/v1/plans", json=body), 422)
    assert [d["field"] for d in error["details"]] == ["name", "product_id"]
    assert api.rows(t.plans) == 0


def test_unknown_plan_is_404(api: Api) -> None:
    assert error_of(api.client.get("/v1/plans/pln_nope"), 404)["code"] == "plan_not_found"
