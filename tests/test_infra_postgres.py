"""The storage fixtures are what they claim: a real PostgreSQL 15 server, and SQLite in WAL mode."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from meterworks.db.engine import Database
from meterworks.db.migrate import alembic_config, current_revision


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_is_a_real_version_15_server(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.read() as conn:
            major = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10_000
            name = conn.exec_driver_sql("SELECT current_database()").scalar_one()
    finally:
        db.dispose()
    assert db.dialect == "postgresql"
    assert major == 15
    # A database of this session's own, not the server's shared `meterworks_test`.
    assert name.startswith("meterworks_t_")
    assert len(name) == len("meterworks_t_") + 12


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_runs_in_wal_mode(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.read() as conn:
            journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    finally:
        db.dispose()
    assert db.dialect == "sqlite"
    assert journal_mode == "wal"


def test_database_is_migrated_to_the_latest_revision(database: Database) -> None:
    head = ScriptDirectory.from_config(alembic_config(database.engine)).get_current_head()
    assert current_revision(database.engine) == head
