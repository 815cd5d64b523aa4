"""The databases tests run on: a SQLite file, and a scratch database on a real PostgreSQL server.

`scripts/with-postgres.sh` starts the server and exports its URL; `make test` also sets
`METERWORKS_REQUIRE_POSTGRES=1`, so a missing server fails the run instead of skipping half of it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from meterworks.db.engine import Database

DIALECTS = ("sqlite", "postgresql")
POSTGRES_URL_VARIABLE = "METERWORKS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "METERWORKS_REQUIRE_POSTGRES"


def sqlite_url(directory: Path) -> str:
    """A SQLite database file in `directory` (an absolute path, hence four slashes)."""
    return f"sqlite:///{directory.resolve() / 'meterworks.db'}"


@contextmanager
def sqlite_database(directory: Path, table: str) -> Iterator[Database]:
    """A `Database` on a new SQLite file in `directory` with one table (`table`, its CREATE
    statement), disposed of when the block ends. NORMAL sync: these tests lose nothing to a
    power cut, and fsyncs would only slow them."""
    database = Database(sqlite_url(directory), sqlite_synchronous="NORMAL")
    try:
        with database.transaction() as conn:
            conn.execute(text(table))
        yield database
    finally:
        database.dispose()


def postgres_server_url() -> str:
    """The test server's URL, or skip (fail when PostgreSQL is required) when there is none."""
    # The test harness's own switches; the application reads its settings through config.py.
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if url:
        return url
    reason = (
        f"{POSTGRES_URL_VARIABLE} is not set: run the tests under scripts/with-postgres.sh "
        "(as `make test` does) to include PostgreSQL"
    )
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server for as long as the block runs, then dropped."""
    name = f"meterworks_t_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            # FORCE: a connection a test leaked must not keep the database alive.
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def empty_database(dialect: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty database of `dialect`: a SQLite file in `directory`, or a scratch
    database on the test PostgreSQL server, dropped afterwards."""
    if dialect == "sqlite":
        yield sqlite_url(directory)
        return
    with scratch_postgres_database(postgres_server_url()) as url:
        yield url
