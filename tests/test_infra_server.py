"""The `server` fixture serves the real application over HTTP, on each dialect."""

from __future__ import annotations

import httpx

from tests.support.server import RunningServer


def test_healthz_answers_over_real_http(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": server.db.dialect}
    assert server.settings.scheduler_enabled is False
