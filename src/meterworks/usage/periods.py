"""Which period an instant falls in, per subscription, in ledger microseconds (cached)."""

from __future__ import annotations

from meterworks.kit.instants import from_micros, to_micros
from meterworks.subscriptions.service import Subscription


class PeriodFinder:
    """`start_of(ts_us)` for one subscription; remembers the last period found.

    Most instants of a batch fall in the same period, so this is usually two comparisons.
    """

    __slots__ = ("_end", "_start", "subscription")

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self._start = 0
        self._end = -1

    def bounds(self, ts_us: int) -> tuple[int, int]:
        if not (self._start <= ts_us < self._end):
            period = self.subscription.period_at(from_micros(ts_us))
            self._start = to_micros(period.start)
            self._end = to_micros(period.end)
        return self._start, self._end

    def start_of(self, ts_us: int) -> int:
        return self.bounds(ts_us)[0]
