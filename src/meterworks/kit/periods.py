"""Billing periods: half-open `[start, end)` intervals on a calendar grid from an anchor.

Boundaries are `anchor + k × interval` for every integer k, each computed from the anchor itself
(never chained), so an anchor on the 31st gives Jan 31, Feb 28 (29), Mar 31, Apr 30, ...
A subscription's periods are the grid periods clipped to its window `[starts_at, ends_at)`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from meterworks.kit.clock import ensure_utc


class Interval(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def months(self) -> int:
        return _MONTHS[self]


_MONTHS = {Interval.MONTH: 1, Interval.QUARTER: 3, Interval.YEAR: 12}


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole months, its day clamped to the target month's length."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def boundary(anchor: datetime, interval: Interval, k: int) -> datetime:
    return add_months(anchor, k * interval.months)


def grid_index(anchor: datetime, interval: Interval, instant: datetime) -> int:
    """The k such that `boundary(k) <= instant < boundary(k + 1)`."""
    anchor = ensure_utc(anchor)
    instant = ensure_utc(instant)
    months = (instant.year - anchor.year) * 12 + (instant.month - anchor.month)
    k = months // interval.months
    while boundary(anchor, interval, k) > instant:
        k -= 1
    while boundary(anchor, interval, k + 1) <= instant:
        k += 1
    return k


def grid_period(anchor: datetime, interval: Interval, instant: datetime) -> Period:
    anchor = ensure_utc(anchor)
    k = grid_index(anchor, interval, instant)
    return Period(boundary(anchor, interval, k), boundary(anchor, interval, k + 1))


def clipped_period(
    anchor: datetime,
    interval: Interval,
    starts_at: datetime,
    ends_at: datetime | None,
    instant: datetime,
) -> Period:
    """The subscription period containing `instant`, clipped to the subscription's window.

    `instant` is assumed inside the window; callers check that first.
    """
    grid = grid_period(anchor, interval, instant)
    start = max(grid.start, ensure_utc(starts_at))
    end = grid.end if ends_at is None else min(grid.end, ensure_utc(ends_at))
    return Period(start, end)


def periods_between(
    anchor: datetime,
    interval: Interval,
    starts_at: datetime,
    ends_at: datetime | None,
    until: datetime,
) -> list[Period]:
    """Every subscription period that starts before `until`, in order."""
    starts_at = ensure_utc(starts_at)
    periods: list[Period] = []
    cursor = starts_at
    stop = until if ends_at is None else min(ensure_utc(until), ensure_utc(ends_at))
    while cursor < stop:
        period = clipped_period(anchor, interval, starts_at, ends_at, cursor)
        periods.append(period)
        cursor = period.end
    return periods
