"""Ledger writes and rollup maintenance, inside the caller's transaction.

Everything here runs in the writer's unit of work, after `lock_sequence` has taken the
organization's sequence row: that lock is what makes dedupe-then-insert safe across processes.
Only the staging of a large group's rows (`stage`, `sent_before`, `unstage`; SQLite) runs
before or after it, on the writer's connection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, text
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from meterworks.catalog.meters import Aggregation, Meter
from meterworks.db import bulk
from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore, json_array, one_of, text_array
from meterworks.db.engine import dumps as stored_json
from meterworks.errors import Conflict, MeterworksError
from meterworks.subscriptions.service import Subscription
from meterworks.usage.aggregations import (
    EXACT,
    ZERO,
    Entry,
    Rollup,
    fold_level,
    opened,
    recompute,
)
from meterworks.usage.ingest import NewEvent, counted_value
from meterworks.usage.periods import PeriodFinder

# Bound on bound parameters per IN list (SQLite allows 32,766 in all).
CHUNK = 2_000


_EVENT_COLUMNS = [
    "organization_id", "seq", "idempotency_key", "revision", "kind", "subscription_id",
    "meter_id", "ts_us", "operation", "quantity", "properties", "source", "received_at_us",
    "payload_hash",
]  # fmt: skip


# Every column of a ledger row is handed to the driver as it is: the properties as their JSON
# text and the quantity as its exact text, both made while the batch was validated.
_READY = frozenset(_EVENT_COLUMNS)


def _properties_text(event: NewEvent) -> str | None:
    if event.properties_json is not None or event.properties is None:
        return event.properties_json
    return stored_json(event.properties)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    accepted: int = 0
    duplicates: int = 0
    error: MeterworksError | None = None


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Built once, like the other statements of every commit: building one costs about as much as
# running it.
_NEXT_SEQ = (
    select(t.ledger_sequences.c.next_seq)
    .where(t.ledger_sequences.c.organization_id == bindparam("organization_id"))
    .with_for_update()
)
_ADVANCE = (
    t.ledger_sequences.update()
    .where(t.ledger_sequences.c.organization_id == bindparam("organization"))
    .values(next_seq=bindparam("next"))
)


def lock_sequence(conn: Connection, organization_id: str) -> int:
    """Lock the organization's ledger sequence row and return the next free sequence number."""
    value = conn.execute(_NEXT_SEQ, {"organization_id": organization_id}).scalar()
    if value is None:
        conn.execute(
            insert_ignore(conn, t.ledger_sequences).values(
                organization_id=organization_id, next_seq=1
            )
        )
        value = conn.execute(_NEXT_SEQ, {"organization_id": organization_id}).scalar()
    assert value is not None
    return int(value)


def advance_sequence(conn: Connection, organization_id: str, next_seq: int) -> None:
    conn.execute(_ADVANCE, {"organization": organization_id, "next": next_seq})


def next_sequence(conn: Connection, organization_id: str) -> int:
    """The next free sequence number as committed, without locking: every entry below it is
    visible to this connection's later reads."""
    c = t.ledger_sequences.c
    value = conn.execute(select(c.next_seq).where(c.organization_id == organization_id)).scalar()
    return 1 if value is None else int(value)


def touched_between(
    conn: Connection, organization_id: str, since: int, until: int
) -> dict[str, int]:
    """Per subscription with ledger entries (events, amendments, voids) numbered since..until-1,
    the earliest instant they change: every change of usage and running totals in that span is
    one of them, and changes nothing before that instant."""
    if until <= since:
        return {}
    e = t.usage_events.c
    return {
        row.subscription_id: row.earliest
        for row in conn.execute(
            select(e.subscription_id, func.min(e.ts_us).label("earliest"))
            .where(e.organization_id == organization_id, e.seq >= since, e.seq < until)
            .group_by(e.subscription_id)
        )
    }


