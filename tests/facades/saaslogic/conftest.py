"""Fixtures for the Saaslogic facade: a merchant holding a bearer token, at a known instant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.facades.saaslogic.support import NOW, Merchant, saaslogic_merchant
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def merchant(server: RunningServer, org: IsolatedOrganization) -> Iterator[Merchant]:
    server.clock.set(NOW)
    with saaslogic_merchant(server, org) as made:
        yield made
