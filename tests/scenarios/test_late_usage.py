"""Usage that arrives, or is corrected, after its period's invoice was finalized."""

from __future__ import annotations

from sqlalchemy import func, select

from meterworks.db import tables as t
from meterworks.tenancy.service import set_late_usage_policy
from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story, ok


def _counter(story: Story) -> tuple[str, str]:
    story.now("2025-01-01")
    meter = story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [{"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "2.00"}]
    )
    sub = story.subscribe(story.customer(), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-31")
    return sub, meter


def _ledger_rows(story: Story) -> int:
    with story.server.db.read() as conn:
        e = t.usage_events.c
        count = conn.execute(select(func.count()).where(e.organization_id == story.org.id)).scalar()
    return int(count or 0)


def test_an_event_during_the_grace_period_still_changes_the_draft(story: Story) -> None:
    sub, meter = _counter(story)
    story.send(sub, meter, "2025-01-15", 10, key="a")
    story.now("2025-02-01T00:00")
    story.run()
    story.now("2025-02-01T00:30")
    story.send(sub, meter, "2025-01-31T23:59", 5, key="b")  # late, but within the grace period
    draft = story.period_invoice(sub, "2025-01-01")
    assert (draft["status"], draft["total"]) == ("draft", "30.00")
    story.now("2025-02-01T01:00")
    story.run()
    final = story.invoice(draft["id"])
    assert (final["status"], final["total"]) == ("finalized", "30.00")
    assert [line["type"] for line in final["lines"]] == ["usage"]
    check_all(story, sub)


def test_late_and_corrected_usage_is_billed_as_adjustments_on_the_next_invoice(
    story: Story,
) -> None:
    sub, meter = _counter(story)
    story.send(sub, meter, "2025-01-10", 10, key="jan-1")
    story.send(sub, meter, "2025-01-20", 20, key="jan-2")
    story.now("2025-02-01T01:00")
    story.run()
    january = story.period_invoice(sub, "2025-01-01")
    assert (january["status"], january["total"]) == ("finalized", "60.00")

    # After finalization: a late event, an amended one and a voided one, all for January.
    story.now("2025-02-10")
    story.send(sub, meter, "2025-01-31T12:00", 7, key="jan-late")
    story.send(sub, meter, "2025-02-05", 20, key="feb-1")
    ok(story.client.patch("/v1/events/jan-1", json={"quantity": "12"}))
    ok(story.client.delete("/v1/events/jan-2"))
    assert story.invoice(january["id"])["total"] == "60.00"  # a finalized invoice never changes

    story.now("2025-02-10T00:00:05")  # past the billing view's debounce
    preview = ok(story.client.get(f"/v1/subscriptions/{sub}/invoice-preview"))
    # January is now 12 + 7 = 19 units, 30 were billed: 11 units (22.00) come back.
    assert [(x["type"], x["quantity"], x["amount"]) for x in preview["lines"]] == [
        ("usage", "20", "40.00"),
        ("usage_adjustment", "-11", "-22.00"),
    ]
    assert preview["total"] == "18.00"

    story.now("2025-03-01T01:00")
    story.run()
    february = story.period_invoice(sub, "2025-02-01")
    assert february["status"] == "finalized"
    assert [
        (x["type"], x["description"], x["quantity"], x["amount"]) for x in february["lines"]
    ] == [
        ("usage", "Api Calls", "20", "40.00"),
        (
            "usage_adjustment",
            "Late usage adjustment: Api Calls, 2025-01-01T00:00:00Z – 2025-02-01T00:00:00Z",
            "-11",
            "-22.00",
        ),
    ]
    assert february["lines"][1]["period"] == january["period"]
    assert february["total"] == "18.00"
    check_all(story, sub)

    # Nothing lost, nothing counted twice: January's lines now add up to its current usage.
    story.now("2025-04-01T01:00")
    story.run()
    march = story.period_invoice(sub, "2025-03-01")
    assert [x["type"] for x in march["lines"]] == ["usage"]
    check_all(story, sub)


def test_the_reject_policy_refuses_usage_for_a_finalized_period(story: Story) -> None:
    sub, meter = _counter(story)
    story.send(sub, meter, "2025-01-10", 10, key="jan-1")
    story.now("2025-02-01T01:00")
    story.run()
    with story.server.db.transaction() as conn:
        set_late_usage_policy(conn, story.org.id, "reject")
    rows = _ledger_rows(story)

    story.now("2025-02-02")
    refused = story.usage(sub, meter, "2025-01-31T12:00", 5, key="jan-late")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
        (0, "timestamp", "period_finalized")
    ]
    assert _ledger_rows(story) == rows  # nothing was written

    # A replay of an event accepted before finalization is answered as the first call was.
    replay = ok(story.usage(sub, meter, "2025-01-10", 10, key="jan-1"))
    assert replay == {"accepted": 0, "duplicates": 1}
    # The current period takes usage as usual.
    assert ok(story.usage(sub, meter, "2025-02-01T12:00", 3, key="feb-1"))["accepted"] == 1

    story.now("2025-03-01T01:00")
    story.run()
    february = story.period_invoice(sub, "2025-02-01")
    assert [(x["type"], x["amount"]) for x in february["lines"]] == [("usage", "6.00")]
    check_all(story, sub)


def test_late_usage_of_an_ended_subscription_gets_an_adjustment_invoice(story: Story) -> None:
    sub, meter = _counter(story)
    story.send(sub, meter, "2025-01-10", 10, key="jan-1")
    ok(story.client.post(f"/v1/subscriptions/{sub}/cancel", json={"at": "2025-02-01T00:00:00Z"}))
    story.now("2025-02-01T01:00")
    story.run()
    [last] = story.invoices(sub)
    assert (last["kind"], last["status"], last["total"]) == ("period", "finalized", "20.00")

    story.now("2025-02-03")
    story.send(sub, meter, "2025-01-31", 4, key="jan-late")
    report = story.run()
    assert report["drafted"] == 1
    story.now("2025-02-03T01:00")
    story.run()
    assert story.run()["drafted"] == 0  # idempotent: the mark was consumed
    first, adjustment = story.invoices(sub)
    assert first["id"] == last["id"]
    assert (adjustment["kind"], adjustment["status"], adjustment["number"]) == (
        "adjustment",
        "finalized",
        2,
    )
    assert adjustment["period"] == last["period"]
    assert [(x["type"], x["quantity"], x["amount"]) for x in adjustment["lines"]] == [
        ("usage_adjustment", "4", "8.00")
    ]
    check_all(story, sub)
