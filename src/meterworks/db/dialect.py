"""The only place where SQLite and PostgreSQL differ."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert


def normalize_url(url: str) -> str:
    """`postgresql://` selects psycopg 3; SQLite URLs pass through."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def insert_ignore(conn: Connection, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def upsert(
    conn: Connection, table: Table, index_elements: list[str], update: dict[str, Any]
) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET ..., in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(index_elements=index_elements, set_=update)
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(index_elements=index_elements, set_=update)


def excluded(conn: Connection, table: Table) -> Any:
    """The `excluded` pseudo-row of an upsert, for `SET col = excluded.col`."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).excluded
    return sqlite.insert(table).excluded


def try_advisory_lock(conn: Connection, key: int) -> bool | None:
    """A transaction-scoped advisory lock on PostgreSQL; None where the dialect has none."""
    if conn.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())


def insert_rows(
    conn: Connection,
    table: Table,
    columns: list[str],
    rows: list[tuple[Any, ...]],
    *,
    json_text: frozenset[str] = frozenset(),
) -> None:
    """A plain multi-row INSERT straight through the driver: `executemany`, or COPY on PostgreSQL.

    The hot path of ingestion: SQLAlchemy's per-row parameter compilation costs more than the
    database's own work, so values are only passed through each column type's bind processor.
    Columns named in `json_text` already hold the JSON column's text and are passed as they are.
    """
    if not rows:
        return
    dialect = conn.dialect
    processors = [
        None
        if name in json_text
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in columns
    ]
    active = [(i, p) for i, p in enumerate(processors) if p is not None]
    if active:
        converted = []
        for row in rows:
            values = list(row)
            for i, process in active:
                # None stays SQL NULL (a JSON column would otherwise store the text `null`).
                if values[i] is not None:
                    values[i] = process(values[i])
            converted.append(tuple(values))
        rows = converted
    quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in columns)
    if dialect.name == "postgresql":
        _copy_rows(conn, f"COPY {table.name} ({quoted}) FROM STDIN", rows)
        return
    placeholders = ", ".join(["?"] * len(columns))
    statement = f"INSERT INTO {table.name} ({quoted}) VALUES ({placeholders})"
    conn.exec_driver_sql(statement, rows)


def _copy_rows(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY in the connection's transaction: the fastest way PostgreSQL takes many rows."""
    import psycopg
    from sqlalchemy.exc import IntegrityError, OperationalError

    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:
        # Seen by callers as the same error an INSERT raises through SQLAlchemy.
        raise IntegrityError(statement, None, exc) from exc
    except psycopg.OperationalError as exc:
        raise OperationalError(statement, None, exc) from exc
