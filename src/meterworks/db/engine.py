"""Engines and units of work. One transaction per request, job or CLI command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from meterworks.db.dialect import is_sqlite, normalize_url
from meterworks.errors import Conflict, Unavailable

READ_ONLY = "meterworks_read_only"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


# As many pooled connections as the server has worker threads (40), so a busy server reuses
# connections instead of opening and closing overflow ones per request.
POOL_SIZE = 40


def make_engine(
    url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = POOL_SIZE
) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            json_serializer=dumps,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=10,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is replaced by explicit BEGIN below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss; NORMAL: it survives a crash of the process.
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front, so a read-then-write transaction cannot
            # fail half-way with SQLITE_BUSY on lock upgrade; reads take no lock at all.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        json_serializer=dumps,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
    )


class Database:
    """An engine plus the unit-of-work helpers every transport uses."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, sqlite_synchronous=sqlite_synchronous)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: commits on success, rolls back on any error."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise Unavailable("the database is not available, retry later") from exc
        except IntegrityError as exc:
            # A check-then-insert lost a race with a concurrent request: the constraint held, so
            # nothing was written; the client may retry and will then see the winner's row.
            raise Conflict(
                "a concurrent change conflicted with this one; nothing was written, retry",
                code="concurrent_conflict",
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("the database connection was lost, retry later") from exc
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (no write lock taken on SQLite)."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise Unavailable("the database is not available, retry later") from exc

    def dispose(self) -> None:
        self.engine.dispose()