# One probe of the unique index per key, whatever the planner knows of the table: a join or
# semi-join against the key array may be planned as a scan of the organization's whole ledger
# (a fresh table has no statistics; a generic plan does not know the array's length). Only the
# keys found come back: a batch of fresh keys, the usual case, is answered with no rows.
_PROBE_KEYS = text(
    "SELECT k.key, e.payload_hash FROM unnest(CAST(:keys AS varchar[])) AS k(key)"
    " CROSS JOIN LATERAL (SELECT e.payload_hash FROM usage_events AS e"
    " WHERE e.organization_id = :organization_id AND e.idempotency_key = k.key"
    # LIMIT keeps the subquery apart: pulled up into a join, it may be planned as one scan.
    " AND e.revision = 0 LIMIT 1) AS e"
)


_PROBE_KEYS_SQLITE = (
    "SELECT e.idempotency_key, e.payload_hash FROM json_each(?2) AS k"
    " CROSS JOIN usage_events AS e"  # CROSS: the keys drive, one index probe each
    " WHERE e.organization_id = ?1 AND e.idempotency_key = k.value AND e.revision = 0"
)


def known_hashes(conn: Connection, organization_id: str, keys: list[str]) -> dict[str, str]:
    """The payload hash of each of these keys' original event, for the keys already used."""
    known: dict[str, str] = {}
    if conn.dialect.name == "postgresql":
        for part in _chunks(keys, 10_000):
            # Fetched at once: row by row costs the driver more per row.
            rows = conn.execute(
                _PROBE_KEYS, {"organization_id": organization_id, "keys": text_array(part)}
            ).all()
            known.update((key, hashed) for key, hashed in rows)
        return known
    # SQLite: the keys go in as one JSON array, each probing the unique index.
    for part in _chunks(keys, 10_000):
        for key, hashed in conn.exec_driver_sql(
            _PROBE_KEYS_SQLITE, (organization_id, json_array(part))
        ):
            known[key] = hashed
    return known


# --- staged rows (SQLite) -------------------------------------------------------------------
#
# A large group's rows are handed to SQLite before the writer takes the write turn, into a
# temporary table of the writer's own connection (no lock of the database file is taken for
# it), and copied into the ledger inside the turn by one INSERT ... SELECT: the rows' binding,
# about a third of an executemany's time, is then paid outside the one serial part of
# ingestion, and the copy releases the interpreter lock once, not once a row.

_CREATE_STAGED = (
    "CREATE TEMP TABLE IF NOT EXISTS staged_events (ord INTEGER PRIMARY KEY, idempotency_key,"
    " subscription_id, meter_id, ts_us, operation, quantity, properties, source, payload_hash)"
)
_STAGE = "INSERT INTO temp.staged_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UNSTAGE = "DELETE FROM temp.staged_events"
# Staged rows `ord` from ?3 through ?5 take the sequence numbers from ?2 on, in `ord` order.
_FROM_STAGED = (
    f"INSERT INTO usage_events ({', '.join(_EVENT_COLUMNS)})"
    " SELECT ?1, ?2 + ord - ?3, idempotency_key, 0, 'event', subscription_id, meter_id, ts_us,"
    " operation, quantity, properties, source, ?4, payload_hash"
    " FROM temp.staged_events WHERE ord >= ?3 AND ord <= ?5 ORDER BY ord"
)
# A write of this many keys or more is made without looking them up first (`append`). On
# PostgreSQL, in-process, batches of 5,000 new keys took 8.1–13.2 µs an event so, against
# 10.3–16.3 with the look-up. On SQLite the look-up and the sorting out around it took 1.4–1.8
# µs an event of the write turn, and 0.7–0.9 without it (batched ingestion's benchmark).
UNPROBED_FROM = 100
# Past this many runs of staged rows (duplicates between them), the rows go the plain way.
_MOST_RUNS = 32


