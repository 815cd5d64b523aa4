"""Level meters: Salesbricks gauges (prorated) and Gradient unit counts (latest)."""

from __future__ import annotations

from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story


def test_salesbricks_gauge_example_bills_226_dollars(story: Story) -> None:
    # ((3 × 6) + (4 × 8) + (8 × 6) + (5 × 3)) × $2 = $226: the vendor's own example, in February.
    story.now("2025-02-01")
    seats = story.meter("seats", "prorated", unit="seat")
    plan = story.plan([{"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "2"}])
    sub = story.subscribe(story.customer(), plan, "2025-02-01T00:00:00Z")
    story.now("2025-02-28")
    for day, level in ((1, 3), (7, 4), (15, 8), (21, 5), (24, 0)):
        story.send(sub, seats, f"2025-02-{day:02d}", level, key=f"g{day}", operation="set")

    story.now("2025-03-01T01:00")
    report = story.run()
    assert (report["drafted"], report["finalized"]) == (1, 1)
    invoice = story.period_invoice(sub, "2025-02-01")
    assert invoice["status"] == "finalized"
    [line] = invoice["lines"]
    assert (line["quantity"], line["unit"], line["unit_price"], line["amount"]) == (
        "113",
        "seat-days",
        "2",
        "226.00",
    )
    assert invoice["total"] == "226.00"
    check_all(story, sub)

    explained = story.client.get(f"/v1/invoices/{invoice['id']}/explain").json()
    assert explained["lines"][0]["arithmetic"][0] == (
        "level × days held (carried in: 0): 3 × 6 days + 4 × 8 days + 8 × 6 days + 5 × 3 days "
        "+ 0 × 5 days = 113 seat-days"
    )
    assert explained["lines"][0]["ledger"]["matches_line"] is True
    assert explained["lines"][0]["ledger"]["entries_counted"] == 5


def test_a_gauge_level_carries_into_the_next_period(story: Story) -> None:
    story.now("2025-01-01")
    seats = story.meter("seats", "prorated", unit="seat")
    plan = story.plan(
        [{"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "1.00"}]
    )
    sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
    story.send(sub, seats, "2025-01-01", 2, key="only", operation="set")
    story.now("2025-03-01T02:00")
    story.run()
    january, february = (story.period_invoice(sub, m) for m in ("2025-01-01", "2025-02-01"))
    assert january["lines"][0]["quantity"] == "62"  # 2 seats × 31 days
    assert february["lines"][0]["quantity"] == "56"  # carried: 2 seats × 28 days
    assert (january["number"], february["number"]) == (1, 2)
    check_all(story, sub)


def test_a_latest_meter_set_to_5_then_7_is_billed_for_7(story: Story) -> None:
    # Gradient's "set unit count": each call replaces the count; the period bills the last one.
    story.now("2025-01-01")
    licenses = story.meter("licenses", "latest", unit="license")
    plan = story.plan(
        [{"type": "usage", "meter": "licenses", "model": "per_unit", "unit_price": "10.00"}]
    )
    sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-10")
    story.send(sub, licenses, "2025-01-10", 5, key="count-1", operation="set")
    story.now("2025-01-20")
    story.send(sub, licenses, "2025-01-20", 7, key="count-2", operation="set")
    # Repeating the same call is harmless.
    story.send(sub, licenses, "2025-01-20", 7, key="count-2", operation="set")

    story.now("2025-02-01T01:00")
    story.run()
    invoice = story.period_invoice(sub, "2025-01-01")
    assert [(x["quantity"], x["amount"]) for x in invoice["lines"]] == [("7", "70.00")]
    assert invoice["total"] == "70.00"
    check_all(story, sub)
