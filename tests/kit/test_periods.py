"""Billing periods: half-open, on a calendar grid from an anchor, clipped to a window."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.kit.periods import (
    Interval,
    Period,
    add_months,
    boundary,
    clipped_period,
    grid_period,
    periods_between,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


MICROSECOND = timedelta(microseconds=1)


# --- worked examples -------------------------------------------------------------------------


def test_period_is_half_open() -> None:
    period = grid_period(utc(2025, 1, 1), Interval.MONTH, utc(2025, 1, 15))
    assert period == Period(utc(2025, 1, 1), utc(2025, 2, 1))
    assert utc(2025, 1, 1) in period
    assert utc(2025, 2, 1) - MICROSECOND in period
    assert utc(2025, 2, 1) not in period
    # The end instant belongs to the next period.
    assert grid_period(utc(2025, 1, 1), Interval.MONTH, utc(2025, 2, 1)).start == utc(2025, 2, 1)


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        # A leap year: Jan 31 -> Feb 29 -> Mar 31 -> Apr 30 -> May 31.
        (2024, [(1, 31), (2, 29), (3, 31), (4, 30), (5, 31)]),
        (2025, [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31)]),
    ],
)
def test_month_ends_follow_the_anchor_not_the_previous_boundary(
    year: int, expected: list[tuple[int, int]]
) -> None:
    anchor = utc(year, 1, 31, 12, 30)
    boundaries = [boundary(anchor, Interval.MONTH, k) for k in range(5)]
    assert boundaries == [utc(year, m, d, 12, 30) for m, d in expected]


def test_month_periods_from_an_anchor_on_the_31st() -> None:
    anchor = utc(2024, 1, 31)
    assert grid_period(anchor, Interval.MONTH, utc(2024, 2, 15)) == Period(
        utc(2024, 1, 31), utc(2024, 2, 29)
    )
    assert grid_period(anchor, Interval.MONTH, utc(2024, 3, 1)) == Period(
        utc(2024, 2, 29), utc(2024, 3, 31)
    )
    assert grid_period(anchor, Interval.MONTH, utc(2024, 4, 1)) == Period(
        utc(2024, 3, 31), utc(2024, 4, 30)
    )
    # Before the anchor, the same grid runs backwards.
    assert grid_period(anchor, Interval.MONTH, utc(2023, 12, 31)) == Period(
        utc(2023, 12, 31), utc(2024, 1, 31)
    )
    assert grid_period(anchor, Interval.MONTH, utc(2023, 12, 30)) == Period(
        utc(2023, 11, 30), utc(2023, 12, 31)
    )


def test_quarter_and_year() -> None:
    assert grid_period(utc(2024, 11, 30), Interval.QUARTER, utc(2025, 3, 1)) == Period(
        utc(2025, 2, 28), utc(2025, 5, 30)
    )
    assert grid_period(utc(2025, 1, 1), Interval.QUARTER, utc(2025, 6, 30, 23)) == Period(
        utc(2025, 4, 1), utc(2025, 7, 1)
    )
    # A yearly anchor on Feb 29 lands on Feb 28 in common years and on Feb 29 again in leap years.
    anchor = utc(2024, 2, 29)
    assert [boundary(anchor, Interval.YEAR, k) for k in range(5)] == [
        utc(2024, 2, 29),
        utc(2025, 2, 28),
        utc(2026, 2, 28),
        utc(2027, 2, 28),
        utc(2028, 2, 29),
    ]
    assert grid_period(anchor, Interval.YEAR, utc(2025, 2, 28)) == Period(
        utc(2025, 2, 28), utc(2026, 2, 28)
    )


def test_anchor_after_starts_at_gives_a_short_first_period() -> None:
    starts_at = utc(2025, 1, 10)
    anchor = utc(2025, 1, 15)
    periods = periods_between(anchor, Interval.MONTH, starts_at, None, utc(2025, 3, 1))
    assert periods == [
        Period(utc(2025, 1, 10), utc(2025, 1, 15)),
        Period(utc(2025, 1, 15), utc(2025, 2, 15)),
        Period(utc(2025, 2, 15), utc(2025, 3, 15)),
    ]


def test_anchor_before_starts_at_clips_the_first_period() -> None:
    starts_at = utc(2025, 1, 20)
    anchor = utc(2024, 12, 5)
    periods = periods_between(anchor, Interval.MONTH, starts_at, None, utc(2025, 2, 6))
    assert periods == [
        Period(utc(2025, 1, 20), utc(2025, 2, 5)),
        Period(utc(2025, 2, 5), utc(2025, 3, 5)),
    ]


def test_ends_at_clips_the_last_period() -> None:
    starts_at = utc(2025, 1, 1)
    ends_at = utc(2025, 3, 10)
    periods = periods_between(starts_at, Interval.MONTH, starts_at, ends_at, utc(2030, 1, 1))
    assert periods == [
        Period(utc(2025, 1, 1), utc(2025, 2, 1)),
        Period(utc(2025, 2, 1), utc(2025, 3, 1)),
        Period(utc(2025, 3, 1), utc(2025, 3, 10)),
    ]
    last = clipped_period(starts_at, Interval.MONTH, starts_at, ends_at, utc(2025, 3, 9))
    assert last == Period(utc(2025, 3, 1), utc(2025, 3, 10))


def test_a_window_inside_one_grid_period_is_one_period() -> None:
    anchor = utc(2025, 1, 1)
    periods = periods_between(
        anchor, Interval.YEAR, utc(2025, 3, 3), utc(2025, 4, 4), utc(2026, 1, 1)
    )
    assert periods == [Period(utc(2025, 3, 3), utc(2025, 4, 4))]


def test_an_anchor_with_an_offset_is_read_in_utc_and_a_naive_one_as_utc() -> None:
    # 01:00 on Jan 31 at +02:00 is 23:00 UTC on Jan 30: the grid runs on the 30th, in UTC.
    anchor = datetime(2025, 1, 31, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert grid_period(anchor, Interval.MONTH, utc(2025, 2, 10)) == Period(
        utc(2025, 1, 30, 23), utc(2025, 2, 28, 23)
    )
    naive = datetime(2025, 1, 31)  # noqa: DTZ001 - naive on purpose: it means UTC
    assert grid_period(naive, Interval.MONTH, utc(2025, 2, 10)) == Period(
        utc(2025, 1, 31), utc(2025, 2, 28)
    )


def test_period_seconds() -> None:
    assert Period(utc(2025, 2, 1), utc(2025, 3, 1)).seconds == 28 * 86_400


# --- properties ------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2200, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
intervals = st.sampled_from(list(Interval))


@settings(max_examples=400, deadline=None)
@given(anchor=instants, interval=intervals, instant=instants)
def test_every_instant_lies_in_its_grid_period(
    anchor: datetime, interval: Interval, instant: datetime
) -> None:
    period = grid_period(anchor, interval, instant)
    assert period.start <= instant < period.end
    # The boundaries are on the anchor's grid: the same time of day, and a day no later.
    for edge in (period.start, period.end):
        assert (edge.hour, edge.minute, edge.second, edge.microsecond) == (
            anchor.hour,
            anchor.minute,
            anchor.second,
            anchor.microsecond,
        )
        assert edge.day <= anchor.day
        assert (
            edge.year * 12 + edge.month - anchor.year * 12 - anchor.month
        ) % interval.months == 0


@settings(max_examples=400, deadline=None)
@given(anchor=instants, interval=intervals, instant=instants)
def test_grid_periods_tile_time_without_gap_or_overlap(
    anchor: datetime, interval: Interval, instant: datetime
) -> None:
    period = grid_period(anchor, interval, instant)
    following = grid_period(anchor, interval, period.end)
    preceding = grid_period(anchor, interval, period.start - MICROSECOND)
    assert following.start == period.end
    assert preceding.end == period.start
    assert grid_period(anchor, interval, period.end - MICROSECOND) == period
    assert grid_period(anchor, interval, period.start) == period


@settings(max_examples=200, deadline=None)
@given(
    anchor=instants,
    interval=intervals,
    starts_at=instants,
    length=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=1200)),
    bounded=st.booleans(),
    probes=st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1300))),
)
def test_subscription_periods_cover_the_window_exactly_once(
    anchor: datetime,
    interval: Interval,
    starts_at: datetime,
    length: timedelta,
    bounded: bool,
    probes: list[timedelta],
) -> None:
    ends_at = starts_at + length if bounded else None
    until = starts_at + length
    periods = periods_between(anchor, interval, starts_at, ends_at, until)
    assert periods[0].start == starts_at
    for before, after in itertools.pairwise(periods):
        assert before.end == after.start
    for period in periods:
        assert period.start < period.end
        grid = grid_period(anchor, interval, period.start)
        assert grid.start <= period.start
        assert period.end <= grid.end
    if ends_at is not None:
        assert periods[-1].end == ends_at
    else:
        assert periods[-1].end >= until
    for probe in probes:
        instant = starts_at + probe
        if instant >= until:
            continue
        containing = [p for p in periods if instant in p]
        assert len(containing) == 1
        assert clipped_period(anchor, interval, starts_at, ends_at, instant) == containing[0]


@settings(max_examples=300, deadline=None)
@given(anchor=instants, months=st.integers(-2400, 2400))
def test_add_months_clamps_the_day_and_keeps_the_time(anchor: datetime, months: int) -> None:
    moved = add_months(anchor, months)
    assert (moved.year * 12 + moved.month) - (anchor.year * 12 + anchor.month) == months
    assert moved.day == anchor.day or (
        moved.day < anchor.day and (moved + timedelta(days=1)).day == 1
    )
    assert moved.time() == anchor.time()
    assert moved.tzinfo == anchor.tzinfo
