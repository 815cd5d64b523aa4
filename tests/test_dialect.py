"""`db/dialect.py`'s list matching against each real database, on a table of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, text

from meterworks.db.dialect import one_of, text_array
from meterworks.db.engine import Database

# Every character an array's text form gives a meaning to, alone and together.
AWKWARD = [
    "a", "b", "a,b", '"a"', "a\\", "\\", "a\\,b", "{a}", "{}", "NULL", "null", " a ", "",
    'x"},{"y', "a\tb", "é", "a'b",
]  # fmt: skip


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


@pytest.mark.parametrize(
    "wanted",
    [["a"], ["a,b"], ['"a"', "\\"], ["NULL", ""], ['x"},{"y', "{}", " a "], AWKWARD, []],
    ids=["plain", "comma", "quote-backslash", "null-empty", "braces-spaces", "all", "none"],
)
def test_one_of_matches_exactly_the_values_asked_for(
    database: Database, names: Table, wanted: list[str]
) -> None:
    with database.read() as conn:
        found = conn.execute(
            select(names.c.name).where(one_of(conn, names.c.name, wanted))
        ).scalars()
        assert sorted(found) == sorted(wanted)


def test_an_array_text_reads_back_as_the_same_strings(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("the text form of an array is PostgreSQL's")
    with database.read() as conn:
        for values in (AWKWARD, [], [""], ["\\\\\\"], list(reversed(AWKWARD))):
            back = conn.execute(
                text("SELECT v FROM unnest(CAST(:values AS varchar[])) WITH ORDINALITY AS a(v, n)"
                     " ORDER BY n"),
                {"values": text_array(values)},
            ).scalars().all()  # fmt: skip
            assert back == values
