"""The partner integration and its accounts (customers) through the Gradient facade."""

from __future__ import annotations

from typing import Any

import pytest

from meterworks.tenancy.service import get_organization
from tests.facades.gradient.support import Vendor, create_account


def accounts(vendor: Vendor) -> list[dict[str, Any]]:
    answer = vendor.client.get("/organization/accounts")
    assert answer.status_code == 200
    listed: list[dict[str, Any]] = answer.json()
    return listed


def test_get_organization_describes_the_integration(vendor: Vendor) -> None:
    answer = vendor.client.get("/organization")

    with vendor.server.db.read() as conn:
        organization = get_organization(conn, vendor.org.id)
    assert answer.status_code == 200
    assert answer.json() == {
        "organizationId": vendor.partner_id,
        "name": "Synthesize partner",
        "vendorId": vendor.org.id,
        "vendorName": organization.name,
        "integrationId": vendor.partner_id,
        "status": "active",
        "lastSyncedAt": None,
    }


@pytest.mark.parametrize("status", ["active", "inactive", "pending", "disabled", "error"])
def test_set_the_integration_status(vendor: Vendor, status: str) -> None:
    answer = vendor.client.patch(f"/organization/status/{status}")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["message"]) == (200, "Updated integration status")
    assert body["data"]["status"] == status
    assert vendor.client.get("/organization").json()["status"] == status


def test_an_unknown_status_is_400_and_changes_nothing(vendor: Vendor) -> None:
    vendor.client.patch("/organization/status/pending")

    answer = vendor.client.patch("/organization/status/suspended")

    assert answer.status_code == 400
    assert answer.json() == {
        "statusCode": 400,
        "message": "Invalid status: suspended; expected one of active, inactive, pending, "
        "disabled, error",
    }
    assert vendor.client.get("/organization").json()["status"] == "pending"


def test_create_and_list_accounts(vendor: Vendor) -> None:
    answer = vendor.client.post(
        "/organization/accounts",
        json=[
            {"id": "1", "name": "Acme", "description": "Anvils"},
            {"id": "acct-2", "name": "Globex"},
        ],
    )

    assert answer.status_code == 201
    assert answer.json() == {
        "status": 201,
        "message": "Created accounts",
        "created": 2,
        "updated": 0,
        "data": [
            {"id": "1", "name": "Acme", "description": "Anvils"},
            {"id": "acct-2", "name": "Globex", "description": None},
        ],
    }
    listed = sorted(accounts(vendor), key=lambda a: a["id"])
    assert listed == [
        {"id": "1", "name": "Acme", "description": "Anvils"},
        {"id": "acct-2", "name": "Globex", "description": None},
    ]
    # The deprecated client list answers the same accounts.
    clients = vendor.client.get("/organization/clients")
    assert clients.status_code == 200
    assert sorted(clients.json(), key=lambda a: a["id"]) == listed
    # Accounts are customers, addressed natively by external id.
    native = vendor.org.client.get("/v1/customers").json()["data"]
    assert sorted(c["external_id"] for c in native) == ["1", "acct-2"]


def test_an_existing_account_id_is_updated_not_duplicated(vendor: Vendor) -> None:
    create_account(vendor, "acct-1", "Acme")
    vendor.client.patch("/organization/accounts/acct-1", json={"description": "kept"})

    answer = vendor.client.post(
        "/organization/accounts",
        json=[{"id": "acct-1", "name": "Acme Corp"}, {"id": "acct-2", "name": "Globex"}],
    )

    assert answer.status_code == 201
    assert (answer.json()["created"], answer.json()["updated"]) == (1, 1)
    assert sorted(accounts(vendor), key=lambda a: a["id"]) == [
        {"id": "acct-1", "name": "Acme Corp", "description": "kept"},
        {"id": "acct-2", "name": "Globex", "description": None},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "acct-9", "name": "Not an array"},
        [{"id": "acct-9", "name": "Fine"}, {"id": "acct-10"}],
        [{"id": "acct-9", "name": "Fine"}, {"name": "No id"}],
        [{"id": "acct-9", "name": "Fine"}, {"id": 10, "name": "Numeric id"}],
        [{"id": "acct-9", "name": "Fine"}, {"id": "acct-9", "name": "Twice"}],
        [{"id": "acct-9", "name": "Fine"}, {"id": "acct-10", "name": ""}],
        [{"id": "acct-9", "name": "Fine"}, {"id": "acct-10", "name": "x", "description": 3}],
        [{"id": "acct-9", "name": "Fine"}, "acct-10"],
    ],
)
def test_an_invalid_account_refuses_the_whole_array(vendor: Vendor, body: Any) -> None:
    answer = vendor.client.post("/organization/accounts", json=body)

    assert answer.status_code == 400
    assert set(answer.json()) == {"statusCode", "message"}
    assert accounts(vendor) == []


def test_update_an_account(vendor: Vendor) -> None:
    create_account(vendor, "acct-1", "Acme")

    answer = vendor.client.patch(
        "/organization/accounts/acct-1", json={"name": "Acme Corp", "description": "Anvils"}
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "status": 200,
        "message": "Updated account",
        "data": {"id": "acct-1", "name": "Acme Corp", "description": "Anvils"},
    }
    cleared = vendor.client.patch("/organization/accounts/acct-1", json={"description": None})
    assert cleared.json()["data"] == {"id": "acct-1", "name": "Acme Corp", "description": None}


def test_updating_an_unknown_or_renamed_account_is_refused(vendor: Vendor) -> None:
    create_account(vendor, "acct-1", "Acme")

    unknown = vendor.client.patch("/organization/accounts/nobody", json={"name": "X"})
    renamed = vendor.client.patch("/organization/accounts/acct-1", json={"id": "acct-2"})
    emptied = vendor.client.patch("/organization/accounts/acct-1", json={"name": ""})
    malformed = vendor.client.patch("/organization/accounts/acct%00-1", json={"name": "X"})

    assert unknown.json() == {"statusCode": 404, "message": "No account found with id: nobody"}
    assert (renamed.status_code, emptied.status_code, malformed.status_code) == (400, 400, 400)
    assert accounts(vendor) == [{"id": "acct-1", "name": "Acme", "description": None}]
