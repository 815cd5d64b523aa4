"""The caller's organization: reading it and choosing the late-usage policy."""

from __future__ import annotations

from tests.support.tenancy import IsolatedOrganization


def test_organization_reads_its_defaults(org: IsolatedOrganization) -> None:
    response = org.client.get("/v1/organization")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == org.id
    assert body["late_usage_policy"] == "adjust"


def test_late_usage_policy_can_be_set_and_read_back(org: IsolatedOrganization) -> None:
    response = org.client.patch("/v1/organization", json={"late_usage_policy": "reject"})
    assert response.status_code == 200
    assert response.json()["late_usage_policy"] == "reject"
    assert org.client.get("/v1/organization").json()["late_usage_policy"] == "reject"


def test_an_unknown_policy_is_refused_and_nothing_changes(org: IsolatedOrganization) -> None:
    response = org.client.patch("/v1/organization", json={"late_usage_policy": "ignore"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert org.client.get("/v1/organization").json()["late_usage_policy"] == "adjust"
