"""Authentication and isolation: no key, a wrong key, another organization's objects."""

from __future__ import annotations

import httpx
import pytest

from meterworks.db import tables as t
from tests.api.builders import START, Api, error_of, event
from tests.support.server import RunningServer
from tests.support.tenancy import new_organization

PROTECTED = [
    ("GET", "/v1/meters"),
    ("POST", "/v1/meters"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/customers"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/subscriptions/sub_x"),
    ("GET", "/v1/subscriptions/sub_x/usage"),
    ("POST", "/v1/events"),
    ("PATCH", "/v1/events/k"),
    ("DELETE", "/v1/events/k"),
    ("POST", "/v1/partners"),
]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
        ({"Authorization": "Bearer"}, "missing_api_key"),
        ({"Authorization": "Bearer nodot"}, "unauthorized"),
        ({"Authorization": "Bearer key_unknown.secret"}, "unauthorized"),
    ],
)
def test_calls_without_a_valid_key_are_401(
    server: RunningServer, headers: dict[str, str], code: str
) -> None:
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        for method, path in PROTECTED:
            response = client.request(method, path, json={})
            error = error_of(response, 401)
            assert error["code"] == code, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_wrong_secret_for_a_real_key_is_401_and_writes_nothing(api: Api) -> None:
    key_id = api.org.token.split(".")[0]
    headers = {"Authorization": f"Bearer {key_id}.not-the-secret"}
    with httpx.Client(base_url=api.server.base_url, headers=headers, timeout=30) as client:
        response = client.post(
            "/v1/meters", json={"key": "k", "name": "n", "unit": "u", "aggregation": "sum"}
        )
    assert error_of(response, 401)["code"] == "unauthorized"
    assert api.rows(t.meters) == 0


def test_another_organizations_objects_answer_404(api: Api, server: RunningServer) -> None:
    mine = api.metered("sum")
    api.record([event("mine-1", subscription_id=mine.id, meter=mine.key("sum"), timestamp=START)])
    with new_organization(server, "intruder") as other:
        intruder = Api(server, other)
        checks = [
            intruder.client.get(f"/v1/meters/{mine.meters['sum']['id']}"),
            intruder.client.get(f"/v1/meters/{mine.key('sum')}"),
            intruder.client.get(f"/v1/plans/{mine.plan['id']}"),
            intruder.client.get(f"/v1/customers/{mine.customer['id']}"),
            intruder.client.patch(f"/v1/customers/{mine.customer['id']}", json={"name": "x"}),
            intruder.client.delete(f"/v1/customers/{mine.customer['id']}"),
            intruder.client.get(f"/v1/subscriptions/{mine.id}"),
            intruder.client.get(f"/v1/subscriptions/{mine.id}/usage"),
            intruder.client.post(f"/v1/subscriptions/{mine.id}/cancel"),
            intruder.client.patch("/v1/events/mine-1", json={"quantity": 5}),
            intruder.client.delete("/v1/events/mine-1"),
            intruder.client.post(
                "/v1/subscriptions",
                json={
                    "customer_id": mine.customer["id"],
                    "plan_id": mine.plan["id"],
                    "starts_at": "2025-01-01T00:00:00Z",
                },
            ),
        ]
        for response in checks:
            error_of(response, 404)
        # Lists show nothing of mine.
        assert intruder.client.get("/v1/meters").json() == {"data": []}
        assert intruder.client.get("/v1/plans").json() == {"data": []}
        assert intruder.client.get("/v1/customers").json() == {"data": [], "has_more": False}
        # Events naming my subscription or my customer are refused as unknown, not written.
        refused = intruder.send(
            [
                event(subscription_id=mine.id, meter=mine.key("sum")),
                event(meter=mine.key("sum"), customer_id=mine.customer["id"]),
                event(
                    meter=mine.meters["sum"]["id"],
                    external_customer_id=mine.customer["external_id"],
                ),
            ]
        )
        details = error_of(refused, 422)["details"]
        assert [d["code"] for d in details] == ["meter_not_found"] * 3
        assert intruder.ledger_rows() == 0
    # Nothing of mine changed.
    assert api.quantities(mine.id) == {mine.key("sum"): "1"}
    assert api.client.get(f"/v1/customers/{mine.customer['id']}").status_code == 200
    assert api.client.get(f"/v1/subscriptions/{mine.id}").json()["status"] == "active"
    assert api.ledger_rows() == 1


def test_partner_keys_are_created_per_organization(api: Api) -> None:
    created = api.created("/v1/partners", {"name": "Gradient"})
    assert created["id"].startswith("prt_")
    assert created["name"] == "Gradient"
    assert created["partner_key"].startswith("pk_")
    error = error_of(api.client.post("/v1/partners", json={"name": "  "}), 422)
    assert error["code"] == "invalid_input"
    assert api.rows(t.partners) == 1
