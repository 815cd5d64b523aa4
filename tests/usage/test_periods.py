"""`usage/periods.py`: the period an instant falls in, remembered across batches."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from meterworks.kit.instants import from_micros, to_micros
from meterworks.kit.periods import Interval
from meterworks.subscriptions.service import Subscription
from meterworks.usage import periods
from meterworks.usage.periods import PeriodFinder


def subscription(sid: str = "sub_1", **changes: object) -> Subscription:
    start = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    made = Subscription(
        id=sid,
        customer_id="cus_1",
        plan_id="pln_1",
        interval=Interval.MONTH,
        currency="USD",
        starts_at=start,
        ends_at=None,
        billing_anchor=start,
        canceled_at=None,
        created_at=start,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def expected(sub: Subscription, ts_us: int) -> tuple[int, int]:
    period = sub.period_at(from_micros(ts_us))
    return to_micros(period.start), to_micros(period.end)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"ends_at": datetime(2026, 5, 2, tzinfo=UTC)},
        {"ends_at": datetime(2026, 4, 15, 9, 30, tzinfo=UTC)},  # on a period boundary
        {"interval": Interval.YEAR},
        {"billing_anchor": datetime(2026, 1, 31, tzinfo=UTC)},
    ],
)
def test_finders_answer_as_the_subscription_does_whatever_they_remember(
    changes: dict[str, object],
) -> None:
    sub = subscription(f"sub_{len(changes)}_{sorted(changes)}", **changes)
    rng = random.Random(7)
    low = to_micros(datetime(2025, 12, 1, tzinfo=UTC))
    high = to_micros(datetime(2027, 3, 1, tzinfo=UTC))
    instants = [rng.randrange(low, high) for _ in range(300)]
    for batch in range(0, 300, 7):  # a new finder per batch, as validation makes them
        finder = PeriodFinder(sub)
        for ts_us in sorted(instants[batch : batch + 7], key=lambda _: rng.random()):
            assert finder.bounds(ts_us) == expected(sub, ts_us)


def test_a_finder_starts_from_the_period_found_before(monkeypatch: pytest.MonkeyPatch) -> None:
    sub = subscription("sub_remembered")
    ts_us = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
    first = PeriodFinder(sub).bounds(ts_us)
    worked_out: list[datetime] = []
    period_at = Subscription.period_at

    def counted(self: Subscription, instant: datetime) -> object:
        worked_out.append(instant)
        return period_at(self, instant)

    monkeypatch.setattr(Subscription, "period_at", counted)
    assert PeriodFinder(sub).bounds(ts_us + 1) == first
    assert worked_out == []
    # A subscription whose end moved is another key: worked out again, and clipped.
    ended = replace(sub, ends_at=datetime(2026, 3, 10, tzinfo=UTC))
    assert PeriodFinder(ended).bounds(ts_us) == (first[0], to_micros(ended.ends_at))  # type: ignore[arg-type]
    assert len(worked_out) == 1


def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(periods, "_LAST_FOUND_LIMIT", 10)
    periods._LAST_FOUND.clear()
    ts_us = to_micros(datetime(2026, 2, 1, tzinfo=UTC) + timedelta(days=3))
    for n in range(25):
        PeriodFinder(subscription(f"sub_bounded_{n}")).bounds(ts_us)
        assert len(periods._LAST_FOUND) <= 10
