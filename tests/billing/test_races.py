"""Races: usage written while its period is being finalized, and billing runs side by side."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)


def _subscription(story: Story) -> str:
    story.now("2025-02-01T01:00")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "1"}]
    )
    return story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")


def test_usage_racing_finalization_is_billed_exactly_once(story: Story) -> None:
    sub = _subscription(story)
    senders, per_sender = 4, 60
    started = threading.Barrier(senders + 1)

    def send(worker: int) -> int:
        accepted = 0
        with httpx.Client(
            base_url=story.server.base_url,
            headers={"Authorization": f"Bearer {story.org.token}"},
            timeout=30,
        ) as client:
            started.wait()
            for n in range(per_sender):
                event = {
                    "idempotency_key": f"w{worker}-{n}",
                    "subscription_id": sub,
                    "meter": "api_calls",
                    "timestamp": f"2025-01-{1 + n % 28:02d}T12:00:00Z",
                    "quantity": "1",
                }
                response = client.post("/v1/events", json={"events": [event]})
                accepted += ok(response)["accepted"]
        return accepted

    with ThreadPoolExecutor(senders) as pool:
        futures = [pool.submit(send, w) for w in range(senders)]
        started.wait()
        story.run()  # drafts and finalizes January while the events pour in
        total = sum(f.result() for f in futures)
    assert total == senders * per_sender

    story.now("2025-03-01T01:00")
    story.run()
    january = story.period_invoice(sub, "2025-01-01")
    february = story.period_invoice(sub, "2025-02-01")
    on_time = Decimal(january["lines"][0]["quantity"])
    late = sum(
        (Decimal(x["quantity"]) for x in february["lines"] if x["type"] == "usage_adjustment"),
        Decimal(0),
    )
    assert on_time + late == total  # nothing lost, nothing counted twice
    check_all(story, sub)


def test_billing_runs_side_by_side_bill_each_period_once(story: Story) -> None:
    subs = [_subscription(story)]
    for n in range(3):
        plan = ok(story.client.get("/v1/plans"))["data"][0]["id"]
        subs.append(story.subscribe(story.customer(f"c{n}"), plan, "2025-01-01T00:00:00Z"))
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: story.run(), range(4)))
    assert sum(r["drafted"] for r in reports) == len(subs)
    assert sum(r["finalized"] for r in reports) == len(subs)
    numbers = sorted(i["number"] for sub in subs for i in story.invoices(sub))
    assert numbers == [1, 2, 3, 4]
