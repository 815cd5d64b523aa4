"""Explaining invoices: every line traced to the ledger entries and the arithmetic behind it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from meterworks.cli import app
from meterworks.config import Settings
from meterworks.db import tables as t
from meterworks.db.engine import Database
from meterworks.kit.clock import FrozenClock
from tests.scenarios.story import Story, at, ok
from tests.support.server import RunningServer, serve
from tests.support.tenancy import IsolatedOrganization, new_organization


@pytest.fixture
def story(server: RunningServer, org: IsolatedOrganization) -> Story:
    return Story(server, org)


def _explain(story: Story, invoice_id: str) -> dict[str, Any]:
    return dict(ok(story.client.get(f"/v1/invoices/{invoice_id}/explain")))


def test_each_line_is_traced_to_its_ledger_entries(story: Story) -> None:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {"type": "usage", "meter": "api_calls", "model": "graduated", "included_quantity": "5",
             "tiers": [{"up_to": "10", "unit_price": "1"}, {"up_to": None, "unit_price": "0.5"}]},
        ]
    )  # fmt: skip
    sub = story.subscribe(story.customer(tax_rate="20"), plan, "2025-01-01T00:00:00Z")
    story.now("2025-01-31")
    story.send(sub, "api_calls", "2025-01-03", 10, key="a")
    story.send(sub, "api_calls", "2025-01-04", 7, key="b")
    story.send(sub, "api_calls", "2025-01-05", 100, key="voided")
    ok(story.client.delete("/v1/events/voided"))
    ok(story.client.patch("/v1/events/b", json={"quantity": "8"}))
    story.now("2025-02-01T01:00")
    story.run()
    invoice = story.period_invoice(sub, "2025-01-01")
    # 18 units, 5 included: 10 × 1 + 3 × 0.5 = 11.50.
    assert [(x["type"], x["amount"]) for x in invoice["lines"]] == [
        ("fixed", "49.00"),
        ("usage", "11.50"),
    ]
    story.now("2025-02-02")
    story.send(sub, "api_calls", "2025-01-31", 2, key="late")  # after finalization

    explained = _explain(story, invoice["id"])
    assert explained["number"] == invoice["number"]
    assert explained["ledger_watermark"] is not None
    fixed, usage = explained["lines"]
    assert fixed["arithmetic"] == ["Platform fee: 49 for the whole period = 49.00"]
    assert usage["arithmetic"] == [
        "sum of the period's entries: 10 + 8 = 18 call",
        "included 5: billable = max(0, 18 − 5) = 13",
        "tier 1: 10 × 1 = 10",
        "tier 2: 3 × 0.5 = 1.5",
        "exact amount 11.5 → 11.50 (rounded half-up)",
    ]
    ledger = usage["ledger"]
    # As finalized: the late event is not part of this invoice, the voided one never counts.
    assert [(e["idempotency_key"], e["quantity"], e["status"]) for e in ledger["entries"]] == [
        ("a", "10", "active"),
        ("b", "8", "amended"),
    ]
    assert (ledger["entries_voided"], ledger["recomputed_quantity"]) == (1, "18")
    assert ledger["matches_line"] is True
    assert explained["totals"] == [
        "subtotal = Σ line amounts = 60.50",
        "tax = 60.50 × 20 % = 12.10 (rounded half-up)",
        "total = subtotal + tax = 72.60",
    ]

    story.now("2025-03-01T01:00")
    story.run()
    february = story.period_invoice(sub, "2025-02-01")
    adjustment = _explain(story, february["id"])["lines"][2]
    assert adjustment["type"] == "usage_adjustment"
    assert adjustment["arithmetic"][-1] == "rated now 12.50 − billed before 11.50 = 1.00"
    late = [e for e in adjustment["ledger"]["entries"] if e.get("late")]
    assert [e["idempotency_key"] for e in late] == ["late"]


def test_the_command_line_runs_billing_and_explains(fresh_database: Database) -> None:
    settings = Settings().with_overrides(database_url=fresh_database.url, scheduler_enabled=False)
    clock = FrozenClock(at("2025-01-01"))
    with serve(settings, fresh_database, clock) as running, new_organization(running, "x") as org:
        story = Story(running, org)
        story.meter("seats", "prorated", unit="seat")
        plan = story.plan(
            [{"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "2"}]
        )
        sub = story.subscribe(story.customer(), plan, "2025-02-01T00:00:00Z")
        story.now("2025-02-28")
        for day, level in ((1, 3), (7, 4), (15, 8), (21, 5), (24, 0)):
            story.send(sub, "seats", f"2025-02-{day:02d}", level, key=f"g{day}",
                       operation="set")  # fmt: skip
    runner = CliRunner()
    url = fresh_database.url
    result = runner.invoke(app, ["billing", "run", "--db", url, "--as-of", "2025-03-01T01:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "drafted 1, finalized 1" in " ".join(result.output.split())
    again = runner.invoke(app, ["billing", "run", "--db", url, "--as-of", "2025-03-01T01:00:00Z"])
    assert "drafted 0, finalized 0" in " ".join(again.output.split())

    with fresh_database.read() as conn:
        invoice_id = conn.execute(select(t.invoices.c.id)).scalar_one()
    result = runner.invoke(app, ["invoices", "explain", invoice_id, "--db", url])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 × 6 days + 4 × 8 days + 8 × 6 days + 5 × 3 days + 0 × 5 days = 113 seat-days" in text
    assert "total = subtotal + tax = 226.00" in text
    missing = runner.invoke(app, ["invoices", "explain", "inv_nope", "--db", url])
    assert missing.exit_code == 1
    bad = runner.invoke(app, ["billing", "run", "--db", url, "--as-of", "2999-01-01T00:00:00Z"])
    assert bad.exit_code == 2
