"""Fixtures for the Gradient facade: an organization set up as a Gradient vendor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.facades.gradient.support import Vendor, gradient_vendor
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def vendor(server: RunningServer, org: IsolatedOrganization) -> Iterator[Vendor]:
    with gradient_vendor(server, org) as made:
        yield made
