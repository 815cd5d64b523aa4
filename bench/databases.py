"""Fresh databases for one benchmark run: a SQLite file, or a new database on PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

# The PostgreSQL server to benchmark on; `make bench` starts a durable one and exports it.
POSTGRES_URL_VARIABLE = "METERWORKS_TEST_POSTGRES_URL"
DIALECTS = ("sqlite", "postgresql")


class NoPostgres(RuntimeError):
    pass


def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if not url:
        raise NoPostgres(
            f"{POSTGRES_URL_VARIABLE} is not set: run under scripts/with-postgres.sh --durable "
            "(as `make bench` does), or pass --dialect sqlite"
        )
    return url


def libpq_url(url: str) -> str:
    """A URL psycopg accepts (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(dialect: str, workdir: Path, name: str) -> Iterator[str]:
    """The URL of a new, empty database, removed when the block ends."""
    if dialect == "sqlite":
        path = workdir / f"{name}.db"
        _remove_sqlite(path)
        try:
            yield f"sqlite:///{path.resolve()}"
        finally:
            _remove_sqlite(path)
        return
    server = libpq_url(postgres_server_url())
    database = f"bench_{name}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield make_url(server).set(database=database).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
