"""The migration gives exactly the schema of `db/tables.py`, on both dialects, idempotently."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from meterworks.db.engine import Database
from meterworks.db.migrate import alembic_config, current_revision, upgrade
from meterworks.db.tables import metadata
from tests.support.databases import DIALECTS
from tests.support.databases import empty_database as new_database


@pytest.fixture(params=DIALECTS, ids=DIALECTS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with new_database(request.param, tmp_path) as url:
        db = Database(url)
        yield db
        db.dispose()


def differences(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_upgrade_gives_exactly_the_declared_schema(empty_database: Database) -> None:
    assert tables(empty_database) == set()
    upgrade(empty_database.engine)
    assert tables(empty_database) == set(metadata.tables) | {"alembic_version"}
    assert differences(empty_database) == []
    head = ScriptDirectory.from_config(alembic_config(empty_database.engine)).get_current_head()
    assert current_revision(empty_database.engine) == head


def test_upgrade_twice_is_a_no_op(empty_database: Database) -> None:
    upgrade(empty_database.engine)
    revision = current_revision(empty_database.engine)
    upgrade(empty_database.engine)
    assert current_revision(empty_database.engine) == revision
    assert differences(empty_database) == []


def test_downgrade_removes_everything_and_upgrade_restores_it(empty_database: Database) -> None:
    upgrade(empty_database.engine)
    command.downgrade(alembic_config(empty_database.engine), "base")
    assert tables(empty_database) <= {"alembic_version"}
    assert current_revision(empty_database.engine) is None
    upgrade(empty_database.engine)
    assert differences(empty_database) == []
