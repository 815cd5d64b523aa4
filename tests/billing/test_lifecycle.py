"""The invoice lifecycle through the API: draft → finalized → paid | void, numbers, payments."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from meterworks.db import tables as t
from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)


def _billed_month(story: Story, units: int = 50, customer: str = "acme") -> tuple[str, str]:
    """A subscription with January closed and drafted (not yet finalized): 49.00 + units × 1."""
    story.now("2025-01-01")
    if not _has_meter(story, "api_calls"):
        story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "1.00"},
        ]
    )
    sub = story.subscribe(story.customer(customer), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-20")
    story.send(sub, "api_calls", "2025-01-20", units, key=f"{sub}-units")
    story.now("2025-02-01T00:10")
    story.run()
    return sub, story.period_invoice(sub, "2025-01-01")["id"]


def _has_meter(story: Story, key: str) -> bool:
    return any(m["key"] == key for m in ok(story.client.get("/v1/meters"))["data"])


def _count(story: Story, table: Any) -> int:
    with story.server.db.read() as conn:
        value = conn.execute(
            select(func.count()).select_from(table).where(table.c.organization_id == story.org.id)
        ).scalar()
    return int(value or 0)


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_finalize_early_numbers_gaplessly(story: Story) -> None:
    sub, january = _billed_month(story)
    opening, draft = story.invoices(sub)
    assert (opening["status"], opening["number"]) == ("finalized", 1)
    assert (draft["id"], draft["status"], draft["number"]) == (january, "draft", None)
    finalized = ok(story.client.post(f"/v1/invoices/{january}/finalize"))
    assert (finalized["status"], finalized["number"]) == ("finalized", 2)
    assert finalized["issued_at"] == "2025-02-01T00:10:00Z"
    assert finalized["due_at"] == "2025-03-03T00:10:00Z"
    # Again: answered as it is, nothing changes.
    assert ok(story.client.post(f"/v1/invoices/{january}/finalize")) == finalized
    story.now("2025-02-01T02:00")
    assert story.run()["finalized"] == 0

    other, _ = _billed_month(story, customer="globex")
    story.now("2025-02-01T02:00")
    story.run()
    assert sorted(i["number"] for i in story.invoices(other)) == [3, 4]
    check_all(story, sub)
    check_all(story, other)


def test_finalizing_a_draft_early_finalizes_the_earlier_drafts_first(story: Story) -> None:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan([{"type": "fixed", "name": "Setup", "amount": "10.00"}])
    # A half-hour subscription: its opening and its only period are both drafts at 00:40.
    sub = story.subscribe(
        story.customer(), plan, "2025-01-01T00:00:00Z", ends_at="2025-01-01T00:30:00Z"
    )
    story.now("2025-01-01T00:40")
    assert story.run()["drafted"] == 2
    opening, period = story.invoices(sub)
    assert (opening["status"], period["status"]) == ("draft", "draft")
    finalized = ok(story.client.post(f"/v1/invoices/{period['id']}/finalize"))
    assert finalized["number"] == 2
    assert story.invoice(opening["id"])["number"] == 1
    # 30 minutes of a 31-day month: 10.00 × 30 / 44640 = 0.0067… → 0.01 on the opening
    # invoice; the period invoice reconciles nothing further.
    assert [x["amount"] for x in story.invoice(opening["id"])["lines"]] == ["0.01"]
    assert finalized["lines"] == []
    check_all(story, sub)


def test_payments_partial_then_full(story: Story) -> None:
    sub, january = _billed_month(story)
    story.now("2025-02-01T01:00")
    story.run()
    assert story.invoice(january)["total"] == "99.00"

    story.now("2025-02-10")
    paid = story.client.post(
        f"/v1/invoices/{january}/payments",
        json={"amount": "40.00", "paid_at": "2025-02-09T12:00:00Z", "reference": "wire-1"},
    )
    invoice = ok(paid, 201)
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == (
        "finalized",
        "40.00",
        "59.00",
    )
    # A retry with the same reference is recorded once.
    replay = story.client.post(
        f"/v1/invoices/{january}/payments",
        json={"amount": "40.00", "paid_at": "2025-02-09T12:00:00Z", "reference": "wire-1"},
    )
    assert ok(replay, 200)["amount_paid"] == "40.00"
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments",
            json={"amount": "41.00", "paid_at": "2025-02-09T12:00:00Z", "reference": "wire-1"},
        ),
        409,
        "payment_reference_conflict",
    )
    payments = _count(story, t.payments)
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "59.01", "paid_at": "2025-02-10"}
        ),
        422,
        "payment_exceeds_amount_due",
    )
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "1.001", "paid_at": "2025-02-10"}
        ),
        422,
        "invalid_amount",
    )
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "-5", "paid_at": "2025-02-10"}
        ),
        422,
        "invalid_amount",
    )
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "5", "paid_at": "someday"}
        ),
        422,
        "invalid_input",
    )
    assert _count(story, t.payments) == payments  # nothing was written

    done = story.client.post(
        f"/v1/invoices/{january}/payments", json={"amount": 59, "paid_at": "2025-02-11T00:00:00Z"}
    )
    invoice = ok(done, 201)
    assert (invoice["status"], invoice["amount_due"], invoice["paid_at"]) == (
        "paid",
        "0.00",
        "2025-02-11T00:00:00Z",
    )
    assert [(p["amount"], p["reference"]) for p in invoice["payments"]] == [
        ("40.00", "wire-1"),
        ("59.00", None),
    ]
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "1", "paid_at": "2025-02-12"}
        ),
        409,
        "invoice_paid",
    )
    _error(story.client.post(f"/v1/invoices/{january}/void"), 409, "invoice_paid")
    check_all(story, sub)


def test_void_keeps_the_number_and_refusals_write_nothing(story: Story) -> None:
    sub, january = _billed_month(story)
    _error(story.client.post(f"/v1/invoices/{january}/void"), 409, "invoice_not_finalized")
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "1", "paid_at": "2025-02-01"}
        ),
        409,
        "invoice_not_finalized",
    )
    story.now("2025-02-01T01:00")
    story.run()
    voided = ok(story.client.post(f"/v1/invoices/{january}/void"))
    assert (voided["status"], voided["number"], voided["voided_at"]) == (
        "void",
        2,
        "2025-02-01T01:00:00Z",
    )
    assert voided["amount_due"] == "0.00"
    assert ok(story.client.post(f"/v1/invoices/{january}/void")) == voided  # safe to retry
    _error(story.client.post(f"/v1/invoices/{january}/finalize"), 409, "invoice_voided")
    _error(
        story.client.post(
            f"/v1/invoices/{january}/payments", json={"amount": "1", "paid_at": "2025-02-01"}
        ),
        409,
        "invoice_voided",
    )
    assert _count(story, t.payments) == 0
    # A voided invoice's charges are forgiven, not billed again: February starts afresh.
    story.now("2025-03-01T01:00")
    story.run()
    february = story.period_invoice(sub, "2025-02-01")
    assert [x["type"] for x in february["lines"]] == ["fixed", "usage"]
    assert february["number"] == 3
    assert [i["status"] for i in story.invoices(sub, status="void")] == ["void"]


def test_listing_filters_and_tenancy(story: Story, server: RunningServer) -> None:
    sub, january = _billed_month(story)
    found = ok(story.client.get("/v1/invoices", params={"status": "draft"}))["data"]
    assert [(i["kind"], i["id"]) for i in found] == [("period", january)]
    found = ok(story.client.get("/v1/invoices", params={"status": "finalized"}))["data"]
    assert [i["kind"] for i in found] == ["opening"]
    customer = story.invoice(january)["customer_id"]
    assert len(ok(story.client.get("/v1/invoices", params={"customer_id": customer}))["data"]) == 2
    assert ok(story.client.get("/v1/invoices", params={"status": "paid"}))["data"] == []
    page = ok(story.client.get("/v1/invoices", params={"limit": 1}))
    assert (len(page["data"]), page["has_more"]) == (1, True)
    assert page["data"][0]["kind"] == "opening"  # billing order: the opening invoice first
    rest = ok(story.client.get("/v1/invoices", params={"after": page["data"][0]["id"]}))
    assert ([i["id"] for i in rest["data"]], rest["has_more"]) == ([january], False)
    _error(story.client.get("/v1/invoices", params={"status": "sent"}), 422, "invalid_input")
    _error(story.client.get("/v1/invoices/inv_nope"), 404, "invoice_not_found")

    from tests.support.tenancy import new_organization

    with new_organization(server, "someone else") as other:
        # Another organization's invoice is answered as absent.
        _error(other.client.get(f"/v1/invoices/{january}"), 404, "invoice_not_found")
        _error(other.client.post(f"/v1/invoices/{january}/void"), 404, "invoice_not_found")
        assert ok(other.client.get("/v1/invoices"))["data"] == []
        _error(
            other.client.get(f"/v1/subscriptions/{sub}/invoice-preview"),
            404,
            "subscription_not_found",
        )
        # Its billing run bills only itself.
        report = ok(other.client.post("/v1/billing/run", json={}))
        assert (report["subscriptions"], report["drafted"]) == (0, 0)


def test_runs_are_idempotent_and_refuse_the_future(story: Story) -> None:
    sub, _ = _billed_month(story)
    invoices = _count(story, t.invoices)
    lines = _count(story, t.invoice_lines)
    again = story.run()
    assert (again["drafted"], again["finalized"]) == (0, 0)
    assert (_count(story, t.invoices), _count(story, t.invoice_lines)) == (invoices, lines)

    _error(
        story.client.post("/v1/billing/run", json={"as_of": "2025-02-02T00:00:00Z"}),
        422,
        "as_of_in_future",
    )
    _error(story.client.post("/v1/billing/run", json={"as_of": "soon"}), 422, "invalid_input")
    # An earlier as_of closes only what had ended by then.
    story.now("2025-04-01T05:00")
    report = story.run("2025-03-01T00:30")
    assert report["drafted"] == 1  # February, drafted; not finalized: its grace ends 01:00
    assert [i["status"] for i in story.invoices(sub)] == ["finalized", "finalized", "draft"]
    report = story.run()
    assert (report["drafted"], report["finalized"]) == (1, 2)
    assert [i["number"] for i in story.invoices(sub)] == [1, 2, 3, 4]
    check_all(story, sub)


def test_a_run_without_a_body_bills_as_of_now(story: Story) -> None:
    _billed_month(story)
    story.now("2025-02-01T01:00")
    response = story.client.post("/v1/billing/run")
    assert ok(response)["finalized"] == 1
