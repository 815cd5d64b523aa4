"""Fixtures every test can use: each storage test runs on SQLite and on a real PostgreSQL.

Session-scoped fixtures are parametrized by dialect, so pytest groups the tests of one dialect:
each dialect gets one fresh database, migrated once, and one server. Tests stay isolated from
each other through tenancy: the `org` fixture gives every test its own organization.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.db.migrate import upgrade
from meterworks.kit.clock import FrozenClock
from tests.support.databases import DIALECTS, empty_database
from tests.support.server import TEST_EPOCH, RunningServer, serve
from tests.support.tenancy import IsolatedOrganization, new_organization


@pytest.fixture(scope="session", params=DIALECTS, ids=DIALECTS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of an empty database, new for this session, of each dialect in turn."""
    with empty_database(request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    """The session's database, migrated to the latest schema."""
    db = Database(database_url)
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of this session's dialect, of this test's own, migrated: for a test
    that must not meet the other tests' rows (a billing run over every organization) or needs
    tables that have never held any."""
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with empty_database(dialect, tmp_path) as url:
        db = Database(url)
        upgrade(db.engine)
        yield db
        db.dispose()


@pytest.fixture(scope="session")
def server(database_url: str, database: Database) -> Iterator[RunningServer]:
    """The real HTTP server over the session's database, with a frozen clock tests can move."""
    settings = Settings().with_overrides(database_url=database_url, scheduler_enabled=False)
    with serve(settings, database, FrozenClock(TEST_EPOCH)) as running:
        yield running


@pytest.fixture
def org(server: RunningServer, request: pytest.FixtureRequest) -> Iterator[IsolatedOrganization]:
    """An organization of this test's own, with an API key and an authenticated client."""
    with new_organization(server, request.node.name) as organization:
        yield organization
