"""REST v2 usage entries: POST, PATCH and DELETE /salesbricks/api/v2/usage/ (vendor examples)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.facades.salesbricks.support import (
    Company,
    at,
    company,
    facade_client,
    ledger_rows,
    native_quantity,
)
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization

USAGE = "/api/v2/usage/"
SUBMITTED = {"message": "Usage entry submitted successfully.", "warnings": []}


def entry(sb: Company, transaction_id: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "subscription_id": sb.subscription_id,
        "brick_id": sb.counter_id,
        "value": value,
        "time": "2025-01-10T10:15:30Z",
        **extra,
    }


def counter(org: IsolatedOrganization, sb: Company) -> str:
    return native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z")


def test_the_docs_example_entry_is_submitted_once(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        # The vendor's example body, with this company's ids and a time inside the window.
        example = {
            "transaction_id": "12345",
            "subscription_id": sb.subscription_id,
            "brick_id": sb.counter_id,
            "value": 1,
            "properties": {"source": "api", "notes": "This is a test entry", "region": "US"},
            "time": "2025-01-10T10:15:30Z",
        }
        first = sb.client.post(USAGE, json=example)
        assert first.status_code == 201, first.text
        assert first.json() == SUBMITTED
        replay = sb.client.post(USAGE, json=example)
        assert (replay.status_code, replay.json()) == (201, SUBMITTED)
        assert ledger_rows(server, org.id) == 1
        assert counter(org, sb) == "1"
        # The same transaction_id for another entry is a conflict; nothing more is written.
        clash = sb.client.post(USAGE, json={**example, "value": 2})
        assert clash.status_code == 409, clash.text
        assert clash.json()["code"] == "transaction_conflict"
        assert ledger_rows(server, org.id) == 1
        # The path without its trailing slash works too.
        other = sb.client.post("/api/v2/usage", json={**example, "transaction_id": "12346"})
        assert other.status_code == 201
        assert counter(org, sb) == "2"


def test_count_is_a_deprecated_alias_of_value(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        body = entry(sb, "t-count", None)
        del body["value"]
        response = sb.client.post(USAGE, json={**body, "count": 4})
        assert response.status_code == 201, response.text
        assert response.json() == {
            "message": "Usage entry submitted successfully.",
            "warnings": [
                {
                    "field": "count",
                    "code": "deprecated_field",
                    "message": "`count` is deprecated; send `value` instead",
                }
            ],
        }
        assert counter(org, sb) == "4"


def test_a_gauge_entry_sets_the_level(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-11T00:00:00Z"))
    with company(server, org) as sb:
        for transaction_id, day, value in (("g1", "01", 3), ("g2", "07", 4)):
            body = {
                **entry(sb, transaction_id, value, brick_id="seats"),
                "time": f"2025-01-{day}T00:00:00Z",
            }
            assert sb.client.post(USAGE, json=body).status_code == 201
        # 3 × 6 days + 4 × 4 days, up to now
        assert native_quantity(org, sb.subscription_id, "seats", "2025-01-05T00:00:00Z") == "34"


def test_patch_amends_and_delete_voids_an_entry(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        assert sb.client.post(USAGE, json=entry(sb, "t-1", 10)).status_code == 201
        assert sb.client.post(USAGE, json=entry(sb, "t-2", 5)).status_code == 201
        patched = sb.client.patch(
            USAGE, json={"transaction_id": "t-1", "value": 12, "properties": {"fixed": True}}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json() == {"message": "Usage entry updated successfully.", "warnings": []}
        assert counter(org, sb) == "17"

        deleted = sb.client.request("DELETE", USAGE, json={"transaction_id": "t-1"})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"message": "Usage entry deleted successfully."}
        assert counter(org, sb) == "5"
        # Deleting again changes nothing (safe to retry); the vendor's body-less form works.
        again = sb.client.delete(USAGE, params={"transaction_id": "t-1"})
        assert again.status_code == 200
        assert counter(org, sb) == "5"
        rows = ledger_rows(server, org.id)
        assert rows == 4  # two entries, one amend, one void

        gone = sb.client.patch(USAGE, json={"transaction_id": "t-1", "value": 1})
        assert gone.status_code == 404
        assert gone.json()["code"] == "transaction_deleted"
        for method in ("PATCH", "DELETE"):
            unknown = sb.client.request(
                method, USAGE, json={"transaction_id": "never-sent", "value": 1}
            )
            assert unknown.status_code == 404, unknown.text
            assert unknown.json()["code"] == "transaction_not_found"
        negative = sb.client.patch(USAGE, json={"transaction_id": "t-2", "value": -1})
        assert negative.status_code == 400
        assert negative.json()["code"] == "negative_value"
        nothing = sb.client.patch(USAGE, json={"transaction_id": "t-2"})
        assert nothing.status_code == 400
        assert ledger_rows(server, org.id) == rows
        assert counter(org, sb) == "5"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"subscription_id": "sub_unknown"}, 400, "subscription_not_found"),
        ({"brick_id": "mtr_unknown"}, 400, "brick_not_found"),
        ({"brick_id": "peak_storage"}, 400, "wrong_brick_kind"),
        ({"brick_id": "sms"}, 400, "brick_not_in_plan"),
        ({"value": -3}, 400, "negative_value"),
        ({"value": 1.5}, 400, "invalid"),
        ({"value": True}, 400, "invalid"),
        ({"time": "2024-12-31T00:00:00Z"}, 400, "outside_subscription_window"),
        ({"time": "2025-01-20T01:00:00Z"}, 400, "timestamp_in_future"),
        ({"time": "soon"}, 400, "invalid"),
        ({"transaction_id": "x" * 256}, 400, "max_length"),
        ({"transaction_id": None}, 400, "required"),
        ({"properties": [1, 2]}, 400, "invalid"),
    ],
)
def test_a_refused_entry_writes_nothing(
    server: RunningServer,
    org: IsolatedOrganization,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        response = sb.client.post(USAGE, json={**entry(sb, "t-bad", 1), **change})
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert isinstance(response.json()["detail"], str)
        assert ledger_rows(server, org.id) == 0


def test_missing_fields_are_listed_together(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    with company(server, org) as sb:
        response = sb.client.post(USAGE, json={"value": 1})
        assert response.status_code == 400
        fields = [e["field"] for e in response.json()["errors"]]
        assert fields == ["transaction_id", "subscription_id", "brick_id", "time"]
        for broken in (b"[1, 2]", b"{nope"):
            response = sb.client.post(USAGE, content=broken)
            assert response.status_code == 400, response.text
        assert ledger_rows(server, org.id) == 0


def test_a_long_transaction_id_is_kept_apart_from_native_keys(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        native = org.client.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "idempotency_key": "same-id",
                        "subscription_id": sb.subscription_id,
                        "meter": "api_calls",
                        "timestamp": "2025-01-10T00:00:00Z",
                        "quantity": 100,
                    }
                ]
            },
        )
        assert native.status_code == 200, native.text
        assert sb.client.post(USAGE, json=entry(sb, "same-id", 1)).status_code == 201
        longest = "L" * 255
        assert sb.client.post(USAGE, json=entry(sb, longest, 2)).status_code == 201
        assert sb.client.post(USAGE, json=entry(sb, longest, 2)).status_code == 201
        assert sb.client.patch(USAGE, json={"transaction_id": longest, "value": 3}).status_code == (
            200
        )
        assert counter(org, sb) == "104"
        assert ledger_rows(server, org.id) == 4


def test_v2_needs_a_valid_key(server: RunningServer, org: IsolatedOrganization) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        for token in ("", "nope", org.token + "x"):
            with facade_client(server, token) as client:
                for method in ("POST", "PATCH", "DELETE"):
                    response = client.request(method, USAGE, json=entry(sb, "t-auth", 1))
                    assert response.status_code == 401, response.text
                    assert response.json()["code"] in ("missing_api_key", "unauthorized")
                reads = client.get(
                    f"/api/v2/subscriptions/{sb.subscription_id}/bricks/{sb.counter_id}/usage"
                )
                assert reads.status_code == 401
        no_key = httpx.post(f"{server.base_url}/salesbricks{USAGE}", json=entry(sb, "t", 1))
        assert no_key.status_code == 401
        assert ledger_rows(server, org.id) == 0
