"""`db/bulk.py`'s statements against each real database, on a table of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from meterworks.billing.batch import INVOICE_COLUMNS, LINE_COLUMNS, LINES_INVOICE_KEY
from meterworks.db import bulk
from meterworks.db import tables as t
from meterworks.db.dialect import defer_foreign_key, is_unique_violation, plan_key_checks_once
from meterworks.db.engine import Database
from meterworks.db.types import ExactDecimal, UTCDateTime
from meterworks.errors import Conflict


@pytest.fixture
def probe(database: Database) -> Iterator[Table]:
    table = Table(
        f"bulk_probe_{secrets.token_hex(4)}",
        MetaData(),
        Column("a", String(10), nullable=False),
        Column("b", Integer, nullable=False),
        Column("amount", ExactDecimal(), nullable=False),
        Column("at", UTCDateTime(), nullable=True),
        Column("note", String(10), nullable=True),
        PrimaryKeyConstraint("a", "b"),
    )
    table.create(database.engine)
    try:
        yield table
    finally:
        table.drop(database.engine)


def test_an_upsert_adds_new_keys_and_replaces_only_the_named_columns_of_taken_ones(
    database: Database, probe: Table
) -> None:
    first = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    later = datetime(2026, 2, 1, tzinfo=UTC)

    def upsert(conn: Connection, rows: list[tuple[object, ...]]) -> None:
        bulk.upsert(conn, probe, ["a", "b"], ["amount", "at"], rows)

    with database.transaction() as conn:
        upsert(conn, [("x", 1, Decimal("1.10"), first), ("x", 2, Decimal("2"), None)])
        conn.execute(probe.update().where(probe.c.a == "x", probe.c.b == 1).values(note="kept"))
    with database.transaction() as conn:
        upsert(
            conn,
            [
                ("x", 1, Decimal("-0.000000000001"), None),
                ("y", 1, Decimal("12345678901234567890.5"), later),
            ],
        )
        upsert(conn, [])  # nothing to write

    with database.read() as conn:
        rows = [tuple(row) for row in conn.execute(select(probe).order_by(probe.c.a, probe.c.b))]
    assert rows == [
        ("x", 1, Decimal("-0.000000000001"), None, "kept"),
        ("x", 2, Decimal("2"), None, None),
        ("y", 1, Decimal("12345678901234567890.5"), later, None),
    ]


def test_many_rows_upsert_in_one_statement_and_store_exactly_what_was_sent(
    database: Database, probe: Table
) -> None:
    """From `UNNESTED_FROM` rows, PostgreSQL takes an upsert as one array a column, in its text
    form: every text, decimal, instant and NULL must come back as sent."""
    india = timezone(timedelta(hours=5, minutes=30))
    notes = ['a"b', "c\\d", "{e,f}", "NULL", "", " g ", "h\ti", "é€", None]
    count = bulk.UNNESTED_FROM + len(notes)
    amounts = [Decimal("1E+3"), Decimal("-0.000000000001"), Decimal("12345678901234567890.5")]
    instants = [datetime(2026, 2, 1, 5, 30, 0, 1, india), None, datetime(2026, 1, 31, tzinfo=UTC)]
    # Keys with quotes, braces and backslashes too, in a column without NULLs.
    keys = ["k", 'q"r', "s\\t", "{u,v}", "NULL"]

    def key(n: int) -> str:
        return keys[n % len(keys)]

    rows = [
        (key(n), n, amounts[n % 3], instants[n % 3], notes[n % len(notes)]) for n in range(count)
    ]

    def upsert(conn: Connection, rows: list[tuple[object, ...]]) -> None:
        bulk.upsert(conn, probe, ["a", "b"], ["amount", "at", "note"], rows)

    with database.transaction() as conn:
        upsert(conn, rows)
    # Half of them again, changed, beside new ones: the taken keys are updated.
    again = [(key(n), n, Decimal(n), None, f"v{n}") for n in range(0, 2 * count, 2)]
    with database.transaction() as conn:
        upsert(conn, again)
    # Keys twice in one call: one row at a time, the last one standing.
    twice = [(key(1), 1, Decimal("7"), None, "first")] * bulk.UNNESTED_FROM + [
        (key(1), 1, Decimal("8"), None, "last")
    ]
    with database.transaction() as conn:
        upsert(conn, twice)

    expected = {row[1]: row for row in rows} | {row[1]: row for row in again}
    expected[1] = (key(1), 1, Decimal("8"), None, "last")
    with database.read() as conn:
        stored = {r.b: tuple(r) for r in conn.execute(select(probe))}
    assert stored == expected
    assert all(r[3] is None or r[3].tzinfo is UTC for r in stored.values())


def test_a_plain_insert_stores_exact_decimals_and_instants(
    database: Database, probe: Table
) -> None:
    """On PostgreSQL by COPY, where instants go as their ISO text; elsewhere by INSERT."""
    india = timezone(timedelta(hours=5, minutes=30))
    shared = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    rows = [
        ("x", 1, Decimal("1E+1"), shared, "a\tb\\c"),
        ("x", 2, Decimal("-0.000000000001"), shared, None),
        ("y", 1, Decimal("12345678901234567890.5"), datetime(2026, 2, 1, 5, 30, 0, 1, india), None),
        ("y", 2, Decimal("0"), None, None),
    ]
    with database.transaction() as conn:
        written = bulk.insert(conn, probe, ["a", "b", "amount", "at", "note"], rows)
    assert written == 4
    with database.read() as conn:
        stored = [tuple(r) for r in conn.execute(select(probe).order_by(probe.c.a, probe.c.b))]
    assert stored == [
        ("x", 1, Decimal("10"), shared, "a\tb\\c"),
        ("x", 2, Decimal("-0.000000000001"), shared, None),
        ("y", 1, Decimal("12345678901234567890.5"), datetime(2026, 2, 1, 0, 0, 0, 1, UTC), None),
        ("y", 2, Decimal("0"), None, None),
    ]
    assert all(r[3] is None or r[3].tzinfo is UTC for r in stored)


def test_a_row_whose_key_is_taken_is_told_from_other_refused_rows(
    database: Database, probe: Table
) -> None:
    row = ("x", 1, Decimal("1"), None, None)
    columns = ["a", "b", "amount", "at", "note"]
    with database.transaction() as conn:
        bulk.insert(conn, probe, columns, [row])
    refusals = []

    def attempt(rows: list[tuple[object, ...]]) -> None:
        with database.transaction() as conn:
            try:
                bulk.insert(conn, probe, columns, rows)
            except IntegrityError as exc:
                refusals.append(is_unique_violation(exc))
                raise

    # On PostgreSQL a plain insert is a COPY, elsewhere an INSERT; the transaction answers a
    # refused row as a Conflict, with the driver's error inside.
    for rows in ([("y", 1, Decimal("2"), None, None), row], [("z", 1, None, None, None)]):
        with pytest.raises(Conflict):
            attempt(rows)
    assert refusals == [True, False]  # the taken key; then a missing amount (NOT NULL)
    with database.read() as conn:
        assert [r.a for r in conn.execute(select(probe))] == ["x"]  # nothing half-written


def test_a_deferred_foreign_key_is_checked_at_commit_and_only_where_deferred(
    database: Database,
) -> None:
    """PostgreSQL defers the key named; SQLite, whose writing transaction holds the one write
    lock from its start, leaves every key as it is."""
    suffix = secrets.token_hex(4)
    metadata = MetaData()
    parent = Table(f"defer_parent_{suffix}", metadata, Column("id", String(10), primary_key=True))
    key = f"fk_defer_child_{suffix}"
    child = Table(
        f"defer_child_{suffix}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", String(10), nullable=False),
        ForeignKeyConstraint(["parent_id"], [parent.c.id], name=key, deferrable=True),
    )
    metadata.create_all(database.engine)
    deferring = database.dialect == "postgresql"
    try:
        with database.transaction() as conn:
            assert defer_foreign_key(conn, key) is deferring
            if deferring:  # a child before its parent, within one transaction
                conn.execute(child.insert().values(id=1, parent_id="p"))
                conn.execute(parent.insert().values(id="p"))
            else:  # refused at once, as ever
                with pytest.raises(IntegrityError):
                    conn.execute(child.insert().values(id=1, parent_id="p"))
                conn.execute(parent.insert().values(id="p"))
                conn.execute(child.insert().values(id=1, parent_id="p"))
        if deferring:

            def orphan() -> None:
                with database.transaction() as conn:
                    assert defer_foreign_key(conn, key)
                    conn.execute(child.insert().values(id=2, parent_id="missing"))
                    conn.execute(parent.insert().values(id="q"))

            # The parent never comes: refused at commit, nothing written.
            with pytest.raises(Conflict):
                orphan()
            # Deferred for that transaction only: the next refuses at the statement.
            with database.transaction() as conn, pytest.raises(IntegrityError):
                conn.execute(child.insert().values(id=3, parent_id="missing"))
        with database.read() as conn:
            assert [tuple(r) for r in conn.execute(select(child))] == [(1, "p")]
            assert [r.id for r in conn.execute(select(parent))] == ["p"]
    finally:
        metadata.drop_all(database.engine)


def test_key_checks_planned_once_only_within_the_transaction(database: Database) -> None:
    """PostgreSQL connections plan every execution afresh; `plan_key_checks_once` relaxes that
    for the rest of one transaction, never for the next one on the same connection."""
    if database.dialect != "postgresql":
        with database.transaction() as conn:
            plan_key_checks_once(conn)  # nothing to relax; the transaction goes on
            assert conn.execute(select(1)).scalar() == 1
        return
    with database.engine.connect() as conn:
        modes = []
        for relax in (False, True, False):
            with conn.begin():
                if relax:
                    plan_key_checks_once(conn)
                modes.append(conn.exec_driver_sql("SHOW plan_cache_mode").scalar())
    assert modes == ["force_custom_plan", "auto", "force_custom_plan"]


def test_key_checks_are_planned_for_the_table_as_it_is_now(fresh_database: Database) -> None:
    """A key check's plan made while `invoices` was empty is not kept once it has grown: on an
    empty table the index by (organization, closes_at, id) costs as little as the primary key,
    and a plan on it, kept, reads every invoice of the organization for each line it checks."""
    if fresh_database.dialect != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    org = "org_" + "x" * 26
    at = datetime(2026, 11, 1, tzinfo=UTC)
    wide = next(
        str(i.name)
        for i in t.invoices.indexes
        if [c.name for c in i.columns] == ["organization_id", "closes_at", "id"]
    )

    def page(conn: Connection, first: int, count: int) -> None:
        """As the billing run writes a page: lines, then their invoices, keys checked at commit."""
        assert defer_foreign_key(conn, LINES_INVOICE_KEY)
        plan_key_checks_once(conn)
        ids = [f"inv_{n:026d}" for n in range(first, first + count)]
        lines = [
            (org, i, p, None, "fixed", "fixed/0", at, at, "x", None, 1, 1, 1, 100, {})
            for i in ids
            for p in (1, 2)
        ]
        bulk.insert(conn, t.invoice_lines, LINE_COLUMNS, lines)
        invoices = [
            (org, i, None, "cus_1", "on_demand", at, at, at, "draft", "USD", None, 0, 0, 0, None,
             0, None, None, None, None, at, at)
            for i in ids
        ]  # fmt: skip
        bulk.insert(conn, t.invoices, INVOICE_COLUMNS, invoices)

    def wide_reads(conn: Connection) -> int:
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        conn.commit()
        conn.exec_driver_sql("SET stats_fetch_consistency = none")
        reads = conn.exec_driver_sql(
            "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = %s", (wide,)
        ).scalar()
        conn.commit()
        return int(reads)

    with fresh_database.engine.connect() as conn:
        with conn.begin():
            page(conn, 0, 4)  # the checks' plans are first made on an empty table
        for first in range(4, 4 + 10 * 300, 300):
            with conn.begin():
                page(conn, first, 300)
        before = wide_reads(conn)
        with conn.begin():
            page(conn, 10_000, 300)
        # Each of the 600 checks a probe of the primary key: none reads the wide index.
        assert wide_reads(conn) == before
