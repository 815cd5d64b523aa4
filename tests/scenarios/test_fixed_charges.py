"""Fixed charges: billed in advance, prorated by the day when a subscription starts or ends
inside a period; usage beside them in arrears."""

from __future__ import annotations

from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story, ok


def _lines(invoice: dict[str, object]) -> list[tuple[str, str, str, str]]:
    return [
        (x["type"], x["description"], x["period"]["start"][:10], x["amount"])  # type: ignore[index]
        for x in invoice["lines"]  # type: ignore[attr-defined]
    ]


def test_fixed_charges_in_advance_and_usage_in_arrears(story: Story) -> None:
    story.now("2025-01-01")
    calls = story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.01"},
        ]
    )
    sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
    opening = story.run()
    assert opening["drafted"] == 1
    story.now("2025-01-01T01:00")
    assert story.run()["finalized"] == 1
    [first] = story.invoices(sub)
    assert (first["kind"], first["number"], first["total"]) == ("opening", 1, "49.00")
    assert _lines(first) == [("fixed", "Platform fee", "2025-01-01", "49.00")]

    story.now("2025-01-20")
    story.send(sub, calls, "2025-01-20", 1234, key="c1")
    story.now("2025-02-01T01:00")
    story.run()
    january = story.period_invoice(sub, "2025-01-01")
    # February's fee in advance, January's usage in arrears.
    assert _lines(january) == [
        ("fixed", "Platform fee", "2025-02-01", "49.00"),
        ("usage", "Api Calls", "2025-01-01", "12.34"),
    ]
    assert (january["number"], january["total"]) == (2, "61.34")
    check_all(story, sub)


def test_mid_period_start_and_cancel_prorate_the_fixed_charge_by_day(story: Story) -> None:
    story.now("2025-01-17")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "31.00"},
            {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "1"},
        ]
    )
    # Starts on the 17th, billed on the 1st of each month: January is 15 of 31 days.
    sub = story.subscribe(
        story.customer(), plan, "2025-01-17T00:00:00Z", billing_anchor="2025-01-01T00:00:00Z"
    )
    story.now("2025-01-17T01:00")
    story.run()
    [opening] = story.invoices(sub)
    assert opening["period"] == {"start": "2025-01-17T00:00:00Z", "end": "2025-02-01T00:00:00Z"}
    assert _lines(opening) == [
        ("fixed", "Platform fee (prorated: 15 of 31 days)", "2025-01-17", "15.00")
    ]
    assert opening["lines"][0]["quantity"] == "0.483871"  # 15/31, shown to six places

    story.now("2025-02-01T01:00")
    story.run()
    january = story.period_invoice(sub, "2025-01-17")
    assert _lines(january) == [
        ("fixed", "Platform fee", "2025-02-01", "31.00"),
        ("usage", "Api Calls", "2025-01-17", "0.00"),
    ]

    # Canceled on Feb 15: 14 of February's 28 days were served, 31.00 was billed in advance.
    story.now("2025-02-10")
    ok(story.client.post(f"/v1/subscriptions/{sub}/cancel", json={"at": "2025-02-15T00:00:00Z"}))
    story.now("2025-02-15T01:00")
    story.run()
    february = story.period_invoice(sub, "2025-02-01")
    assert february["period"] == {"start": "2025-02-01T00:00:00Z", "end": "2025-02-15T00:00:00Z"}
    assert _lines(february) == [
        ("usage", "Api Calls", "2025-02-01", "0.00"),
        (
            "fixed_adjustment",
            "Credit for unused time: Platform fee, 2025-02-15T00:00:00Z – 2025-03-01T00:00:00Z",
            "2025-02-01",
            "-15.50",
        ),
    ]
    assert (february["total"], february["status"]) == ("-15.50", "paid")
    assert [i["number"] for i in story.invoices(sub)] == [1, 2, 3]
    story.now("2025-06-01")
    assert story.run()["drafted"] == 0  # nothing after the end
    check_all(story, sub)


def test_a_year_plan_bills_once_a_year(story: Story) -> None:
    story.now("2025-03-01")
    storage = story.meter("storage_gb", "max", unit="GB")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Annual licence", "amount": "1200.00"},
            {"type": "usage", "meter": "storage_gb", "model": "package", "package_size": "100",
             "unit_price": "5.00"},
        ],
        interval="year",
    )  # fmt: skip
    sub = story.subscribe(story.customer(), plan, "2025-03-01T00:00:00Z")
    story.now("2025-07-05")
    story.send(sub, storage, "2025-07-04", 250, key="s1", operation="set")
    story.send(sub, storage, "2025-07-05", 120, key="s2", operation="set")
    story.now("2026-02-28T23:00")
    story.run()
    assert [i["kind"] for i in story.invoices(sub)] == ["opening"]
    story.now("2026-03-01T01:00")
    story.run()
    year = story.period_invoice(sub, "2025-03-01")
    assert year["period"] == {"start": "2025-03-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}
    # Highest level 250 GB → 3 packages of 100 GB at 5.00; next year's licence in advance.
    assert _lines(year) == [
        ("fixed", "Annual licence", "2026-03-01", "1200.00"),
        ("usage", "Storage Gb", "2025-03-01", "15.00"),
    ]
    check_all(story, sub)


def test_jpy_has_no_minor_digits_and_tax_is_its_own_total(story: Story) -> None:
    story.now("2025-01-01")
    calls = story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "基本料金", "amount": "1000"},
            {"type": "usage", "meter": "api_calls", "model": "graduated", "tiers": [
                {"up_to": "100", "unit_price": "0"},
                {"up_to": None, "unit_price": "1.5", "flat_fee": "100"}]},
        ],
        currency="JPY",
    )  # fmt: skip
    customer = story.customer("tanaka", tax_rate="10")
    sub = story.subscribe(customer, plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-15")
    story.send(sub, calls, "2025-01-15", 333, key="c1")
    story.now("2025-02-01T01:00")
    story.run()
    opening, january = story.invoices(sub)
    assert (opening["subtotal"], opening["tax"], opening["total"]) == ("1000", "100", "1100")
    # 233 units beyond the free 100 at ¥1.5, plus the tier's ¥100 fee: ¥449.5, rounded once → ¥450.
    assert [(x["type"], x["amount"]) for x in january["lines"]] == [
        ("fixed", "1000"),
        ("usage", "450"),
    ]
    assert (january["subtotal"], january["tax_rate"], january["tax"], january["total"]) == (
        "1450",
        "10",
        "145",
        "1595",
    )
    assert january["currency"] == "JPY"
    check_all(story, sub)
