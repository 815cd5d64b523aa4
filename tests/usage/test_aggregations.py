"""The aggregation maths against a plain oracle, written independently of the code under test.

The oracle recomputes every period's quantity by brute force from the list of events, in exact
rational arithmetic; the code under test must agree when it folds events one by one (`apply`,
the writer's fast path), when it rebuilds from the ledger (`recompute`, in any arrival order),
and when it reads a period that has no events of its own (the carried level).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.catalog.meters import Aggregation
from meterworks.kit.instants import MICROS_PER_DAY
from meterworks.usage.aggregations import (
    Entry,
    Rollup,
    apply,
    opened,
    quantity,
    recompute,
    same,
    to_row,
)

D = Decimal
HALF_UNIT_DAY_STEP = Fraction(1, 2 * 10**12)  # the unit-day quantity is shown to 12 decimals


@dataclass(frozen=True)
class Event:
    ts_us: int
    seq: int
    operation: str
    quantity: Decimal
    value: str | None

    def entry(self) -> Entry:
        return Entry(self.ts_us, self.seq, self.operation, self.quantity, self.value)


# --- the oracle: brute force, exact, one period at a time ------------------------------------


def level_timeline(events: list[Event]) -> list[tuple[int, Fraction]]:
    """(instant, level from then on), in ledger order: set replaces, add moves."""
    level = Fraction(0)
    timeline = []
    for e in sorted(events, key=lambda e: (e.ts_us, e.seq)):
        level = Fraction(e.quantity) if e.operation == "set" else level + Fraction(e.quantity)
        timeline.append((e.ts_us, level))
    return timeline


def level_at(timeline: list[tuple[int, Fraction]], instant: int, *, inclusive: bool) -> Fraction:
    level = Fraction(0)
    for ts, after in timeline:
        if ts < instant or (inclusive and ts == instant):
            level = after
    return level


def oracle(
    aggregation: Aggregation, events: list[Event], start: int, end: int, until: int
) -> Fraction:
    inside = [e for e in events if start <= e.ts_us < end]
    if aggregation is Aggregation.SUM:
        return sum((Fraction(e.quantity) for e in inside if e.operation == "add"), Fraction(0))
    if aggregation is Aggregation.COUNT:
        return Fraction(len(inside))
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Fraction(len({e.value for e in inside if e.value is not None}))
    timeline = level_timeline(events)
    if aggregation is Aggregation.LATEST:
        return level_at(timeline, end, inclusive=False)
    if aggregation is Aggregation.MAX:
        reached = [level_at(timeline, start, inclusive=False)]
        reached += [after for ts, after in timeline if start <= ts < end]
        return max(reached)
    # prorated: integrate the level, microsecond by microsecond in spirit, segment by segment
    cuts = sorted({start, until, *(ts for ts, _ in timeline if start <= ts < until)})
    integral = Fraction(0)
    for left, right in itertools.pairwise(cuts):
        integral += level_at(timeline, left, inclusive=True) * (right - left)
    return integral / MICROS_PER_DAY


def agrees(aggregation: Aggregation, computed: Decimal, expected: Fraction) -> bool:
    if aggregation is Aggregation.PRORATED:
        return abs(Fraction(computed) - expected) <= HALF_UNIT_DAY_STEP
    return Fraction(computed) == expected


# --- the code under test, driven as the writer and the reader drive it -----------------------


def fold_in_order(
    aggregation: Aggregation, events: list[Event], period_start_of: Callable[[int], int]
) -> dict[int, Rollup]:
    """The writer's fast path: each entry applied to its period's row, opened with the level
    carried from the previous row."""
    rollups: dict[int, Rollup] = {}
    current: Rollup | None = None
    for e in sorted(events, key=lambda e: (e.ts_us, e.seq)):
        start = period_start_of(e.ts_us)
        rollup = rollups.get(start)
        if rollup is None:
            rollup = rollups[start] = opened(start, aggregation, current.level if current else D(0))
        apply(rollup, e.entry(), aggregation)
        current = rollup
    return rollups


def read(aggregation: Aggregation, rollups: dict[int, Rollup], start: int, until: int) -> Decimal:
    """The reader: the period's row, or the level carried from the latest earlier row."""
    earlier = [s for s in rollups if s < start]
    carried = rollups[max(earlier)].level if earlier else D(0)
    return quantity(
        rollups.get(start),
        aggregation,
        period_start_us=start,
        until_us=until,
        carried_level=carried,
    )


