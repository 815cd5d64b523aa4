"""`db/dialect.py`'s list matching, and instants read back, against each real database, on
tables of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text

from meterworks.db.dialect import (
    ARRAYED_FROM,
    Listed,
    json_array,
    json_values,
    one_of,
    text_array,
)
from meterworks.db.engine import Database
from meterworks.db.types import UTCDateTime

# Every character an array's text form gives a meaning to, alone and together.
AWKWARD = [
    "a", "b", "a,b", '"a"', "a\\", "\\", "a\\,b", "{a}", "{}", "NULL", "null", " a ", "",
    'x"},{"y', "a\tb", "é", "a'b",
]  # fmt: skip


# Lists to match against the table, each a case of both ways of passing a list.
WANTED = pytest.mark.parametrize(
    "wanted",
    [["a"], ["a,b"], ['"a"', "\\"], ["NULL", ""], ['x"},{"y', "{}", " a "], AWKWARD, []],
    ids=["plain", "comma", "quote-backslash", "null-empty", "braces-spaces", "all", "none"],
)


@pytest.fixture
def names(database: Database) -> Iterator[Table]:
    table = Table(f"dialect_probe_{secrets.token_hex(4)}", MetaData(), Column("name", String(40)))
    table.create(database.engine)
    try:
        with database.transaction() as conn:
            conn.execute(table.insert(), [{"name": name} for name in AWKWARD])
        yield table
    finally:
        table.drop(database.engine)


@WANTED
def test_one_of_matches_exactly_the_values_asked_for(
    database: Database, names: Table, wanted: list[str]
) -> None:
    with database.read() as conn:
        found = conn.execute(
            select(names.c.name).where(one_of(conn, names.c.name, wanted))
        ).scalars()
        assert sorted(found) == sorted(wanted)


@WANTED
@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
def test_a_listed_statement_matches_exactly_the_values_asked_for(
    database: Database, names: Table, wanted: list[str], long: bool
) -> None:
    """Short lists and long ones (on PostgreSQL an IN list, and one array unnested), padded
    with values the table does not hold."""
    listed = Listed("wanted", lambda values: select(names.c.name).where(names.c.name.in_(values)))
    asked = [*wanted, *(f"absent {n}" for n in range(ARRAYED_FROM if long else 0))]
    with database.read() as conn:
        found = listed.execute(conn, asked, {}).scalars()
        assert sorted(found) == sorted(wanted)


def test_an_array_text_reads_back_as_the_same_strings(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("the text form of an array is PostgreSQL's")
    with database.read() as conn:
        for values in (
            AWKWARD, [], [""], ["\\\\\\"], list(reversed(AWKWARD)), [None, "NULL", None, 'a"b'],
        ):  # fmt: skip
            back = conn.execute(
                text("SELECT v FROM unnest(CAST(:values AS varchar[])) WITH ORDINALITY AS a(v, n)"
                     " ORDER BY n"),
                {"values": text_array(values)},
            ).scalars().all()  # fmt: skip
            assert back == values


@WANTED
def test_a_json_array_parameter_matches_exactly_the_values_asked_for(
    database: Database, names: Table, wanted: list[str]
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("json_each is SQLite's")
    with database.read() as conn:
        found = conn.execute(
            select(names.c.name).where(names.c.name.in_(json_values("wanted"))),
            {"wanted": json_array(wanted)},
        ).scalars()
        assert sorted(found) == sorted(wanted)


def test_instants_read_back_as_the_same_utc_instants(database: Database) -> None:
    table = Table(
        f"instants_{secrets.token_hex(4)}",
        MetaData(),
        Column("n", Integer, primary_key=True),
        Column("at", UTCDateTime()),
    )
    east = datetime(2026, 11, 22, 12, 30, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=5, minutes=30))
    )
    instants = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 10, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(8999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        east,
        None,
    ]
    table.create(database.engine)
    try:
        with database.transaction() as conn:
            conn.execute(table.insert(), [{"n": n, "at": at} for n, at in enumerate(instants)])
            if database.dialect == "sqlite":
                # Text not as SQLAlchemy writes it (no fraction; a date alone) is read too.
                conn.execute(
                    text(f"INSERT INTO {table.name} (n, at) VALUES (100, '2026-11-22 10:00:00'),"
                         " (101, '2026-11-22')")
                )  # fmt: skip
        with database.read() as conn:
            back = dict(conn.execute(select(table.c.n, table.c.at)).all())
    finally:
        table.drop(database.engine)
    for n, at in enumerate(instants):
        assert back[n] == at
        assert back[n] is None or back[n].tzinfo is UTC
    if database.dialect == "sqlite":
        assert back[100] == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
        assert back[101] == datetime(2026, 11, 22, tzinfo=UTC)
        assert back[100].tzinfo is UTC
        assert back[101].tzinfo is UTC