def stage(conn: Connection, batches: Sequence[Sequence[NewEvent]], *, after: int = 0) -> list[int]:
    """Hand these batches' rows to SQLite on `conn`, outside any transaction of it (the writer
    calls this before it waits for the write turn); the place (`ord`) of each batch's first
    row, for `append`. The rows stay until `unstage`, or the next `stage` on `conn` that is
    not given `after`: the number of rows staged already, which these are to follow."""
    driver = conn.connection.driver_connection
    assert driver is not None
    rows: list[tuple[Any, ...]] = []
    starts: list[int] = []
    for batch in batches:
        start = after + len(rows)
        starts.append(start)
        rows.extend(
            (
                start + index, e.idempotency_key, e.subscription.id, e.meter.id, e.ts_us,
                e.operation, e.quantity_text, _properties_text(e), e.source, e.payload_hash,
            )
            for index, e in enumerate(batch)
        )  # fmt: skip
    driver.execute(_CREATE_STAGED)
    # One transaction of the connection's temporary database: row by row, each insert would be
    # a transaction of its own.
    driver.execute("BEGIN")
    try:
        if not after:
            driver.execute(_UNSTAGE)
        driver.executemany(_STAGE, rows)
    except BaseException:
        driver.execute("ROLLBACK")
        raise
    driver.execute("COMMIT")
    return starts


def sent_before(
    conn: Connection, organization_id: str, batches: Sequence[Sequence[NewEvent]]
) -> list[BatchOutcome | bool]:
    """For each batch, whether the key of its first event is in the ledger already (a batch
    sent again, a client's retry, has nothing to stage); for such a batch whose answer the
    ledger settles already, that answer instead, as `append` would give it.

    A key in the ledger stays there for good, with the payload it was first written with: a
    batch whose every key is there (duplicates), or one of them with another payload (refused
    for a conflict), is answered so whenever it is written, and needs no write."""
    firsts = known_hashes(conn, organization_id, [batch[0].idempotency_key for batch in batches])
    again = [batch for batch in batches if batch[0].idempotency_key in firsts]
    known = known_hashes(conn, organization_id, list({e.idempotency_key for b in again for e in b}))
    answers: list[BatchOutcome | bool] = []
    for batch in batches:
        if batch[0].idempotency_key not in firsts:
            answers.append(False)
            continue
        sorted_out = _sort_out(batch, known)
        if sorted_out.conflicts:
            answers.append(_refused(sorted_out.conflicts))
        elif sorted_out.new:
            answers.append(True)
        else:
            answers.append(BatchOutcome(duplicates=sorted_out.duplicates))
    return answers


