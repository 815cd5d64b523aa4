"""Saaslogic's invoice endpoints: list, details, cancel, payments, on-demand, send with a link."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from meterworks.kit.clock import FrozenClock
from tests.facades.saaslogic.support import NOW, Merchant, issue_token
from tests.support.server import serve


def _on_demand(merchant: Merchant, **change: Any) -> httpx.Response:
    customer = (
        change.get("customerId")
        or merchant.org.client.post(
            "/v1/customers",
            json={"external_id": "acme", "name": "Acme Corporation", "email": "ap@acme.test"},
        ).json()["id"]
    )
    body = {
        "customerId": customer,
        "currencyISOCode": "USD",
        "products": [
            {
                "productId": "prod_services",
                "lineItems": [
                    {
                        "description": "Consulting day",
                        "quantity": 2,
                        "unitPrice": 500.125,
                        "taxes": [{"description": "VAT", "taxValue": 20, "isPercentage": True}],
                        "discounts": [
                            {"description": "Promo", "discountValue": 50, "isPercentage": False}
                        ],
                    }
                ],
            }
        ],
    } | change
    return merchant.client.post("/invoices/on-demand", json=body)


def test_on_demand_invoice_list_details_pay_and_cancel(merchant: Merchant) -> None:
    answer = _on_demand(merchant)
    assert answer.status_code == 201, answer.text
    invoice = answer.json()
    # 2 × 500.125 = 1000.25 − 50 = 950.25; VAT 20 % = 190.05.
    assert {k: invoice[k] for k in ("invoiceNumber", "netAmount", "subTotalAmount",
            "totalTaxAmount", "totalDiscountAmount", "amountReceived", "statusName",
            "currencySymbol", "currencyISOCode", "productId", "isOnDemand",
            "billingCycleStartDate", "invoiceDate", "dueDate")} == {
        "invoiceNumber": 1, "netAmount": "1140.30", "subTotalAmount": "950.25",
        "totalTaxAmount": "190.05", "totalDiscountAmount": "50.00", "amountReceived": "0.00",
        "statusName": "Unpaid", "currencySymbol": "$", "currencyISOCode": "USD",
        "productId": "prod_services", "isOnDemand": True, "billingCycleStartDate": None,
        "invoiceDate": "2024-07-26T00:00:00", "dueDate": "2024-08-25T00:00:00",
    }  # fmt: skip
    invoice_id = invoice["invoiceId"]
    customer_id = invoice["customerId"]
    listed = merchant.client.get(
        "/invoices",
        params={"customerId": customer_id, "productId": "prod_services",
                "startDate": "2024-07-26", "endDate": "2024-07-27"},
    )  # fmt: skip
    assert [i["invoiceId"] for i in listed.json()] == [invoice_id]
    assert merchant.client.get("/invoices", params={"productId": "other"}).json() == []
    assert merchant.client.get("/invoices", params={"startDate": "2024-07-27"}).json() == []
    assert merchant.client.get(f"/invoices/{invoice_id}").json() == invoice
    native = merchant.org.client.get("/v1/invoices").json()["data"]
    assert [(i["id"], i["kind"]) for i in native] == [(invoice_id, "on_demand")]

    payment = {"paymentDate": "2024-07-26T10:00:00", "amount": 140.30, "refNo": "chq-7",
               "paymentMethod": "Cheque", "remarks": "first part"}  # fmt: skip
    paid = merchant.client.post(f"/invoices/{invoice_id}/payments", json=payment)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["amountReceived"], paid.json()["statusName"]) == (
        "140.30",
        "Partially Paid",
    )
    again = merchant.client.post(f"/invoices/{invoice_id}/payments", json=payment)
    assert again.json()["amountReceived"] == "140.30"
    refused = merchant.client.post(f"/invoices/{invoice_id}/cancel")
    assert refused.status_code == 409
    assert refused.json()["message"] == "INVOICE_HAS_PAYMENTS"

    second = _on_demand(merchant, customerId=customer_id).json()
    cancelled = merchant.client.post(f"/invoices/{second['invoiceId']}/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["statusName"], cancelled.json()["invoiceNumber"]) == ("Cancelled", 2)


def test_refused_on_demand_and_unknown_invoice(merchant: Merchant) -> None:
    answer = _on_demand(merchant, currencyISOCode="ZZZ")
    assert answer.status_code == 400
    assert answer.json()["message"] == "INVALID_REQUEST"
    assert merchant.org.client.get("/v1/invoices").json()["data"] == []
    missing = merchant.client.get("/invoices/inv_missing")
    assert (missing.status_code, missing.json()["message"]) == (404, "INVOICE_NOT_FOUND")


def test_send_returns_a_signed_expiring_link(merchant: Merchant) -> None:
    invoice_id = _on_demand(merchant).json()["invoiceId"]
    sent = merchant.client.post(f"/invoices/{invoice_id}/send")
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert (body["emailSent"], body["recipient"]) == (False, None)
    assert body["expiresAt"] == "2024-08-02T00:00:00Z"  # 7 days
    link = body["paymentLink"]
    assert link.startswith(f"{merchant.server.base_url}/v1/invoice-links/")
    opened = httpx.get(link)
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "application/pdf"
    assert opened.content.startswith(b"%PDF-")
    token = link.rsplit("/", 1)[1]
    forged = httpx.get(link[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))
    assert (forged.status_code, forged.json()["error"]["code"]) == (404, "invoice_link_invalid")
    merchant.server.clock.set(NOW + timedelta(days=7))
    expired = httpx.get(link)
    assert (expired.status_code, expired.json()["error"]["code"]) == (404, "invoice_link_expired")


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            (
                list(envelope.rcpt_tos),
                email.message_from_bytes(envelope.content, policy=email.policy.default),
            )
        )
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_send_emails_the_pdf_through_smtp(merchant: Merchant, smtp: tuple[int, _Inbox]) -> None:
    port, inbox = smtp
    invoice_id = _on_demand(merchant).json()["invoiceId"]
    settings = merchant.server.settings.with_overrides(
        smtp_host="127.0.0.1", smtp_port=port, smtp_from="billing@meterworks.test",
        public_base_url="https://pay.example.test",
    )  # fmt: skip
    with serve(settings, merchant.server.db, FrozenClock(NOW)) as mailing:
        jwt = issue_token(mailing, merchant.org.token)
        answer = httpx.post(
            f"{mailing.base_url}/saaslogic/v1/invoices/{invoice_id}/send",
            headers={"Authorization": f"Bearer {jwt}"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["emailSent"], body["recipient"]) == (True, "ap@acme.test")
    assert body["paymentLink"].startswith("https://pay.example.test/v1/invoice-links/")
    ((recipients, message),) = inbox.messages
    assert recipients == ["ap@acme.test"]
    assert str(message["Subject"]).strip().startswith("Invoice 1 from ")
    assert message["From"] == "billing@meterworks.test"
    parts = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    assert [(p.get_content_type(), p.get_filename()) for p in parts] == [
        ("application/pdf", "invoice-1.pdf")
    ]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.startswith(b"%PDF-")
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert body["paymentLink"] in str(text.get_payload(decode=True), "utf-8")
