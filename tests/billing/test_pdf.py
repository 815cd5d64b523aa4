"""Invoice PDFs through the API, read back with poppler's pdftotext and pdftoppm."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.scenarios.story import Story, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)


def pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True
    )
    return done.stdout


def page_count(content: bytes, tmp_path: Path) -> int:
    path = tmp_path / "pages.pdf"
    path.write_bytes(content)
    done = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("Pages:"))
    return int(line.split()[1])


def ink_fraction(content: bytes, tmp_path: Path) -> float:
    """The share of page 1's pixels that are not near-white, rendered by pdftoppm as a PNG."""
    path = tmp_path / "render.pdf"
    path.write_bytes(content)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile",
         str(path), str(tmp_path / "page")],
        check=True,
    )  # fmt: skip
    with Image.open(tmp_path / "page.png") as image:
        assert image.format == "PNG"
        histogram = image.convert("L").histogram()
    return sum(histogram[:200]) / sum(histogram)


def billed_invoice(story: Story, *, units: int = 1234) -> tuple[str, str]:
    """A finalized January invoice of Acme: 49.00 fixed + units x 0.25, tax 20 %."""
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.25"},
        ]
    )
    customer = story.customer(
        "acme-42",
        name="Acme Corporation",
        email="billing@acme.test",
        address={"line1": "1 Main Street", "city": "Springfield", "country": "US"},
        tax_rate="20",
    )
    sub = story.subscribe(customer, plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-20")
    story.send(sub, "api_calls", "2025-01-20", units, key=f"{sub}-units")
    story.now("2025-02-01T02:00")
    story.run()
    invoice = story.period_invoice(sub, "2025-01-01")
    assert invoice["status"] == "finalized"
    return sub, invoice["id"]


def test_the_pdf_shows_the_whole_invoice(story: Story, tmp_path: Path) -> None:
    _, invoice_id = billed_invoice(story)
    invoice = story.invoice(invoice_id)
    answer = story.client.get(f"/v1/invoices/{invoice_id}/pdf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    number = invoice["number"]
    assert answer.headers["content-disposition"] == f'inline; filename="invoice-{number}.pdf"'
    assert answer.content.startswith(b"%PDF-")
    text = pdf_text(answer.content, tmp_path)
    # usage 1234 x 0.25 = 308.50; the February fee in advance 49.00; subtotal 357.50; tax 71.50.
    assert invoice["subtotal"] == "357.50"
    assert (invoice["tax"], invoice["total"]) == ("71.50", "429.00")
    for expected in [
        "INVOICE",
        f"Invoice number {number}",
        "Acme Corporation",
        "Customer ID: acme-42",
        "billing@acme.test",
        "1 Main Street",
        "Springfield",
        "Status:",
        "Open",
        "Period:",
        "2025-01-01 to 2025-01-31",
        "Issue date:",
        "2025-02-01",
        "Due date:",
        "2025-03-03",
        "Currency:",
        "USD",
        "Description",
        "Quantity",
        "Unit price",
        "Amount",
        "Platform fee",
        "1234",
        "0.25",
        "308.50",
        "49.00",
        "Subtotal",
        "357.50",
        "Tax (20%)",
        "71.50",
        "Total",
        "429.00 USD",
        "Amount paid",
        "0.00",
        "Amount due",
        "Page 1 of 1",
    ]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert re.search(r"Api Calls\s+1234\s+0.25\s+308.50\n", text)
    assert re.search(r"Tax \(20%\)\s+71.50\n", text)
    assert re.search(r"Amount due\s+429.00 USD\n", text)
    assert ink_fraction(answer.content, tmp_path) > 0.005


def test_the_seller_is_the_organization(story: Story, tmp_path: Path) -> None:
    _, invoice_id = billed_invoice(story)
    with story.server.db.read() as conn:
        from meterworks.tenancy.service import get_organization

        seller = get_organization(conn, story.org.id).name
    text = pdf_text(story.client.get(f"/v1/invoices/{invoice_id}/pdf").content, tmp_path)
    assert "FROM" in text
    assert seller[:40] in text


def test_a_draft_reads_draft_and_a_paid_invoice_shows_what_was_paid(
    story: Story, tmp_path: Path
) -> None:
    story.now("2025-01-01")
    story.meter("seats", "max", unit="seat")
    plan = story.plan(
        [{"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "10.00"}]
    )
    sub = story.subscribe(story.customer("globex"), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-05")
    story.send(sub, "seats", "2025-01-05", 3, key=f"{sub}-seats")
    story.now("2025-02-01T00:10")
    story.run()
    draft = story.period_invoice(sub, "2025-01-01")
    assert draft["status"] == "draft"
    text = pdf_text(story.client.get(f"/v1/invoices/{draft['id']}/pdf").content, tmp_path)
    assert "DRAFT" in text
    assert "Invoice number" not in text
    assert re.search(r"Status:\s+Draft\n", text)
    assert re.search(r"Issue date:\s+-\n", text)
    assert re.search(r"Due date:\s+-\n", text)

    done = ok(story.client.post(f"/v1/invoices/{draft['id']}/finalize"))
    assert done["total"] == "30.00"
    ok(
        story.client.post(
            f"/v1/invoices/{draft['id']}/payments",
            json={"amount": "30.00", "paid_at": "2025-02-02T00:00:00Z"},
        ),
        201,
    )
    text = pdf_text(story.client.get(f"/v1/invoices/{draft['id']}/pdf").content, tmp_path)
    assert re.search(r"Status:\s+Paid\n", text)
    assert re.search(r"Amount paid\s+30.00\n", text)
    assert re.search(r"Amount due\s+0.00 USD\n", text)  # nothing left to pay


def test_many_lines_paginate(story: Story, tmp_path: Path) -> None:
    story.now("2025-01-01")
    keys = [f"meter_{i:02d}" for i in range(60)]
    for key in keys:
        story.meter(key, "sum")
    plan = story.plan(
        [{"type": "usage", "meter": key, "model": "per_unit", "unit_price": "1.00"} for key in keys]
    )
    sub = story.subscribe(story.customer("initech"), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-10")
    events = [
        {"idempotency_key": f"{sub}-{key}", "subscription_id": sub, "meter": key,
         "timestamp": "2025-01-10T00:00:00Z", "quantity": "2"}
        for key in keys
    ]  # fmt: skip
    ok(story.client.post("/v1/events", json={"events": events}))
    story.now("2025-02-01T02:00")
    story.run()
    invoice = story.period_invoice(sub, "2025-01-01")
    assert len(invoice["lines"]) == 60
    content = story.client.get(f"/v1/invoices/{invoice['id']}/pdf").content
    pages = page_count(content, tmp_path)
    assert pages >= 2
    text = pdf_text(content, tmp_path)
    assert f"Page {pages} of {pages}" in text
    assert "Meter 00" in text
    assert "Meter 59" in text
    assert "120.00 USD" in text
    # The table's headings repeat at the top of every page.
    assert text.count("Unit price") == pages


def test_another_organizations_invoice_is_not_found(
    story: Story, server: RunningServer, tmp_path: Path
) -> None:
    _, invoice_id = billed_invoice(story)
    from tests.support.tenancy import new_organization

    with new_organization(server, "pdf-other") as other:
        answer = other.client.get(f"/v1/invoices/{invoice_id}/pdf")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "invoice_not_found"
    missing = story.client.get("/v1/invoices/inv_missing/pdf")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "invoice_not_found"
