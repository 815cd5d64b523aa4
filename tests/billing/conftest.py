from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterworks.db.engine import Database
from meterworks.db.migrate import upgrade
from tests.support.databases import postgres_server_url, scratch_postgres_database, sqlite_url


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of this session's dialect, of this test's own: a billing run over every
    organization must not meet the other tests' ones."""
    if database_url.startswith("sqlite"):
        db = Database(sqlite_url(tmp_path))
        upgrade(db.engine)
        yield db
        db.dispose()
        return
    with scratch_postgres_database(postgres_server_url()) as url:
        db = Database(url)
        upgrade(db.engine)
        yield db
        db.dispose()
