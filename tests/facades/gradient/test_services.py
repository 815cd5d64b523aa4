"""Vendor details and services (meters) through the Gradient facade, on both dialects."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from meterworks.tenancy.service import get_organization
from tests.facades.gradient.support import PREFIX, Vendor, create_service
from tests.support.server import RunningServer


def test_create_service_makes_a_latest_meter(vendor: Vendor) -> None:
    answer = vendor.client.post(
        "/service",
        json={
            "name": "Managed Endpoints",
            "description": "Devices under management",
            "category": "Security",
            "subcategory": "EDR",
            "vendorSku": "EDR-01",
        },
    )

    assert answer.status_code == 201
    body = answer.json()
    assert (body["status"], body["message"]) == (201, "Created service")
    data = body["data"]
    assert re.fullmatch(r"gradient-managed-endpoints-[0-9a-z]{8}", data["key"])
    created = vendor.server.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data == {
        "id": data["id"],
        "name": "Managed Endpoints",
        "description": "Devices under management",
        "category": "Security",
        "subcategory": "EDR",
        "vendorSku": "EDR-01",
        "key": data["key"],
        "unit": "unit",
        "aggregation": "latest",
        "createdAt": created,
        "updatedAt": created,
    }
    native = vendor.org.client.get(f"/v1/meters/{data['id']}").json()
    assert (native["key"], native["aggregation"], native["unit"]) == (data["key"], "latest", "unit")
    assert native["description"] == "Devices under management"


def test_a_service_may_choose_another_level_aggregation_and_unit(vendor: Vendor) -> None:
    data = create_service(vendor, "Seats", aggregation="prorated", unit="seat")

    assert (data["aggregation"], data["unit"]) == ("prorated", "seat")


def test_invalid_services_are_400_and_create_nothing(vendor: Vendor) -> None:
    for body in (
        {},
        {"name": ""},
        {"name": 5},
        {"name": "Calls", "aggregation": "sum"},
        {"name": "Calls", "aggregation": "median"},
        {"name": "Calls", "description": 12},
        {"name": "x" * 201},
        ["name"],
    ):
        answer = vendor.client.post("/service", json=body)
        assert answer.status_code == 400, body
        assert set(answer.json()) == {"statusCode", "message"}
        assert answer.json()["statusCode"] == 400

    assert vendor.org.client.get("/v1/meters").json()["data"] == []


def test_vendor_details_list_the_services_as_skus(vendor: Vendor, server: RunningServer) -> None:
    seats = create_service(vendor, "Seats", category="Licensing")
    native = vendor.org.client.post(
        "/v1/meters", json={"key": "calls", "name": "Calls", "unit": "call", "aggregation": "sum"}
    ).json()

    answer = vendor.client.get("")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["message"]) == (200, "Found vendor")
    with server.db.read() as conn:
        organization = get_organization(conn, vendor.org.id)
    assert (body["data"]["id"], body["data"]["name"]) == (organization.id, organization.name)
    assert [sku["id"] for sku in body["data"]["skus"]] == [seats["id"], native["id"]]
    assert body["data"]["skus"][0] == seats
    assert body["data"]["skus"][1]["aggregation"] == "sum"
    # The bare base URL (no trailing slash) reaches the same answer.
    bare = httpx.get(
        server.base_url + PREFIX,
        headers={"Gradient-Token": vendor.token},
        follow_redirects=True,
        timeout=30,
    )
    assert bare.status_code == 200
    assert bare.json() == body


def test_get_a_service_by_id_or_key(vendor: Vendor) -> None:
    seats = create_service(vendor, "Seats")

    by_id = vendor.client.get(f"/service/{seats['id']}")
    by_key = vendor.client.get(f"/service/{seats['key']}")

    assert by_id.status_code == 200
    assert by_id.json() == {"status": 200, "message": "Found service", "data": seats}
    assert by_key.json() == by_id.json()


def test_unknown_and_malformed_service_ids(vendor: Vendor) -> None:
    unknown = vendor.client.get("/service/mtr_nothing")
    malformed = vendor.client.get("/service/has spaces!")

    assert (unknown.status_code, unknown.json()) == (
        404,
        {"statusCode": 404, "message": "No service found with id: mtr_nothing"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["statusCode"] == 400


def test_update_a_service(vendor: Vendor) -> None:
    seats = create_service(vendor, "Seats", category="Licensing", description="old")
    vendor.server.clock.advance(timedelta(seconds=1))

    answer = vendor.client.patch(
        f"/service/{seats['id']}",
        json={"name": "Named seats", "subcategory": "Per user", "description": None},
    )

    assert answer.status_code == 200
    data = answer.json()["data"]
    assert answer.json()["message"] == "Updated service"
    assert (data["name"], data["category"], data["subcategory"]) == (
        "Named seats",
        "Licensing",
        "Per user",
    )
    assert data["description"] is None
    assert data["updatedAt"] != seats["updatedAt"]
    assert vendor.client.get(f"/service/{seats['id']}").json()["data"] == data


def test_a_services_aggregation_and_unit_cannot_change(vendor: Vendor) -> None:
    seats = create_service(vendor, "Seats")

    for body in ({"aggregation": "max"}, {"unit": "seat"}, {"name": ""}, {"name": None}, []):
        answer = vendor.client.patch(f"/service/{seats['id']}", json=body)
        assert answer.status_code == 400, body

    assert vendor.client.get(f"/service/{seats['id']}").json()["data"] == seats


def test_unknown_paths_answer_in_the_vendor_shape(vendor: Vendor) -> None:
    answer = vendor.client.get("/nothing/here")

    assert answer.status_code == 404
    assert answer.json() == {
        "statusCode": 404,
        "message": f"Cannot GET {PREFIX}/nothing/here",
    }


def test_the_facade_documents_itself(server: RunningServer) -> None:
    answer = httpx.get(f"{server.base_url}{PREFIX}/openapi.json", timeout=30)

    assert answer.status_code == 200
    paths = answer.json()["paths"]
    assert {"/", "/service", "/service/{serviceId}", "/service/{serviceId}/count"} <= set(paths)
    assert {"/organization", "/organization/accounts", "/organization/accounts/{accountId}"} <= set(
        paths
    )
    count = paths["/service/{serviceId}/count"]["post"]
    assert count["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "unitCount"
    ]
    docs = httpx.get(f"{server.base_url}{PREFIX}/docs", timeout=30)
    assert docs.status_code == 200
    assert f"{PREFIX}/openapi.json" in docs.text