def unstage(conn: Connection) -> None:
    """Drop the rows staged on `conn` (after its transaction, outside the write turn)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(_UNSTAGE)


def append(
    conn: Connection,
    organization_id: str,
    batches: Sequence[Sequence[NewEvent]],
    received_at_us: int,
    staged: Sequence[int | None] | None = None,
    *,
    next_seq: int | None = None,
) -> list[BatchOutcome]:
    """Append the batches of one organization; a batch with a key conflict writes nothing.

    A key already in the ledger with the same payload is a duplicate (counted once, ever);
    with a different payload it is a conflict that refuses that batch whole. `staged` gives,
    batch by batch, where `stage` put its rows on `conn` (None for a batch not staged); where
    every batch with rows to write was, the ledger's rows are copied from there.

    A write of `UNPROBED_FROM` keys or more is made without looking the keys up; where the
    ledger holds one of them, it is undone and made again with them looked up.

    `next_seq`, where given, is what `lock_sequence` returned earlier in this transaction (the
    row is held already); otherwise the row is locked here.
    """
    if next_seq is None:
        next_seq = lock_sequence(conn, organization_id)
    keys = list({e.idempotency_key for batch in batches for e in batch})
    if len(keys) >= UNPROBED_FROM:
        # No key twice among the batches: as the ledger holds none of them, every event is new.
        distinct = len(keys) == sum(map(len, batches))
        # Written as if every key were new, without looking them up: the ledger's unique index
        # refuses a key it holds already, and then this write is undone and made again with
        # the keys looked up. A batch's keys are new but for a retry, and a batch sent whole
        # again is answered before its write (`sent_before`).
        savepoint = conn.begin_nested()
        try:
            outcomes = _append_knowing(
                conn, organization_id, batches, received_at_us, staged, next_seq, {}, distinct
            )
        except IntegrityError:
            savepoint.rollback()
        else:
            savepoint.commit()
            return outcomes
    known = known_hashes(conn, organization_id, keys)
    return _append_knowing(conn, organization_id, batches, received_at_us, staged, next_seq, known)


def _append_knowing(
    conn: Connection,
    organization_id: str,
    batches: Sequence[Sequence[NewEvent]],
    received_at_us: int,
    staged: Sequence[int | None] | None,
    next_seq: int,
    known: dict[str, str],
    all_new: bool = False,
) -> list[BatchOutcome]:
    """`append` once the sequence row is held, given the payload hash of each key of the
    batches that the ledger holds (`known_hashes`); `all_new` where every event is known to be
    new (no key in the ledger, none twice), so none is looked at one by one."""
    outcomes: list[BatchOutcome] = []
    fresh: list[tuple[NewEvent, int]] = []
    # (first ord, last ord, first seq) of each run of staged rows to copy, while all are staged.
    runs: list[list[int]] | None = None if staged is None else []
    for position, batch in enumerate(batches):
        if all_new:
            sorted_out = _SortedOut(list(batch), list(range(len(batch))), 0, [])
        else:
            sorted_out = _sort_out(batch, known)
            if sorted_out.conflicts:
                outcomes.append(_refused(sorted_out.conflicts))
                continue
            known.update((e.idempotency_key, e.payload_hash) for e in sorted_out.new)
        new = sorted_out.new
        if runs is not None and new:
            start = staged[position]  # type: ignore[index]
            if start is None:  # rows to write that were not staged: all go the plain way
                runs = None
            else:
                _add_runs(runs, start, sorted_out.places, next_seq)
        fresh.extend(zip(new, range(next_seq, next_seq + len(new)), strict=True))
        next_seq += len(new)
        outcomes.append(BatchOutcome(accepted=len(new), duplicates=sorted_out.duplicates))
    if fresh and runs is not None and len(runs) <= _MOST_RUNS:
        for first, last, seq in runs:
            conn.exec_driver_sql(_FROM_STAGED, (organization_id, seq, first, received_at_us, last))
        advance_sequence(conn, organization_id, next_seq)
        update_rollups(conn, organization_id, fresh)
    elif fresh:
        bulk.insert(
            conn,
            t.usage_events,
            _EVENT_COLUMNS,
            [
                (
                    organization_id, seq, e.idempotency_key, 0, "event", e.subscription.id,
                    e.meter.id, e.ts_us, e.operation, e.quantity_text, _properties_text(e),
                    e.source, received_at_us, e.payload_hash,
                )
                for e, seq in fresh
            ],
            ready=_READY,
        )  # fmt: skip
        advance_sequence(conn, organization_id, next_seq)
        update_rollups(conn, organization_id, fresh)
    return outcomes


@dataclass(slots=True)
class _SortedOut:
    """A batch's events against the keys known before it: the new ones (the first of each new
    key) and their places in the batch, how many are duplicates, and the conflicts."""

    new: list[NewEvent]
    places: list[int]
    duplicates: int
    conflicts: list[dict[str, Any]]


def _sort_out(batch: Sequence[NewEvent], known: dict[str, str]) -> _SortedOut:
    pending: dict[str, str] = {}
    sorted_out = _SortedOut([], [], 0, [])
    for index, event in enumerate(batch):
        key = event.idempotency_key
        prior = pending.get(key, known.get(key))
        if prior is None:
            pending[key] = event.payload_hash
            sorted_out.new.append(event)
            sorted_out.places.append(index)
        elif prior == event.payload_hash:
            sorted_out.duplicates += 1
        else:
            sorted_out.conflicts.append(
                {
                    "index": index,
                    "field": "idempotency_key",
                    "code": "idempotency_conflict",
                    "message": f"idempotency_key `{key}` was already used for a different event",
                }
            )
    return sorted_out


def _refused(conflicts: list[dict[str, Any]]) -> BatchOutcome:
    return BatchOutcome(
        error=Conflict(
            "an idempotency key was reused with a different payload; nothing was written",
            code="idempotency_conflict",
            details=conflicts,
        )
    )


def _add_runs(runs: list[list[int]], start: int, places: list[int], seq: int) -> None:
    """Add the staged rows at `start + place`, numbered from `seq` on, to `runs`; a row right
    after the last run, in place and number, extends it."""
    if len(places) == places[-1] + 1:  # places 0, 1, ..., n - 1: one span
        spans = [(start, start + len(places) - 1)]
    else:
        spans = []
        for place in places:
            if spans and spans[-1][1] == start + place - 1:
                spans[-1] = (spans[-1][0], start + place)
            else:
                spans.append((start + place, start + place))
    for first, last in spans:
        if runs and runs[-1][1] + 1 == first and runs[-1][2] + (first - runs[-1][0]) == seq:
            runs[-1][1] = last
        else:
            runs.append([first, last, seq])
        seq += last - first + 1


# --- rollups -----------------------------------------------------------------------------------

Pair = tuple[str, str]  # (subscription_id, meter_id)


# Where a Rollup's stored fields sit in a whole row of `usage_rollups`: the columns from
# `period_start_us` to `last_seq`, in the order of its fields (a test holds them so).
ROLLUP_FIELDS = slice(3, 12)


def _rollup_from_row(row: Row[Any]) -> Rollup:
    """A whole `usage_rollups` row as a Rollup. By position: reading nine fields by name cost
    about six times as much, and the billing run reads a few rollups per subscription."""
    return Rollup(*row[ROLLUP_FIELDS])


_ROLLUP_COLUMNS = ", ".join(f"r.{c.name}" for c in t.usage_rollups.c)
# SQLite: the ids go in as JSON arrays, each subscription's probing the primary key. One text
# for any number of ids: an IN list would be rendered, and the statement prepared, anew for
# each length.
_ROLLUPS_FROM_SQLITE = text(
    f"SELECT {_ROLLUP_COLUMNS} FROM json_each(:subscriptions)"
    " AS s CROSS JOIN usage_rollups AS r"  # CROSS: the ids drive
    " WHERE r.organization_id = :organization_id AND r.subscription_id = s.value"
    " AND r.meter_id IN (SELECT value FROM json_each(:meters))"
    " AND r.period_start_us >= :from_us AND r.period_start_us <= :through_us"
).columns(*t.usage_rollups.c)
# PostgreSQL: one probe of the primary key per subscription. With `subscription_id IN (...)` or
# `= ANY(...)` the planner, short of statistics on a growing table, may scan every rollup of the
# organization and filter: a cost that grows with the organization, paid on every write.
_ROLLUPS_FROM_PG = text(
    f"SELECT {_ROLLUP_COLUMNS} FROM unnest(CAST(:subscriptions AS varchar[])) AS s(id)"
    " CROSS JOIN LATERAL (SELECT * FROM usage_rollups AS r"
    " WHERE r.organization_id = :organization_id AND r.subscription_id = s.id"
    " AND r.meter_id = ANY(CAST(:meters AS varchar[]))"
    " AND r.period_start_us >= :from_us AND r.period_start_us <= :through_us"
    # OFFSET 0 keeps the subquery apart: pulled up into a join, it is planned as one scan again.
    " OFFSET 0) AS r"
).columns(*t.usage_rollups.c)
_LAST_PERIOD = 2**63 - 1


def rollup_rows(
    conn: Connection,
    organization_id: str,
    subscriptions: Sequence[str],
    meters: Sequence[str],
    from_us: int,
    through_us: int = _LAST_PERIOD,
) -> Iterable[Row[Any]]:
    """`usage_rollups` rows of these subscriptions and meters, for periods starting from
    `from_us` through `through_us`."""
    pg = conn.dialect.name == "postgresql"
    statement = _ROLLUPS_FROM_PG if pg else _ROLLUPS_FROM_SQLITE
    ids = text_array if pg else json_array
    meter_ids = ids(meters)  # the same for every chunk
    for part in _chunks(subscriptions):
        # Fetched at once: row by row costs the driver more per row.
        yield from conn.execute(
            statement,
            {
                "organization_id": organization_id,
                "subscriptions": ids(part),
                "meters": meter_ids,
                "from_us": from_us,
                "through_us": through_us,
            },
        ).all()


def load_rollups(
    conn: Connection, organization_id: str, pairs: set[Pair], from_start_us: int
) -> dict[Pair, dict[int, Rollup]]:
    """Rollups of these pairs for periods starting at or after `from_start_us`."""
    found: dict[Pair, dict[int, Rollup]] = defaultdict(dict)
    if not pairs:
        return found
    subs = sorted({p[0] for p in pairs})
    meters = sorted({p[1] for p in pairs})
    for row in rollup_rows(conn, organization_id, subs, meters, from_start_us):
        pair = (row.subscription_id, row.meter_id)
        if pair in pairs:
            found[pair][row.period_start_us] = _rollup_from_row(row)
    return found


def load_values(
    conn: Connection, organization_id: str, pair: Pair, rollups: dict[int, Rollup]
) -> None:
    """Fill the distinct-value counts of unique_count rollups."""
    if not rollups:
        return
    v = t.usage_rollup_values.c
    for row in conn.execute(
        select(v.period_start_us, v.value, v.occurrences).where(
            v.organization_id == organization_id,
            v.subscription_id == pair[0],
            v.meter_id == pair[1],
            v.period_start_us.in_(list(rollups)),
        )
    ):
        rollups[row.period_start_us].values[row.value] = row.occurrences


def latest_before(
    conn: Connection, organization_id: str, pairs: set[Pair], before_us: int
) -> dict[Pair, Rollup]:
    """Per pair, its latest rollup for a period starting before `before_us` (carried level)."""
    result: dict[Pair, Rollup] = {}
    if not pairs:
        return result
    r = t.usage_rollups.c
    subs = sorted({p[0] for p in pairs})
    meters = sorted({p[1] for p in pairs})
    for part in _chunks(subs):
        latest = (
            select(
                r.subscription_id.label("sid"),
                r.meter_id.label("mid"),
                func.max(r.period_start_us).label("ps"),
            )
            .where(
                r.organization_id == organization_id,
                one_of(conn, r.subscription_id, part),
                r.meter_id.in_(meters),
                r.period_start_us < before_us,
            )
            .group_by(r.subscription_id, r.meter_id)
            .subquery()
        )
        query = select(t.usage_rollups).join(
            latest,
            and_(
                r.organization_id == organization_id,
                r.subscription_id == latest.c.sid,
                r.meter_id == latest.c.mid,
                r.period_start_us == latest.c.ps,
            ),
        )
        for row in conn.execute(query):
            pair = (row.subscription_id, row.meter_id)
            if pair in pairs:
                result[pair] = _rollup_from_row(row)
    return result


_ROLLUP_KEY = ["organization_id", "subscription_id", "meter_id", "period_start_us"]
_ROLLUP_VALUES = [
    "event_count", "total", "opening_level", "level", "max_level", "integral", "last_ts_us",
    "last_seq", "distinct_count",
]  # fmt: skip
_VALUE_KEY = [*_ROLLUP_KEY, "value"]


def save_rollups(
    conn: Connection, organization_id: str, changed: list[tuple[Pair, Rollup, bool]]
) -> None:
    """Upsert changed rollups; `True` in a tuple means its unique values are to be saved too."""
    if not changed:
        return
    bulk.upsert(
        conn,
        t.usage_rollups,
        _ROLLUP_KEY,
        _ROLLUP_VALUES,
        [
            (
                organization_id, pair[0], pair[1], r.period_start_us, r.event_count, r.total,
                r.opening_level, r.level, r.max_level, r.integral, r.last_ts_us, r.last_seq,
                r.distinct_count,
            )
            for pair, r, _ in changed
        ],
    )  # fmt: skip
    bulk.upsert(
        conn,
        t.usage_rollup_values,
        _VALUE_KEY,
        ["occurrences"],
        [
            (organization_id, pair[0], pair[1], rollup.period_start_us, value, count)
            for pair, rollup, with_values in changed
            if with_values
            for value, count in rollup.values.items()
        ],
    )


def update_rollups(
    conn: Connection, organization_id: str, fresh: Sequence[tuple[NewEvent, int]]
) -> None:
    """Fold newly appended events into the running totals (same transaction as the events).

    Each event's period and unique value were worked out during validation. Order-free meters
    (sum, count, unique_count) are summed per (pair, period) first and added to the stored row
    once; level meters are folded event by event, in order, or rebuilt when an event arrives
    behind the stored position.
    """
    meters: dict[str, Meter] = {}
    subs: dict[str, Subscription] = {}
    # Level meters: per pair, (ts_us, seq, period start, operation, quantity) in any order.
    levels: dict[Pair, list[tuple[int, int, int, str, Decimal]]] = defaultdict(list)
    # (pair, period) -> [event count, total of `add` quantities, {unique value: occurrences}]
    sums: dict[tuple[Pair, int], list[Any]] = {}
    is_level: dict[str, bool] = {}
    min_start = None
    with localcontext(EXACT):
        for event, seq in fresh:
            meter = event.meter
            sub = event.subscription
            pair = (sub.id, meter.id)
            start = event.period_start_us
            if min_start is None or start < min_start:
                min_start = start
            level = is_level.get(meter.id)
            if level is None:
                level = is_level[meter.id] = meter.aggregation.is_level
                meters[meter.id] = meter
            subs[sub.id] = sub
            if level:
                levels[pair].append((event.ts_us, seq, start, event.operation, event.quantity))
                continue
            held = sums.get((pair, start))
            if held is None:
                held = sums[(pair, start)] = [0, ZERO, {}]
            held[0] += 1
            if event.operation == "add":
                held[1] += event.quantity
            value = event.unique_value
            if value is not None:
                held[2][value] = held[2].get(value, 0) + 1
    if min_start is None:
        return

    pairs = set(levels) | {pair for pair, _ in sums}
    loaded = load_rollups(conn, organization_id, pairs, min_start)
    without_rows = {p for p in levels if not loaded.get(p)}
    earlier = latest_before(conn, organization_id, without_rows, min_start)

    changed: list[tuple[Pair, Rollup, bool]] = []
    values_loaded: set[Pair] = set()
    with localcontext(EXACT):
        for (pair, start), (count, total, values) in sums.items():
            aggregation = meters[pair[1]].aggregation
            rows = loaded.setdefault(pair, {})
            with_values = aggregation is Aggregation.UNIQUE_COUNT
            if with_values and pair not in values_loaded:
                load_values(conn, organization_id, pair, rows)
                values_loaded.add(pair)
            rollup = rows.get(start)
            if rollup is None:
                rollup = rows[start] = opened(start, aggregation, ZERO)
            rollup.event_count += count
            rollup.total += total
            for value, occurrences in values.items():
                rollup.values[value] = rollup.values.get(value, 0) + occurrences
            changed.append((pair, rollup, with_values))
        for pair, items in levels.items():
            aggregation = meters[pair[1]].aggregation
            rows = loaded.get(pair, {})
            items.sort()  # by (ts_us, seq): seq is unique, so nothing after it is compared
            frontier = rows[max(rows)] if rows else earlier.get(pair)
            first_ts, first_seq, first_start, _, _ = items[0]
            in_order = frontier is None or (
                first_start >= frontier.period_start_us
                and (first_ts, first_seq) >= (frontier.last_ts_us, frontier.last_seq)
            )
            if not in_order:
                rebuild_pair(conn, organization_id, subs[pair[0]], meters[pair[1]], first_start)
                continue
            # The rollup entries are folded into, and the one before it (a level carries over).
            current = frontier
            current_start = None
            touched: dict[int, Rollup] = {}
            for ts_us, seq, start, operation, quantity in items:
                if start != current_start:
                    rollup = rows.get(start)
                    if rollup is None:
                        carried = current.level if current is not None else ZERO
                        rollup = rows[start] = opened(start, aggregation, carried)
                    touched[start] = current = rollup
                    current_start = start
                assert current is not None
                fold_level(current, ts_us, seq, operation, quantity)
            changed.extend((pair, rollup, False) for rollup in touched.values())
    save_rollups(conn, organization_id, changed)


# --- rebuilding from the ledger ----------------------------------------------------------------


def live_entries(
    conn: Connection,
    organization_id: str,
    subscription_id: str,
    meter: Meter,
    from_us: int = 0,
    until_us: int | None = None,
) -> list[Entry]:
    """The live entries of one (subscription, meter): each key's highest revision, voids dropped.

    An entry keeps the place of its key's first revision in the ledger order.
    """
    e = t.usage_events.c
    query = select(
        e.seq, e.idempotency_key, e.revision, e.kind, e.ts_us, e.operation, e.quantity,
        e.properties,
    ).where(
        e.organization_id == organization_id,
        e.subscription_id == subscription_id,
        e.meter_id == meter.id,
        e.ts_us >= from_us,
    )  # fmt: skip
    if until_us is not None:
        query = query.where(e.ts_us < until_us)
    first_seq: dict[str, int] = {}
    latest: dict[str, Any] = {}
    for row in conn.execute(query):
        key = row.idempotency_key
        if row.revision == 0:
            first_seq[key] = row.seq
        held = latest.get(key)
        if held is None or row.revision > held.revision:
            latest[key] = row
    entries: list[Entry] = []
    for key, row in latest.items():
        if row.kind == "void":
            continue
        value = counted_value(meter, row.properties)
        entries.append(
            Entry(row.ts_us, first_seq.get(key, row.seq), row.operation, row.quantity, value)
        )
    return entries


def recompute_pair(
    conn: Connection,
    organization_id: str,
    subscription: Subscription,
    meter: Meter,
    from_start_us: int,
) -> dict[int, Rollup]:
    """What the rollups of one pair from `from_start_us` on must be, from the ledger alone."""
    carried = ZERO
    if meter.aggregation.is_level and from_start_us > 0:
        pair = (subscription.id, meter.id)
        before = latest_before(conn, organization_id, {pair}, from_start_us).get(pair)
        carried = before.level if before is not None else Decimal(0)
    entries = live_entries(conn, organization_id, subscription.id, meter, from_start_us)
    finder = PeriodFinder(subscription)
    return recompute(entries, meter.aggregation, finder.start_of, carried)


def rebuild_pair(
    conn: Connection,
    organization_id: str,
    subscription: Subscription,
    meter: Meter,
    from_start_us: int,
) -> None:
    """Replace the stored rollups of one pair from `from_start_us` on with recomputed ones."""
    rebuilt = recompute_pair(conn, organization_id, subscription, meter, from_start_us)
    for table in (t.usage_rollup_values, t.usage_rollups):
        conn.execute(
            delete(table).where(
                table.c.organization_id == organization_id,
                table.c.subscription_id == subscription.id,
                table.c.meter_id == meter.id,
                table.c.period_start_us >= from_start_us,
            )
        )
    pair = (subscription.id, meter.id)
    with_values = meter.aggregation is Aggregation.UNIQUE_COUNT
    save_rollups(conn, organization_id, [(pair, r, with_values) for r in rebuilt.values()])