# --- strategies ------------------------------------------------------------------------------

# Up to 20 integer digits and 18 decimals: the most a quantity may carry (kit/decimals.py).
quantities = st.one_of(
    st.integers(0, 1000).map(D),
    st.builds(
        lambda units, places: D(f"{units}e-{places}"), st.integers(0, 10**12), st.integers(0, 18)
    ),
    st.builds(lambda units: D(f"{units}e-18"), st.integers(0, 10**38 - 1)),
)
signed_quantities = st.tuples(quantities, st.booleans()).map(lambda q: -q[0] if q[1] else q[0])


@st.composite
def histories(draw: st.DrawFn, aggregation: Aggregation) -> tuple[list[Event], int, int]:
    """Events over a few periods of one random length, in arrival order (seq)."""
    period_us = draw(st.integers(1, 40)) * MICROS_PER_DAY // draw(st.sampled_from([1, 4, 86400]))
    periods = draw(st.integers(1, 5))
    n = draw(st.integers(0, 25))
    events = []
    for seq in range(1, n + 1):
        ts = draw(st.integers(0, periods * period_us - 1))
        if aggregation.is_level:
            operation = draw(st.sampled_from(["add", "set"]))
            amount = draw(quantities if operation == "set" else signed_quantities)
        else:
            operation = "add"
            amount = draw(quantities)
        value = draw(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])))
        events.append(Event(ts, seq, operation, amount, value))
    # Many events share an instant: the ledger order decides between them.
    pin = draw(st.booleans())
    if events and pin:
        pinned = events[0].ts_us
        events = [Event(pinned, e.seq, e.operation, e.quantity, e.value) if i % 2 else e
                  for i, e in enumerate(events)]  # fmt: skip
    return events, period_us, periods


aggregations = st.sampled_from(list(Aggregation))


@settings(max_examples=250, deadline=None)
@given(data=st.data(), aggregation=aggregations)
def test_fold_recompute_and_oracle_agree(data: st.DataObject, aggregation: Aggregation) -> None:
    events, period_us, periods = data.draw(histories(aggregation))

    def period_start_of(ts: int) -> int:
        return ts - ts % period_us

    folded = fold_in_order(aggregation, events, period_start_of)
    arrival = list(events)
    random.Random(data.draw(st.integers(0, 2**32))).shuffle(arrival)
    rebuilt = recompute([e.entry() for e in arrival], aggregation, period_start_of)

    assert set(folded) == set(rebuilt)
    for start in folded:
        assert same(folded[start], rebuilt[start]), (folded[start], rebuilt[start])
    for k in range(periods):
        start, end = k * period_us, (k + 1) * period_us
        inside = [e.ts_us for e in events if start <= e.ts_us < end]
        # Read the period closed, and running: up to an instant at or after its last event.
        running = data.draw(st.integers(max(inside, default=start), end), label="until")
        for until in (end, running):
            expected = oracle(aggregation, events, start, end, until)
            got = read(aggregation, folded, start, until)
            assert agrees(aggregation, got, expected), (k, until, got, expected)
            assert read(aggregation, rebuilt, start, until) == got


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    aggregation=st.sampled_from([Aggregation.SUM, Aggregation.COUNT, Aggregation.UNIQUE_COUNT]),
)
def test_order_free_aggregations_fold_in_any_order_and_undo(
    data: st.DataObject, aggregation: Aggregation
) -> None:
    events, _, _ = data.draw(histories(aggregation))
    in_order = opened(0, aggregation, D(0))
    for e in sorted(events, key=lambda e: e.seq):
        apply(in_order, e.entry(), aggregation)
    shuffled = data.draw(st.permutations(events))
    any_order = opened(0, aggregation, D(0))
    for e in shuffled:
        apply(any_order, e.entry(), aggregation)
    assert same(in_order, any_order)
    # Taking an entry back out (a void) leaves what the others alone give.
    if events:
        victim = data.draw(st.sampled_from(events))
        apply(any_order, victim.entry(), aggregation, sign=-1)
        without = opened(0, aggregation, D(0))
        for e in events:
            if e is not victim:
                apply(without, e.entry(), aggregation)
        assert same(any_order, without)


