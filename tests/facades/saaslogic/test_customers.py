"""Customers in Saaslogic's fields, kept as meterworks customers."""

from __future__ import annotations

from typing import Any

from tests.facades.saaslogic.support import Merchant, create_plan, created

CONTACTS = [
    {"firstName": "Ada", "lastName": "Byron", "email": "billing@acme.test", "isPrimary": False},
    {"firstName": "Grace", "lastName": "Hopper", "email": "grace@acme.test", "isPrimary": True},
]
ADDRESSES = [
    {"addressLine1": "1 Main St", "city": "Springfield", "country": "US", "isPrimary": True},
]


def create(merchant: Merchant, **fields: Any) -> dict[str, Any]:
    return created(merchant.client.post("/customers", json=fields))


def test_create_then_read_a_customer(merchant: Merchant) -> None:
    body = create(
        merchant,
        customerName="Acme Corp",
        customerType="Business",
        customerNumber="ACME-001",
        contacts=CONTACTS,
        addresses=ADDRESSES,
        website="https://acme.test",
    )
    customer_id = body["customerId"]
    assert body == {
        "customerId": customer_id,
        "customerName": "Acme Corp",
        "customerType": "Business",
        "isActive": True,
        "externalId": "ACME-001",
        "customerNumber": "ACME-001",
        "email": "grace@acme.test",
        "contacts": CONTACTS,
        "addresses": ADDRESSES,
        "createdDate": "2024-07-26T00:00:00",
        "modifiedDate": "2024-07-26T00:00:00",
        "website": "https://acme.test",
    }
    read = merchant.client.get(f"/customers/{customer_id}")
    assert read.status_code == 200
    assert read.json() == body
    native = merchant.org.client.get(f"/v1/customers/{customer_id}").json()
    assert (native["name"], native["external_id"], native["email"]) == (
        "Acme Corp",
        "ACME-001",
        "grace@acme.test",
    )
    assert native["address"] == ADDRESSES[0]


def test_an_external_id_is_generated_when_none_is_given(merchant: Merchant) -> None:
    body = create(merchant, customerName="Solo")
    assert body["externalId"].startswith("ext_")
    assert body["customerNumber"] == body["externalId"]
    assert (body["contacts"], body["addresses"], body["email"]) == ([], [], None)
    assert body["customerType"] is None


def test_list_customers_in_id_order_with_paging(merchant: Merchant) -> None:
    ids = [create(merchant, customerName=f"C{i}")["customerId"] for i in range(3)]
    everything = merchant.client.get("/customers")
    assert everything.status_code == 200
    assert [c["customerId"] for c in everything.json()] == sorted(ids)
    page = merchant.client.get("/customers", params={"limit": 1, "after": sorted(ids)[0]})
    assert [c["customerId"] for c in page.json()] == [sorted(ids)[1]]


def test_put_changes_only_the_fields_given(merchant: Merchant) -> None:
    body = create(merchant, customerName="Acme", customerType="Business", contacts=CONTACTS)
    customer_id = body["customerId"]
    changed = merchant.client.put(
        f"/customers/{customer_id}",
        json={"customerName": "Acme Inc", "isActive": False,
              "contacts": [{"email": "new@acme.test"}]},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["customerName"] == "Acme Inc"
    assert after["isActive"] is False
    assert after["customerType"] == "Business"
    assert after["contacts"] == [{"email": "new@acme.test"}]
    assert after["email"] == "new@acme.test"
    assert after["externalId"] == body["externalId"]
    # A read-modify-write round trip changes nothing.
    again = merchant.client.put(f"/customers/{customer_id}", json=after)
    assert again.status_code == 200
    assert again.json() == after


def test_delete_a_customer(merchant: Merchant) -> None:
    customer_id = create(merchant, customerName="Gone")["customerId"]
    deleted = merchant.client.delete(f"/customers/{customer_id}")
    assert deleted.status_code == 200
    assert deleted.content == b""
    missing = merchant.client.get(f"/customers/{customer_id}")
    assert missing.status_code == 404
    assert missing.json()["message"] == "CUSTOMER_NOT_FOUND"
    again = merchant.client.delete(f"/customers/{customer_id}")
    assert again.status_code == 404


def test_a_customer_with_a_running_subscription_is_not_deleted(merchant: Merchant) -> None:
    customer_id = create(merchant, customerName="Busy")["customerId"]
    plan = create_plan(merchant.org, [{"type": "fixed", "name": "Base", "amount": "10"}])
    created(
        merchant.org.client.post(
            "/v1/subscriptions",
            json={"customer_id": customer_id, "plan_id": plan["id"],
                  "starts_at": "2024-07-01T00:00:00Z"},
        )
    )  # fmt: skip
    answer = merchant.client.delete(f"/customers/{customer_id}")
    assert answer.status_code == 409
    assert answer.json()["message"] == "CUSTOMER_HAS_SUBSCRIPTIONS"
    assert merchant.client.get(f"/customers/{customer_id}").status_code == 200


def test_invalid_customers_are_refused(merchant: Merchant) -> None:
    nameless = merchant.client.post("/customers", json={"customerType": "Business"})
    assert nameless.status_code == 400
    assert nameless.json()["message"] == "INVALID_REQUEST"
    assert [(e["field"], e["code"]) for e in nameless.json()["errors"]] == [
        ("customerName", "MISSING_FIELD")
    ]
    bad_email = merchant.client.post(
        "/customers", json={"customerName": "X", "contacts": [{"email": "not-an-email"}]}
    )
    assert bad_email.status_code == 400
    assert bad_email.json()["message"] == "INVALID_REQUEST"
    bad_contacts = merchant.client.post(
        "/customers", json={"customerName": "X", "contacts": "nobody"}
    )
    assert bad_contacts.status_code == 400
    assert bad_contacts.json()["message"] == "INVALID_REQUEST"
    create(merchant, customerName="First", externalId="dup")
    taken = merchant.client.post("/customers", json={"customerName": "Second", "externalId": "dup"})
    assert taken.status_code == 409
    assert taken.json()["message"] == "EXTERNAL_ID_TAKEN"
    listed = merchant.client.get("/customers").json()
    assert [c["customerName"] for c in listed] == ["First"]


def test_another_organizations_customer_is_not_found(merchant: Merchant) -> None:
    native = created(
        merchant.org.client.post("/v1/customers", json={"external_id": "n1", "name": "Native"})
    )
    mine = merchant.client.get(f"/customers/{native['id']}")
    assert mine.status_code == 200
    assert mine.json()["contacts"] == []
    assert merchant.client.get("/customers/cus_someone_else").status_code == 404
