"""Many rows at once, handed to the driver: the ledger's appends and the billing run's writes.

Through SQLAlchemy, thousands of rows cost more in per-row parameter handling (a bind processor
per value, a JSON dump per document) than the database's own work. Here each value still goes
through its column type's own bind processor, so what is stored is exactly what an ordinary
statement stores, but a value many rows share (instants, ids, a plan's line details) is converted
once per call, and the rows go to the driver's `executemany` (or COPY, for a plain insert on
PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from meterworks.db.dialect import text_array
from meterworks.db.engine import dumps
from meterworks.db.types import UTCDateTime

Convert = Callable[[Any], Any]


def _converter(conn: Connection, table: Table, name: str, *, copy: bool) -> Convert | None:
    """The column's bind processor, remembering what it made of values seen before. For a COPY
    (and an upsert's arrays, `copy` too), an instant becomes its ISO 8601 text (with its offset):
    the driver's own conversion of an instant costs several times that of a text, and the same
    few instants recur in every row."""
    column_type = table.c[name].type
    process: Convert | None
    if isinstance(column_type, JSON):
        # The JSON text, as the engine's serializer writes it: what SQLite's JSON column stores,
        # and what PostgreSQL's jsonb reads from a COPY (its driver would dump it row by row).
        process = dumps
    else:
        process = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if copy and isinstance(column_type, (DateTime, UTCDateTime)):
            process = _iso_text(process)
    if process is None:
        return None
    by_value: dict[tuple[type, Any], Any] = {}
    # JSON documents are not hashable; one shared by many rows is the same object. Every row is
    # alive for the whole call, so an id names one object throughout.
    by_id: dict[int, Any] = {}
    processor = process

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is dict or kind is list:
            key = id(value)
            found = by_id.get(key, by_id)
            if found is by_id:
                found = by_id[key] = processor(value)
            return found
        if kind is datetime or kind is str:
            slot = (kind, value)
            found = by_value.get(slot, by_value)
            if found is by_value:
                found = by_value[slot] = processor(value)
            return found
        return processor(value)

    return convert


def _iso_text(process: Convert | None) -> Convert:
    def text(value: Any) -> Any:
        bound = value if process is None else process(value)
        return bound.isoformat() if isinstance(bound, datetime) else bound

    return text


def _converted(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    ready: frozenset[str] = frozenset(),
    *,
    copy: bool = False,
) -> Sequence[Sequence[Any]]:
    converters = [
        (i, None if name in ready else _converter(conn, table, name, copy=copy))
        for i, name in enumerate(columns)
    ]
    active = [(i, convert) for i, convert in converters if convert is not None]
    if not active:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i, convert in active:
            # None stays SQL NULL (a JSON column would otherwise store the text `null`).
            if values[i] is not None:
                values[i] = convert(values[i])
        out.append(tuple(values))
    return out


def _placeholder(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


def _names(conn: Connection, columns: Sequence[str]) -> list[str]:
    quote = conn.dialect.identifier_preparer.quote
    return [quote(name) for name in columns]


def insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    skip_conflicts: bool = False,
    ready: frozenset[str] = frozenset(),
) -> int:
    """Insert `rows` (values in `columns` order); the number of rows written.

    With `skip_conflicts`, a row that conflicts with a unique index is skipped (ON CONFLICT DO
    NOTHING) and not counted. Columns named in `ready` already hold what the driver is to get
    (a JSON column its JSON text, an exact decimal its text), and are not converted again.
    """
    if not rows:
        return 0
    copy = conn.dialect.name == "postgresql" and not skip_conflicts
    values = _converted(conn, table, columns, rows, ready, copy=copy)
    names = ", ".join(_names(conn, columns))
    if copy:
        _copy(conn, f"COPY {table.name} ({names}) FROM STDIN", values)
        return len(values)
    marks = ", ".join([_placeholder(conn)] * len(columns))
    statement = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
    if skip_conflicts:
        statement += " ON CONFLICT DO NOTHING"
    result = conn.exec_driver_sql(statement, values)
    return int(result.rowcount)


# On PostgreSQL, an upsert of this many rows or more is one statement over one array a column
# (`upsert`): the driver's `executemany` costs tens of µs a row in Python.
UNNESTED_FROM = 20


def upsert(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert `rows` (values: the keys, then the columns); a row whose keys are taken replaces
    that row's `columns` instead (ON CONFLICT (keys) DO UPDATE SET column = excluded.column)."""
    if not rows:
        return
    names = _names(conn, [*keys, *columns])
    sets = ", ".join(f"{name} = excluded.{name}" for name in names[len(keys) :])
    conflict = f"ON CONFLICT ({', '.join(names[: len(keys)])}) DO UPDATE SET {sets}"
    if (
        conn.dialect.name == "postgresql"
        and len(rows) >= UNNESTED_FROM
        # One statement may not update a row twice: rows sharing keys go one by one.
        and len({tuple(row[: len(keys)]) for row in rows}) == len(rows)
    ):
        values = _converted(conn, table, [*keys, *columns], rows, copy=True)
        casts = ", ".join(
            f"CAST(%s AS {table.c[name].type.compile(dialect=conn.dialect)}[])"
            for name in [*keys, *columns]
        )
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({casts}) "
            + conflict,
            tuple(
                text_array([None if v is None else str(v) for v in column])
                for column in zip(*values, strict=True)
            ),
        )
        return
    marks = ", ".join([_placeholder(conn)] * len(names))
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}) " + conflict,
        _converted(conn, table, [*keys, *columns], rows),
    )


def update(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """`UPDATE table SET columns WHERE keys` once per row (values: the keys, then the columns);
    the number of rows changed."""
    if not rows:
        return 0
    mark = _placeholder(conn)
    values = _converted(conn, table, [*keys, *columns], rows)
    # The statement takes the SET values first, then the keys.
    ordered = [(*row[len(keys) :], *row[: len(keys)]) for row in values]
    sets = ", ".join(f"{name} = {mark}" for name in _names(conn, columns))
    where = " AND ".join(f"{name} = {mark}" for name in _names(conn, keys))
    result = conn.exec_driver_sql(f"UPDATE {table.name} SET {sets} WHERE {where}", ordered)
    return int(result.rowcount)


def _copy(conn: Connection, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """COPY in the connection's transaction: the fastest way PostgreSQL takes many rows."""
    import psycopg

    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:
        # Seen by callers as the error an INSERT raises through SQLAlchemy.
        raise IntegrityError(statement, None, exc) from exc
    except psycopg.OperationalError as exc:
        raise OperationalError(statement, None, exc) from exc