def test_the_seed_gauge_example_is_113_unit_days() -> None:
    """Salesbricks' example: 3 for 6 days, 4 for 8, 8 for 6, 5 for 3 → 113 unit-days."""
    day = MICROS_PER_DAY
    events = [
        Event(0, 1, "set", D(3), None),
        Event(6 * day, 2, "set", D(4), None),
        Event(14 * day, 3, "set", D(8), None),
        Event(20 * day, 4, "set", D(5), None),
    ]
    rollups = recompute([e.entry() for e in events], Aggregation.PRORATED, lambda ts: 0)
    assert quantity(rollups[0], Aggregation.PRORATED, period_start_us=0, until_us=23 * day) == D(
        113
    )
    # The level carries over: a next period without events bills 5 a day.
    assert quantity(
        None, Aggregation.PRORATED, period_start_us=23 * day, until_us=53 * day,
        carried_level=rollups[0].level,
    ) == D(150)  # fmt: skip


def test_prorated_counts_partial_days_by_the_second() -> None:
    day = MICROS_PER_DAY
    rollups = recompute(
        [Entry(0, 1, "set", D(2), None), Entry(day // 2, 2, "set", D(1), None)],
        Aggregation.PRORATED,
        lambda ts: 0,
    )
    assert quantity(rollups[0], Aggregation.PRORATED, period_start_us=0, until_us=day) == D("1.5")
    # A third of a day: shown to 12 decimals.
    assert quantity(
        rollups[0], Aggregation.PRORATED, period_start_us=0, until_us=day // 2 + day // 3
    ) == D("1.333333333333")


def test_level_rollups_refuse_out_of_order_and_undo() -> None:
    rollup = opened(0, Aggregation.MAX, D(0))
    apply(rollup, Entry(10, 2, "set", D(1), None), Aggregation.MAX)
    for entry, sign in (
        (Entry(5, 3, "set", D(1), None), 1),  # earlier instant
        (Entry(10, 1, "set", D(1), None), 1),  # same instant, earlier in the ledger
        (Entry(20, 4, "set", D(1), None), -1),  # taking an entry back out
    ):
        with pytest.raises(ValueError, match="level"):
            apply(rollup, entry, Aggregation.MAX, sign=sign)


def test_a_saved_rollup_names_every_column_of_its_table() -> None:
    # save_rollups hands the driver plain tuples in this order: a column added to the table
    # must be added there too, or it would never be written.
    from meterworks.db import tables as t
    from meterworks.usage import ledger

    assert [*ledger._ROLLUP_KEY, *ledger._ROLLUP_VALUES] == [c.name for c in t.usage_rollups.c]
    assert [
        name for name in to_row(Rollup(0)) if name != "period_start_us"
    ] == ledger._ROLLUP_VALUES


def test_a_loaded_rollup_takes_its_fields_from_their_columns() -> None:
    # Rollups are read from whole rows by position: the columns ROLLUP_FIELDS picks out must
    # be the Rollup's stored fields, in order.
    from dataclasses import fields

    from meterworks.db import tables as t
    from meterworks.usage import ledger

    stored = [f.name for f in fields(Rollup) if f.name != "values"]
    columns = [c.name for c in t.usage_rollups.c]
    assert columns[ledger.ROLLUP_FIELDS] == stored
    row = tuple(f"value of {name}" for name in columns)
    loaded = ledger._rollup_from_row(row)  # type: ignore[arg-type]
    assert all(getattr(loaded, name) == f"value of {name}" for name in stored)
