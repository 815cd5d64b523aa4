"""The billing scheduler: invoices produced on time with nobody pressing a button, and one
process billing at a time (a database lock, on either database)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from meterworks.billing.leadership import LeadershipLost, leadership
from meterworks.billing.service import BillingService
from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.kit.clock import FrozenClock
from tests.scenarios.story import Story, at, ok
from tests.support.server import serve
from tests.support.tenancy import new_organization


def test_the_scheduler_bills_on_time_without_anyone_asking(fresh_database: Database) -> None:
    settings = Settings().with_overrides(
        database_url=fresh_database.url,
        scheduler_enabled=True,
        scheduler_interval_seconds=0.1,
    )
    clock = FrozenClock(at("2025-01-01"))
    with (
        serve(settings, fresh_database, clock) as running,
        new_organization(running, "scheduled") as org,
    ):
        story = Story(running, org)
        story.meter("api_calls", "sum", unit="call")
        plan = story.plan(
            [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "1.00"}]
        )
        sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
        story.now("2025-01-15")
        story.send(sub, "api_calls", "2025-01-15", 30, key="a")

        story.now("2025-02-01T00:00")
        deadline = time.monotonic() + 15
        while not story.invoices(sub):
            assert time.monotonic() < deadline, "no draft was produced"
            time.sleep(0.05)
        [draft] = story.invoices(sub)
        assert (draft["status"], draft["total"]) == ("draft", "30.00")

        story.now("2025-02-01T01:00")
        while story.invoice(draft["id"])["status"] != "finalized":
            assert time.monotonic() < deadline, "the draft was not finalized"
            time.sleep(0.05)
        assert story.invoice(draft["id"])["number"] == 1
        assert ok(story.client.post("/v1/billing/run"))["drafted"] == 0


def test_one_process_bills_at_a_time(fresh_database: Database) -> None:
    clock = FrozenClock(at("2025-01-01"))
    with leadership(fresh_database, clock, "first") as first:
        assert first is not None
        with leadership(fresh_database, clock, "second") as second:
            assert second is None
        # Another scheduler's pass does nothing while the first one bills.
        other = BillingService(fresh_database, clock, Settings())
        assert other.tick() is None
        first.renew()
    with leadership(fresh_database, clock, "second") as second:
        assert second is not None
    report = BillingService(fresh_database, clock, Settings()).tick()
    assert report is not None
    assert report.organizations == 0


def test_an_expired_lease_passes_to_another_process(fresh_database: Database) -> None:
    if fresh_database.dialect != "sqlite":
        pytest.skip("PostgreSQL's advisory lock ends with its holder's transaction, not by time")
    clock = FrozenClock(at("2025-01-01"))
    with leadership(fresh_database, clock, "stalled", lease_seconds=60) as stalled:
        assert stalled is not None
        clock.advance(timedelta(seconds=61))
        with leadership(fresh_database, clock, "next", lease_seconds=60) as taken:
            assert taken is not None
            with pytest.raises(LeadershipLost):
                stalled.renew()
