"""The only place where SQLite and PostgreSQL differ."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from sqlalchemy import ColumnElement, Select, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import NullType


def normalize_url(url: str) -> str:
    """`postgresql://` selects psycopg 3; SQLite URLs pass through."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class TextArray(str):
    """An array of strings in PostgreSQL's text form (`text_array`), sent as a `varchar[]`
    parameter: the server reads it as an array constant, so the planner sees its elements, as
    it does those of a list."""


class _TextArrayDumper(Dumper):
    oid = postgres.types["varchar"].array_oid

    def dump(self, obj: TextArray) -> bytes:
        return obj.encode()


psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)


def text_array(values: Sequence[str | None]) -> TextArray:
    """These strings as one `varchar[]` parameter (PostgreSQL only); None is a NULL element.

    Every element is quoted, so a comma, a brace, a space or the word NULL in one stays part of
    it. The driver would build the same text from a list element by element in Python, a few
    times the cost (about 2.4 ms for 1,000 ids against 0.8 ms, the query included).
    """
    if not values:
        return TextArray("{}")
    if None not in values:
        whole = '","'.join(cast(Sequence[str], values))
        if '"' not in whole and "\\" not in whole:
            return TextArray('{"' + whole + '"}')
    return TextArray(
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def json_array(values: Iterable[str]) -> str:
    """These strings as one JSON array: on SQLite, a list's one parameter (`json_values`)."""
    return json.dumps(list(values))


def json_values(name: str) -> Select[tuple[Any]]:
    """`SELECT value FROM json_each(:name)` (SQLite): the elements of the JSON array bound to
    `name` (`json_array`). `column IN` it is one statement text for any number of values: an IN
    list is rendered, and the statement prepared, anew for every length."""
    return select(func.json_each(bindparam(name)).table_valued("value").c.value)


# On PostgreSQL, a list of this many ids or more goes to `Listed`'s statement as one array.
# In-process, reading subscriptions out of 10,000 took, a subscription, as an IN list and as
# an array: 60 ids 30.5 and 51.2 µs, 250 ids 22.1 and 16.6, 1,000 17.6 and 13.2, 5,000 16.9
# and 11.3.
ARRAYED_FROM = 200


class Listed:
    """A statement over one list of ids, built once for each dialect: `make` is given what
    stands for the list, as in `column.in_(ids)`. On SQLite the list goes as one JSON array
    (`json_values`). On PostgreSQL a short list goes as an expanding IN list, and a long one
    as one array parameter (`text_array`), unnested: an expanding list is rendered, sent and
    planned id by id."""

    def __init__(self, name: str, make: Callable[[Any], Executable]) -> None:
        self._name = name
        self._expanding = make(bindparam(name, expanding=True))
        self._arrayed = make(select(func.unnest(bindparam(name, type_=NullType()))))
        self._sqlite = make(json_values(name))

    def execute(
        self, conn: Connection, values: Iterable[str], parameters: dict[str, Any]
    ) -> CursorResult[Any]:
        if conn.dialect.name == "sqlite":
            return conn.execute(self._sqlite, {**parameters, self._name: json_array(values)})
        listed = list(values)
        if len(listed) >= ARRAYED_FROM:
            return conn.execute(self._arrayed, {**parameters, self._name: text_array(listed)})
        return conn.execute(self._expanding, {**parameters, self._name: listed})


def one_of(conn: Connection, column: ColumnElement[Any], values: Sequence[str]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one parameter, not one per
    value, so a page's list of ids is neither rendered nor parsed again for every statement."""
    if conn.dialect.name == "postgresql":
        # No type of SQLAlchemy's own: its array type would take the text for a list.
        return column == any_(bindparam(None, text_array(values), type_=NullType()))
    return column.in_(values)


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


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether the database refused a row for a unique index (not a foreign key, not a check)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL: unique_violation
        return True
    return "UNIQUE constraint failed" in str(orig)  # SQLite's message


def defer_foreign_key(conn: Connection, name: str) -> bool:
    """On PostgreSQL, check the foreign key `name` (declared DEFERRABLE) at this transaction's
    commit instead of at each row, and answer True. Elsewhere nothing changes (False): SQLite's
    writing transaction holds the one write lock from its start, so there is nothing to gain by
    writing rows before those they refer to."""
    if conn.dialect.name != "postgresql":
        return False
    quoted = conn.dialect.identifier_preparer.quote(name)
    conn.exec_driver_sql(f"SET CONSTRAINTS {quoted} DEFERRED")
    return True


def plan_key_checks_once(conn: Connection) -> None:
    """On PostgreSQL, let the rest of this transaction's foreign-key checks reuse one plan.

    Connections plan each execution for its parameters (`plan_cache_mode=force_custom_plan`,
    `engine.py`), and PostgreSQL applies that to its own checks of foreign keys too: a bulk
    insert planned the check of every row afresh. Later statements of the transaction may take
    generic plans as well, so this goes after its reads.

    It also drops the plans cached before (`DISCARD PLANS`), so each check is planned once per
    transaction for the tables as they are now. A plan kept from a transaction when the table
    was (nearly) empty can be made on the wrong index: on an empty `invoices`, the check of a
    line's key costs the same by (organization, closes_at, id) as by the primary key, and kept
    while the table grew, it read every invoice of the organization for each line.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
        conn.exec_driver_sql("DISCARD PLANS")
