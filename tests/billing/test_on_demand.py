"""On-demand invoices through the API: exact lines, taxes and discounts, one number sequence."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from meterworks.db import tables as t
from tests.scenarios.story import Story, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    story = Story(server, org)
    story.now("2025-03-10T12:00")
    return story


def _count(story: Story) -> int:
    with story.server.db.read() as conn:
        value = conn.execute(
            select(func.count())
            .select_from(t.invoices)
            .where(t.invoices.c.organization_id == story.org.id)
        ).scalar()
    return int(value or 0)


def _issue(story: Story, body: dict[str, Any]) -> Any:
    return story.client.post("/v1/invoices/on-demand", json=body)


def test_lines_taxes_and_discounts_round_once_per_line(story: Story) -> None:
    customer = story.customer("acme", email="billing@acme.test")
    body = {
        "customer_id": customer,
        "currency": "USD",
        "lines": [
            {
                "description": "Onboarding workshop",
                "quantity": "3",
                "unit_price": "333.335",
                "product_id": "prod_services",
                "discounts": [{"description": "Loyalty", "value": "10", "percentage": True}],
                "taxes": [{"description": "VAT", "value": "20", "percentage": True}],
            },
            {
                "description": "Setup fee",
                "quantity": 1,
                "unit_price": 99.99,
                "discounts": [{"description": "Coupon", "value": "9.99"}],
                "taxes": [{"description": "Stamp duty", "value": "0.505"}],
            },
        ],
    }
    invoice = ok(_issue(story, body), 201)
    # 3 × 333.335 = 1000.005, −10 % = 900.0045 → 900.00; VAT 180.0009 → 180.00.
    # 99.99 − 9.99 = 90.00; stamp duty 0.505 → 0.51.
    assert [(line["type"], line["quantity"], line["unit_price"], line["amount"])
            for line in invoice["lines"]] == [
        ("item", "3", "333.335", "900.00"),
        ("item", "1", "99.99", "90.00"),
    ]  # fmt: skip
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (
        "990.00",
        "180.51",
        "1170.51",
    )
    assert (invoice["kind"], invoice["status"], invoice["subscription_id"]) == (
        "on_demand",
        "finalized",
        None,
    )
    assert invoice["number"] == 1
    assert invoice["issued_at"] == "2025-03-10T12:00:00Z"
    assert invoice["due_at"] == "2025-04-09T12:00:00Z"
    assert invoice["amount_due"] == "1170.51"
    listed = ok(story.client.get("/v1/invoices", params={"customer_id": customer}))["data"]
    assert [i["id"] for i in listed] == [invoice["id"]]
    assert ok(story.client.get(f"/v1/invoices/{invoice['id']}")) == invoice
    explained = ok(story.client.get(f"/v1/invoices/{invoice['id']}/explain"))
    assert explained["lines"][0]["arithmetic"][0] == "3 × 333.335 = 1000.005"
    assert "tax = Σ line taxes = 180.51" in explained["totals"]


def test_numbers_are_shared_with_billing_runs_and_payments_apply(story: Story) -> None:
    story.now("2025-01-01")
    plan = story.plan([{"type": "fixed", "name": "Platform fee", "amount": "49.00"}])
    customer = story.customer("globex")
    sub = story.subscribe(customer, plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-01T02:00")  # past the opening invoice's grace period
    story.run()
    (opening,) = story.invoices(sub)
    assert opening["number"] == 1
    line = {"description": "Extra", "quantity": "2", "unit_price": "12.50"}
    first = ok(_issue(story, {"customer_id": customer, "currency": "EUR", "lines": [line]}), 201)
    second = ok(_issue(story, {"customer_id": customer, "currency": "JPY", "lines": [line]}), 201)
    assert (first["number"], first["total"]) == (2, "25.00")
    # 2 × 12.50 = 25 yen exactly; JPY has no minor digits.
    assert (second["number"], second["total"]) == (3, "25")
    paid = ok(
        story.client.post(
            f"/v1/invoices/{first['id']}/payments",
            json={"amount": "25.00", "paid_at": "2025-01-02T00:00:00Z", "reference": "wire-1"},
        ),
        201,
    )
    assert (paid["status"], paid["amount_due"]) == ("paid", "0.00")
    voided = ok(story.client.post(f"/v1/invoices/{second['id']}/void"))
    assert (voided["status"], voided["number"]) == ("void", 3)


def test_a_free_invoice_is_settled_at_once(story: Story) -> None:
    customer = story.customer("free")
    line = {"description": "Goodwill", "quantity": "1", "unit_price": "5.00",
            "discounts": [{"value": "100", "percentage": True}]}  # fmt: skip
    invoice = ok(_issue(story, {"customer_id": customer, "currency": "USD", "lines": [line]}), 201)
    assert (invoice["status"], invoice["total"], invoice["paid_at"]) == (
        "paid",
        "0.00",
        "2025-03-10T12:00:00Z",
    )


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"currency": "XXQ"}, 422, "invalid_input", "currency"),
        ({"lines": []}, 422, "invalid_input", "lines"),
        ({"lines": [{"description": "x", "quantity": "-1", "unit_price": "1"}]}, 422,
         "invalid_input", "lines[0].quantity"),
        ({"lines": [{"description": " ", "quantity": "1", "unit_price": "1"}]}, 422,
         "invalid_input", "lines[0].description"),
        ({"lines": [{"description": "x", "quantity": "1", "unit_price": "abc"}]}, 422,
         "invalid_input", "lines[0].unit_price"),
        ({"lines": [{"description": "x", "quantity": "1", "unit_price": "5",
                     "discounts": [{"value": "6"}]}]}, 422, "discount_exceeds_amount",
         "lines[0].discounts"),
        ({"lines": [{"description": "x", "quantity": "1", "unit_price": "5",
                     "discounts": [{"value": "101", "percentage": True}]}]}, 422,
         "invalid_input", "lines[0].discounts[0].value"),
        ({"customer_id": "cus_missing"}, 404, "customer_not_found", None),
    ],
)  # fmt: skip
def test_a_refused_invoice_writes_nothing(
    story: Story, change: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    customer = story.customer("initech")
    body = {
        "customer_id": customer,
        "currency": "USD",
        "lines": [{"description": "x", "quantity": "1", "unit_price": "1"}],
    } | change
    answer = _issue(story, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in [d["field"] for d in error["details"]]
    assert _count(story) == 0
    # The number sequence did not move: the next invoice is number 1.
    good = {"customer_id": customer, "currency": "USD",
            "lines": [{"description": "x", "quantity": "1", "unit_price": "1"}]}  # fmt: skip
    assert ok(_issue(story, good), 201)["number"] == 1


def test_another_organizations_customer_is_not_found(story: Story, server: RunningServer) -> None:
    customer = story.customer("umbrella")
    from tests.support.tenancy import new_organization

    with new_organization(server, "on-demand-other") as other:
        answer = other.client.post(
            "/v1/invoices/on-demand",
            json={"customer_id": customer, "currency": "USD",
                  "lines": [{"description": "x", "quantity": "1", "unit_price": "1"}]},
        )  # fmt: skip
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "customer_not_found"
    assert _count(story) == 0
