"""Which period an instant falls in, per subscription, in ledger microseconds (cached)."""

from __future__ import annotations

from datetime import datetime

from meterworks.kit.instants import from_micros, to_micros
from meterworks.kit.periods import Interval
from meterworks.subscriptions.service import Subscription

# The period last found per subscription, across batches: a subscription's periods follow from
# the fields in the key alone, so a changed subscription is a new key. Single-event calls meet
# a subscription once per batch, where working a period out is most of the lookup. Bounded: it
# is emptied when full.
_Key = tuple[str, datetime, Interval, datetime, datetime | None]
_LAST_FOUND: dict[_Key, tuple[int, int]] = {}
_LAST_FOUND_LIMIT = 65_536


class PeriodFinder:
    """`start_of(ts_us)` for one subscription; remembers the last period found.

    Most instants of a batch fall in the same period, so this is usually two comparisons.
    """

    __slots__ = ("_end", "_key", "_start", "subscription")

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self._key: _Key = (
            subscription.id,
            subscription.billing_anchor,
            subscription.interval,
            subscription.starts_at,
            subscription.ends_at,
        )
        self._start, self._end = _LAST_FOUND.get(self._key, (0, -1))

    def bounds(self, ts_us: int) -> tuple[int, int]:
        if not (self._start <= ts_us < self._end):
            period = self.subscription.period_at(from_micros(ts_us))
            self._start = to_micros(period.start)
            self._end = to_micros(period.end)
            if len(_LAST_FOUND) >= _LAST_FOUND_LIMIT:
                _LAST_FOUND.clear()
            _LAST_FOUND[self._key] = (self._start, self._end)
        return self._start, self._end

    def start_of(self, ts_us: int) -> int:
        return self.bounds(ts_us)[0]
