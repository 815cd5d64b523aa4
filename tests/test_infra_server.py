"""The `server` fixture serves the real application over HTTP, on each dialect."""

from __future__ import annotations

import httpx

from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


def test_healthz_answers_over_real_http(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": server.db.dialect}
    assert server.settings.scheduler_enabled is False


def test_org_client_is_authenticated_as_a_fresh_organization(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    assert org.token.startswith("key_")
    response = org.client.get("/v1/meters")
    assert response.status_code == 200
    assert response.json() == {"data": []}

    # The key is what lets it in: the same call without it is refused.
    anonymous = httpx.get(f"{server.base_url}/v1/meters", timeout=30)
    assert anonymous.status_code == 401
