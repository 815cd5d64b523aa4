from __future__ import annotations

import pytest

from tests.scenarios.story import Story
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)
