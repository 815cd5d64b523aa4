"""Salesbricks counters: units summed over the period, billed in arrears on the next invoice."""

from __future__ import annotations

from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story


def test_ten_in_week_one_and_twenty_in_week_four_bill_thirty_units(story: Story) -> None:
    story.now("2025-01-01")
    meter = story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.50"}]
    )
    sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-03")
    story.send(sub, meter, "2025-01-02T10:00", 10, key="week-1")
    story.now("2025-01-25")
    story.send(sub, meter, "2025-01-23T10:00", 20, key="week-4")

    story.now("2025-01-31T23:00")
    assert story.run()["drafted"] == 0  # the period has not closed yet
    story.now("2025-02-01T00:00")
    report = story.run()
    assert report["drafted"] == 1, report
    assert report["finalized"] == 0  # a live draft for the grace period

    draft = story.period_invoice(sub, "2025-01-01")
    assert draft["status"] == "draft"
    assert draft["number"] is None
    assert [(line["quantity"], line["unit_price"], line["amount"]) for line in draft["lines"]] == [
        ("30", "0.5", "15.00")
    ]

    story.now("2025-02-01T01:00")
    report = story.run()
    assert report["finalized"] == 1
    invoice = story.invoice(draft["id"])
    assert invoice["status"] == "finalized"
    assert invoice["number"] == 1
    assert invoice["period"] == {"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}
    assert invoice["lines"][0]["description"] == "Api Calls"
    assert invoice["lines"][0]["meter"] == meter
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("15.00", "0.00", "15.00")
    assert invoice["issued_at"] == "2025-02-01T01:00:00Z"
    assert invoice["due_at"] == "2025-03-03T01:00:00Z"
    check_all(story, sub)
