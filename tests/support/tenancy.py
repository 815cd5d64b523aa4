"""A fresh organization per test: tests stay isolated through tenancy, not by wiping tables."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from meterworks.tenancy.service import create_api_key, ensure_organization
from tests.support.server import RunningServer


@dataclass(frozen=True)
class IsolatedOrganization:
    id: str
    token: str
    client: httpx.Client  # authenticated as this organization


@contextmanager
def new_organization(server: RunningServer, label: str) -> Iterator[IsolatedOrganization]:
    """An organization no other test uses, with one API key and a client holding it."""
    name = f"{label[:150]} {secrets.token_hex(8)}"
    now = server.clock.now()
    with server.db.transaction() as conn:
        organization = ensure_organization(conn, name, now)
        key = create_api_key(conn, organization.id, "test", now)
    headers = {"Authorization": f"Bearer {key.token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        yield IsolatedOrganization(id=organization.id, token=key.token, client=client)
