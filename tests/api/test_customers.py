"""Customers through the API: create, read, list, update, soft delete."""

from __future__ import annotations

from typing import Any

import pytest

from meterworks.db import tables as t
from tests.api.builders import NOW, Api, error_of


def test_create_read_update_and_list(api: Api) -> None:
    created = api.created(
        "/v1/customers",
        {
            "external_id": " acme-1 ",
            "name": " Acme ",
            "email": "billing@acme.example",
            "address": {"country": "FR", "city": "Lyon"},
            "tax_rate": "20",
            "metadata": {"tier": "gold"},
        },
    )
    assert created["id"].startswith("cus_")
    assert created == {
        "id": created["id"],
        "external_id": "acme-1",
        "name": "Acme",
        "email": "billing@acme.example",
        "address": {"country": "FR", "city": "Lyon"},
        "tax_rate": "20",
        "metadata": {"tier": "gold"},
        "created_at": "2025-01-20T00:00:00Z",
        "updated_at": "2025-01-20T00:00:00Z",
    }
    assert api.client.get(f"/v1/customers/{created['id']}").json() == created

    api.server.clock.set(NOW.replace(day=21))
    response = api.client.patch(
        f"/v1/customers/{created['id']}",
        json={"name": "Acme SA", "email": None, "tax_rate": 5.5, "metadata": {"region": "eu"}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Acme SA"
    assert updated["email"] is None
    assert updated["tax_rate"] == "5.5"
    assert updated["metadata"] == {"tier": "gold", "region": "eu"}
    assert updated["external_id"] == "acme-1"
    assert updated["updated_at"] == "2025-01-21T00:00:00Z"
    assert updated["created_at"] == "2025-01-20T00:00:00Z"

    second = api.customer("acme-2")
    listed = api.client.get("/v1/customers").json()
    assert listed["has_more"] is False
    assert [c["id"] for c in listed["data"]] == sorted([created["id"], second["id"]])
    page = api.client.get("/v1/customers", params={"limit": 1}).json()
    assert page["has_more"] is True
    rest = api.client.get(
        "/v1/customers", params={"limit": 1, "after": page["data"][0]["id"]}
    ).json()
    assert [c["id"] for c in page["data"] + rest["data"]] == [c["id"] for c in listed["data"]]
    assert rest["has_more"] is False


def test_a_duplicate_external_id_is_a_conflict(api: Api) -> None:
    first = api.customer("same")
    error = error_of(
        api.client.post("/v1/customers", json={"external_id": "same", "name": "B"}), 409
    )
    assert error["code"] == "external_id_taken"
    assert error["details"] == {"customer_id": first["id"]}
    other = api.customer("other")
    error = error_of(
        api.client.patch(f"/v1/customers/{other['id']}", json={"external_id": "same"}), 409
    )
    assert error["code"] == "external_id_taken"
    assert api.client.get(f"/v1/customers/{other['id']}").json()["external_id"] == "other"
    assert api.rows(t.customers) == 2


def test_soft_delete_hides_the_customer_and_frees_its_external_id(api: Api) -> None:
    customer = api.customer("gone")
    response = api.client.delete(f"/v1/customers/{customer['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert error_of(api.client.get(f"/v1/customers/{customer['id']}"), 404)["code"] == (
        "customer_not_found"
    )
    assert api.client.get("/v1/customers").json()["data"] == []
    error_of(api.client.delete(f"/v1/customers/{customer['id']}"), 404)
    error_of(api.client.patch(f"/v1/customers/{customer['id']}", json={"name": "x"}), 404)
    # The row stays (invoices point at it); the external id may be used again.
    assert api.rows(t.customers) == 1
    again = api.customer("gone")
    assert again["id"] != customer["id"]


def test_a_customer_with_a_running_subscription_cannot_be_deleted(api: Api) -> None:
    setup = api.metered("sum")
    error = error_of(api.client.delete(f"/v1/customers/{setup.customer['id']}"), 409)
    assert error["code"] == "customer_has_subscriptions"
    assert api.client.get(f"/v1/customers/{setup.customer['id']}").status_code == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"external_id": "", "name": "n"}, ["external_id"]),
        ({"external_id": "e" * 201, "name": "n"}, ["external_id"]),
        ({"external_id": "e", "name": " "}, ["name"]),
        ({"external_id": "e", "name": "n", "email": "no-at-sign"}, ["email"]),
        ({"external_id": "e", "name": "n", "tax_rate": "101"}, ["tax_rate"]),
        ({"external_id": "e", "name": "n", "tax_rate": "-1"}, ["tax_rate"]),
        ({"external_id": "e", "name": "n", "tax_rate": "abc"}, ["tax_rate"]),
        ({"external_id": "e", "name": "n", "tax_rate": "NaN"}, ["tax_rate"]),
    ],
)
def test_invalid_customers_are_refused(api: Api, body: dict[str, Any], fields: list[str]) -> None:
    error = error_of(api.client.post("/v1/customers", json=body), 422)
    assert error["code"] == "invalid_input"
    assert [d["field"] for d in error["details"]] == fields
    assert api.rows(t.customers) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n"},
        {"external_id": 7, "name": "n"},
        {"external_id": "e", "name": "n", "address": "Main street"},
        {"external_id": "e", "name": "n", "metadata": ["x"]},
        {"external_id": "e", "name": "n", "tax_rate": True},
    ],
)
def test_mistyped_customers_are_refused(api: Api, body: dict[str, Any]) -> None:
    error = error_of(api.client.post("/v1/customers", json=body), 422)
    assert error["code"] in {"invalid_request", "invalid_input"}
    assert api.rows(t.customers) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "gold"}, "plan"),
        ({"name": ""}, "name"),
        ({"external_id": None}, "external_id"),
        ({"address": "Main street"}, "address"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata": ["x"]}, "metadata"),
        ({"tax_rate": "200"}, "tax_rate"),
    ],
)
def test_invalid_updates_are_refused_and_change_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    customer = api.customer("stays")
    error = error_of(api.client.patch(f"/v1/customers/{customer['id']}", json=body), 422)
    assert [d["field"] for d in error["details"]] == [field]
    assert api.client.get(f"/v1/customers/{customer['id']}").json() == customer
