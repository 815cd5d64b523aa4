from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterworks.db.engine import Database
from meterworks.db.migrate import upgrade
from tests.support.databases import empty_database


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of this session's dialect, of this test's own: a billing run over every
    organization must not meet the other tests' ones."""
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with empty_database(dialect, tmp_path) as url:
        db = Database(url)
        upgrade(db.engine)
        yield db
        db.dispose()
