"""The aggregation maths, pure: running totals per (subscription, meter, period).

`Rollup` is what one period's row holds. `apply` folds one ledger entry into it (the writer's fast
path, for entries arriving in order); `recompute` rebuilds every period from the ledger alone (the
source of truth, used for out-of-order writes, corrections and `ledger verify`); `quantity` reads
the meter's billed quantity out of a rollup for a period, up to an instant.

Level meters (`max`, `latest`, `prorated`) follow one level per (subscription, meter): `set`
replaces it, `add` moves it by its delta, and it carries over from one period to the next, so a
period without any entry is described by the previous period's closing level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, localcontext
from typing import Any

from meterworks.catalog.meters import Aggregation
from meterworks.kit.decimals import format_decimal
from meterworks.kit.instants import MICROS_PER_DAY

ZERO = Decimal(0)
# Unit-days are a quotient by 86,400,000,000 µs; shown to 12 decimals (far below any price step).
UNIT_DAYS_PLACES = Decimal("1e-12")
# Running totals must stay exact: the default context keeps 28 digits, yet one quantity may carry
# 38 (kit/decimals.py) and an integral of it over microseconds some 60. 100 digits leave room.
EXACT = Context(prec=100)


@dataclass(frozen=True, slots=True)
class Entry:
    """One live ledger entry as the aggregations see it (the highest revision of its key)."""

    ts_us: int
    seq: int  # the ledger sequence of the key's first revision: its place in the order
    operation: str  # add | set
    quantity: Decimal
    value: str | None = None  # the unique_count property value


@dataclass(slots=True)
class Rollup:
    period_start_us: int
    event_count: int = 0
    total: Decimal = ZERO
    opening_level: Decimal = ZERO
    level: Decimal = ZERO
    max_level: Decimal = ZERO
    integral: Decimal = ZERO  # unit·µs from the period start to last_ts_us
    last_ts_us: int = 0
    last_seq: int = 0
    values: dict[str, int] = field(default_factory=dict)  # unique_count: value -> occurrences

    @classmethod
    def opened(cls, period_start_us: int, carried_level: Decimal) -> Rollup:
        return cls(
            period_start_us=period_start_us,
            opening_level=carried_level,
            level=carried_level,
            max_level=carried_level,
            last_ts_us=period_start_us,
        )

    @property
    def distinct_count(self) -> int:
        return sum(1 for n in self.values.values() if n > 0)

    def copy(self) -> Rollup:
        return replace(self, values=dict(self.values))


def apply(rollup: Rollup, entry: Entry, aggregation: Aggregation, sign: int = 1) -> None:
    """Fold `entry` into `rollup` in place.

    Level meters need `entry` to come at or after the rollup's last entry (by ts, then seq);
    the others are order-free, and `sign=-1` takes an entry back out (corrections).
    """
    with localcontext(EXACT):
        fold(rollup, entry, aggregation, sign)


def fold(rollup: Rollup, entry: Entry, aggregation: Aggregation, sign: int = 1) -> None:
    """`apply` for a caller already inside `localcontext(EXACT)` (many entries at a time)."""
    if aggregation.is_level:
        if sign != 1:
            raise ValueError("level rollups are rebuilt, not un-applied")
        fold_level(rollup, entry.ts_us, entry.seq, entry.operation, entry.quantity)
        return
    rollup.event_count += sign
    if entry.operation == "add":
        rollup.total += sign * entry.quantity
    if aggregation is Aggregation.UNIQUE_COUNT and entry.value is not None:
        count = rollup.values.get(entry.value, 0) + sign
        if count > 0:
            rollup.values[entry.value] = count
        else:
            rollup.values.pop(entry.value, None)


def fold_level(rollup: Rollup, ts_us: int, seq: int, operation: str, quantity: Decimal) -> None:
    """`fold` of one entry of a level meter, given by its fields (the writer folds thousands)."""
    if ts_us < rollup.last_ts_us or (ts_us == rollup.last_ts_us and seq < rollup.last_seq):
        raise ValueError("level entries must be applied in order")
    level = rollup.level
    rollup.integral += level * (ts_us - rollup.last_ts_us)
    if operation == "set":
        level = quantity
    else:
        level += quantity
        rollup.total += quantity
    rollup.level = level
    if level > rollup.max_level:
        rollup.max_level = level
    rollup.last_ts_us = ts_us
    rollup.last_seq = seq
    rollup.event_count += 1


def recompute(
    entries: Iterable[Entry],
    aggregation: Aggregation,
    period_start_of: Callable[[int], int],
    carried_level: Decimal = ZERO,
) -> dict[int, Rollup]:
    """Every period's rollup rebuilt from the ledger; periods without entries have none.

    `period_start_of(ts_us)` names the period an instant falls in; `carried_level` is the level
    before the first entry (level meters).
    """
    rollups: dict[int, Rollup] = {}
    level = carried_level
    for entry in sorted(entries, key=lambda e: (e.ts_us, e.seq)):
        start = period_start_of(entry.ts_us)
        rollup = rollups.get(start)
        if rollup is None:
            rollup = opened(start, aggregation, level)
            rollups[start] = rollup
        apply(rollup, entry, aggregation)
        level = rollup.level
    return rollups


def opened(period_start_us: int, aggregation: Aggregation, carried_level: Decimal) -> Rollup:
    """A period's empty rollup; only level meters carry a level and a position in time."""
    if aggregation.is_level:
        return Rollup.opened(period_start_us, carried_level)
    return Rollup(period_start_us=period_start_us)


