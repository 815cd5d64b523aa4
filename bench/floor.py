"""The floor: the same ledger rows written straight into a bare table, from one process.

No HTTP, no validation, no rollups: only the columns the ledger stores, under the ledger's own
primary key and idempotency index, committed durably once per batch. SQLite gets the product's
pragmas (WAL, synchronous=FULL) and `executemany`; PostgreSQL gets COPY through psycopg.
A replay floor writes the same rows again, ignoring the conflicts, as a dedupe must.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg

from bench.databases import libpq_url
from bench.workload import Stream

COLUMNS = (
    "organization_id", "seq", "idempotency_key", "revision", "kind", "subscription_id",
    "meter_id", "ts_us", "operation", "quantity", "properties", "source", "received_at_us",
    "payload_hash",
)  # fmt: skip

_DDL = """
CREATE TABLE floor_events (
    organization_id VARCHAR(40) NOT NULL,
    seq BIGINT NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    revision INTEGER NOT NULL,
    kind VARCHAR(8) NOT NULL,
    subscription_id VARCHAR(40) NOT NULL,
    meter_id VARCHAR(40) NOT NULL,
    ts_us BIGINT NOT NULL,
    operation VARCHAR(4) NOT NULL,
    quantity {quantity} NOT NULL,
    properties {json},
    source VARCHAR(16) NOT NULL,
    received_at_us BIGINT NOT NULL,
    payload_hash VARCHAR(32) NOT NULL,
    PRIMARY KEY (organization_id, seq),
    UNIQUE (organization_id, idempotency_key, revision)
)
"""

Row = tuple[Any, ...]


def rows_of(
    streams: Sequence[Stream], batch_size: int, meter_ids: dict[str, str], first_seq: int
) -> list[list[Row]]:
    """The ledger rows of these streams, cut into batches as the clients send them."""
    org = "org_" + "f" * 26
    batches: list[list[Row]] = []
    seq = first_seq
    for stream in streams:
        for start in range(0, stream.count, batch_size):
            batch: list[Row] = []
            for n in range(start, min(start + batch_size, stream.count)):
                raw = stream.event(n)
                ts_us = stream.first_us + n * stream.step_us
                batch.append(
                    (
                        org, seq, raw["idempotency_key"], 0, "event", raw["subscription_id"],
                        meter_ids[raw["meter"]], ts_us, raw.get("operation", "add"),
                        Decimal(raw["quantity"]), json.dumps(raw["properties"]), "native",
                        ts_us, f"{seq:032x}",
                    )
                )  # fmt: skip
                seq += 1
            batches.append(batch)
    return batches


def create_table(dialect: str, url: str) -> None:
    if dialect == "sqlite":
        with sqlite3.connect(_sqlite_path(url)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_DDL.format(quantity="VARCHAR(64)", json="JSON"))
        return
    with psycopg.connect(libpq_url(url)) as pg:
        pg.execute(_DDL.format(quantity="NUMERIC", json="JSONB"))


def count_rows(dialect: str, url: str) -> int:
    if dialect == "sqlite":
        conn = sqlite3.connect(_sqlite_path(url))
        try:
            (count,) = conn.execute("SELECT count(*) FROM floor_events").fetchone()
        finally:
            conn.close()
        return int(count)
    with psycopg.connect(libpq_url(url)) as pg:
        row = pg.execute("SELECT count(*) FROM floor_events").fetchone()
        assert row is not None
        return int(row[0])


def write(dialect: str, url: str, batches: Sequence[Sequence[Row]], *, replay: bool) -> float:
    """Seconds to write the batches, one durable transaction each."""
    if dialect == "sqlite":
        return _sqlite(_sqlite_path(url), batches, replay=replay)
    return _postgres(url, batches, replay=replay)


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _sqlite(path: str, batches: Sequence[Sequence[Row]], *, replay: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        verb = "INSERT OR IGNORE" if replay else "INSERT"
        statement = (
            f"{verb} INTO floor_events ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})"
        )
        # The product stores quantities as exact text on SQLite.
        text_batches = [[(*r[:9], format(r[9], "f"), *r[10:]) for r in b] for b in batches]
        started = time.perf_counter()
        for batch in text_batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(statement, batch)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def _postgres(url: str, batches: Sequence[Sequence[Row]], *, replay: bool) -> float:
    columns = ", ".join(COLUMNS)
    with psycopg.connect(libpq_url(url)) as conn:
        started = time.perf_counter()
        for batch in batches:
            with conn.cursor() as cur:
                target = "floor_events"
                if replay:
                    # COPY cannot skip conflicts: stage the batch, then insert what is new.
                    cur.execute(
                        "CREATE TEMP TABLE floor_incoming (LIKE floor_events) ON COMMIT DROP"
                    )
                    target = "floor_incoming"
                with cur.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                if replay:
                    cur.execute(
                        f"INSERT INTO floor_events ({columns}) SELECT {columns} "
                        "FROM floor_incoming ON CONFLICT DO NOTHING"
                    )
            conn.commit()
        return time.perf_counter() - started