def quantity(
    rollup: Rollup | None,
    aggregation: Aggregation,
    *,
    period_start_us: int,
    until_us: int,
    carried_level: Decimal = ZERO,
) -> Decimal:
    """The billed quantity of one period, counting up to `until_us` (a running period accrues).

    `rollup` is the period's row, or None when the period had no entry; then level meters use
    `carried_level` (the previous period's closing level) for the whole period.
    """
    if rollup is None:
        rollup = opened(period_start_us, aggregation, carried_level)
    if aggregation is Aggregation.SUM:
        return rollup.total
    if aggregation is Aggregation.COUNT:
        return Decimal(rollup.event_count)
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Decimal(rollup.distinct_count)
    if aggregation is Aggregation.MAX:
        return rollup.max_level
    if aggregation is Aggregation.LATEST:
        return rollup.level
    # prorated: the time integral of the level, in unit-days
    tail = max(0, until_us - rollup.last_ts_us)
    with localcontext(EXACT):
        unit_micros = rollup.integral + rollup.level * tail
        days = unit_micros / MICROS_PER_DAY
        return days.quantize(UNIT_DAYS_PLACES).normalize() if days else ZERO


def to_row(rollup: Rollup) -> dict[str, Any]:
    """The columns of a `usage_rollups` row (without its key columns)."""
    return {
        "period_start_us": rollup.period_start_us,
        "event_count": rollup.event_count,
        "total": rollup.total,
        "opening_level": rollup.opening_level,
        "level": rollup.level,
        "max_level": rollup.max_level,
        "integral": rollup.integral,
        "last_ts_us": rollup.last_ts_us,
        "last_seq": rollup.last_seq,
        "distinct_count": rollup.distinct_count,
    }


def same(a: Rollup, b: Rollup) -> bool:
    """Equal as stored: exact decimals and counts (used by `ledger verify`)."""
    return to_row(a) == to_row(b) and a.values == b.values


def describe(rollup: Rollup) -> str:
    return (
        f"count={rollup.event_count} total={format_decimal(rollup.total)} "
        f"level={format_decimal(rollup.level)} max={format_decimal(rollup.max_level)} "
        f"integral={format_decimal(rollup.integral)} distinct={rollup.distinct_count}"
    )
