"""The billing run's two paths: whole pages in one unit of work (the fast path) and one invoice
per unit of work (the careful path a failing page falls back to). They must bill alike."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select

from meterworks.billing import batch as batch_module
from meterworks.billing import run as run_module
from meterworks.billing.progress import Progress
from meterworks.billing.run import BillingRun
from meterworks.db import tables as t
from tests.scenarios.oracle import check_all
from tests.scenarios.story import Story, at, ok
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization, new_organization


class CarefulStory(Story):
    def run(self, as_of: str | None = None) -> dict[str, Any]:
        now = self.server.clock.now()
        report = BillingRun(
            self.server.db,
            self.server.settings,
            as_of=at(as_of) if as_of else now,
            now=now,
            batched=False,
        ).run(self.org.id)
        return {"drafted": report.drafted, "finalized": report.finalized}


def _tell(story: Story) -> list[dict[str, Any]]:
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    story.meter("seats", "prorated", unit="seat")
    plan = story.plan(
        [
            {"type": "fixed", "name": "Platform fee", "amount": "31.00"},
            {"type": "usage", "meter": "api_calls", "model": "volume", "tiers": [
                {"up_to": "100", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.05"}]},
            {"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "1.00"},
        ]
    )  # fmt: skip
    subs = [
        story.subscribe(story.customer("a", tax_rate="7.5"), plan, "2025-01-01T00:00:00Z"),
        story.subscribe(
            story.customer("b"), plan, "2025-01-10T00:00:00Z", billing_anchor="2025-01-01"
        ),
    ]
    story.now("2025-01-31")
    for n, sub in enumerate(subs):
        story.send(sub, "api_calls", "2025-01-20", 150 + n, key=f"{sub}-c1")
        story.send(sub, "seats", "2025-01-15", 2, key=f"{sub}-s1", operation="set")
    story.now("2025-02-01T00:30")
    story.run()
    story.now("2025-02-01T02:00")
    story.run()
    story.now("2025-02-05")
    story.send(subs[0], "api_calls", "2025-01-30", 10, key="late")
    ok(story.client.patch(f"/v1/events/{subs[1]}-s1", json={"quantity": "3"}))
    ok(story.client.post(f"/v1/subscriptions/{subs[1]}/cancel", json={"at": "2025-02-20"}))
    story.now("2025-03-01T05:00")
    story.run()
    story.now("2025-03-02")
    story.send(subs[1], "api_calls", "2025-02-19", 5, key="after-end")
    story.run()
    story.now("2025-03-02T01:00")
    story.run()
    invoices = []
    for sub in subs:
        invoices.extend(check_all(story, sub))
    return [
        {
            "kind": i["kind"],
            "period": i["period"],
            "status": i["status"],
            "number": i["number"],
            "lines": [
                (x["type"], x["description"], x["quantity"], x["amount"]) for x in i["lines"]
            ],
            "totals": (i["subtotal"], i["tax"], i["total"]),
        }
        for i in invoices
    ]


@pytest.mark.parametrize("path", ["fast", "careful"])
def test_both_paths_bill_the_same_story_alike(
    server: RunningServer, org: IsolatedOrganization, path: str
) -> None:
    fast = _tell(Story(server, org))
    with new_organization(server, "careful twin") as twin:
        careful = _tell(CarefulStory(server, twin) if path == "careful" else Story(server, twin))
    assert careful == fast
    kinds = [i["kind"] for i in fast]
    assert kinds.count("adjustment") == 1
    numbers = sorted(i["number"] for i in fast)
    assert numbers == list(range(1, len(fast) + 1))  # all finalized, gapless


def test_an_ordinary_run_bills_whole_pages_and_a_page_billed_meanwhile_goes_one_by_one(
    server: RunningServer,
    org: IsolatedOrganization,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    story = Story(server, org)
    subs = _january(story, 5, fee=True)

    def run() -> tuple[int, int]:
        now = server.clock.now()
        report = BillingRun(server.db, server.settings, as_of=now, now=now, page_size=3)
        report.run(org.id)
        return report.report.drafted, report.report.finalized

    def no_fallback(*args: Any) -> None:
        raise AssertionError("an ordinary run fell back to one invoice per unit of work")

    with monkeypatch.context() as patch:
        patch.setattr(BillingRun, "_one_by_one", no_fallback)
        assert run() == (10, 10)  # opening and January invoices, in pages of 3 and 2
    before = [check_all(story, sub) for sub in subs]

    # A run that read its pages before the first one billed them, and whose check under the
    # lock sees the same: every insert conflicts, the page goes one by one, which finds
    # everything billed and bills nothing twice.
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "progress_of", lambda conn, org_id, ids: _blank(ids))
        patch.setattr(batch_module, "progress_of", lambda conn, org_id, ids: _blank(ids))
        with caplog.at_level(logging.INFO, logger="meterworks.billing"):
            assert run() == (0, 0)
    assert sum("billed meanwhile" in r.getMessage() for r in caplog.records) == 2  # both pages
    assert [check_all(story, sub) for sub in subs] == before
    numbers = sorted(i["number"] for invoices in before for i in invoices)
    assert numbers == list(range(1, 11))

    # Only the page's read is stale: the check under the lock sees the invoices, composes
    # those subscriptions again and finds nothing left to bill, without the one-by-one path.
    caplog.clear()
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "progress_of", lambda conn, org_id, ids: _blank(ids))
        patch.setattr(BillingRun, "_one_by_one", no_fallback)
        with caplog.at_level(logging.INFO, logger="meterworks.billing"):
            assert run() == (0, 0)
    assert not any("billed meanwhile" in r.getMessage() for r in caplog.records)
    assert [check_all(story, sub) for sub in subs] == before


def test_usage_written_while_a_page_is_composed_is_on_its_invoices(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page is composed without the ledger lock. Usage committed before the page takes the
    lock belongs on its invoices: the page composes those subscriptions again under the lock,
    the others as they were."""
    story = Story(server, org)
    subs = _january(story, 3, fee=False)
    composed_again: list[set[str]] = []
    compose_page, compose_again = batch_module.compose_page, batch_module._compose_again

    def compose_then_write(*args: Any) -> Any:
        page = compose_page(*args)
        # Committed after the page was read, before it takes the lock; then a current-period
        # event of another subscription, which changes no invoice of this page.
        story.send(subs[1], "api_calls", "2025-01-31T23:00", 5, key="while-composing")
        story.send(subs[2], "api_calls", "2025-02-01T01:00", 7, key="next-period")
        return page

    def recording(conn: Any, org_id: str, page: Any, stale: set[str], *rest: Any, **kw: Any) -> Any:
        composed_again.append(set(stale))
        return compose_again(conn, org_id, page, stale, *rest, **kw)

    monkeypatch.setattr(run_module, "compose_page", compose_then_write)
    monkeypatch.setattr(batch_module, "_compose_again", recording)
    monkeypatch.setattr(BillingRun, "_one_by_one", lambda *args: pytest.fail("fell back"))
    now = server.clock.now()
    report = BillingRun(server.db, server.settings, as_of=now, now=now).run(org.id)
    assert (report.drafted, report.finalized) == (3, 3)
    # Both have entries since the page was read; only January's changes what the page bills.
    assert composed_again == [{subs[1]}]
    quantities = [story.period_invoice(sub, "2025-01-01")["lines"][0]["quantity"] for sub in subs]
    assert quantities == ["10", "16", "12"]  # January's late-but-on-time event is on it
    for sub in subs:
        check_all(story, sub)
    with server.db.read() as conn:
        marked = conn.execute(
            select(t.billing_late_marks.c.subscription_id).where(
                t.billing_late_marks.c.organization_id == org.id
            )
        ).all()
    assert marked == []  # written before the lock: on the invoice, not late


def _january(story: Story, count: int, *, fee: bool) -> list[str]:
    """`count` subscriptions from 2025-01-01 on a plan of API calls at 0.10 (and a 31.00 fee),
    the n-th with 10 + n calls on 2025-01-20; the clock then two hours past January."""
    story.now("2025-01-01")
    story.meter("api_calls", "sum", unit="call")
    usage = {"type": "usage", "meter": "api_calls", "model": "per_unit", "unit_price": "0.10"}
    fixed = {"type": "fixed", "name": "Platform fee", "amount": "31.00"}
    plan = story.plan([fixed, usage] if fee else [usage])
    subs = [
        story.subscribe(story.customer(f"c{n}"), plan, "2025-01-01T00:00:00Z") for n in range(count)
    ]
    story.now("2025-01-21")
    for n, sub in enumerate(subs):
        story.send(sub, "api_calls", "2025-01-20", 10 + n, key=f"{sub}-c1")
    story.now("2025-02-01T02:00")
    return subs


def _blank(ids: list[str]) -> dict[str, Progress]:
    return {sid: Progress() for sid in ids}


def test_worker_processes_bill_an_organizations_pages_side_by_side(
    server: RunningServer, org: IsolatedOrganization, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(server, org)
    subs = _january(story, 7, fee=True)
    submitted: list[int] = []
    submit = run_module.PagePool.submit

    def counting(pool: run_module.PagePool, org_id: str, after: str | None, through: str) -> None:
        submitted.append(sum((after or "") < sub <= through for sub in subs))
        submit(pool, org_id, after, through)

    monkeypatch.setattr(run_module.PagePool, "submit", counting)
    now = server.clock.now()
    run = BillingRun(server.db, server.settings, as_of=now, now=now, page_size=3, workers=2)
    report = run.run(org.id)
    assert submitted == [3, 3, 1]  # every page went to a worker process
    assert (report.subscriptions, report.drafted, report.finalized, report.failed) == (7, 14, 14, 0)
    assert len(set(report.finalized_ids)) == 14
    invoices = [i for sub in subs for i in check_all(story, sub)]
    assert sorted(i["number"] for i in invoices) == list(range(1, 15))  # gapless across pages
    january = [story.period_invoice(sub, "2025-01-01") for sub in subs]
    assert [i["lines"][-1]["quantity"] for i in january] == [str(10 + n) for n in range(7)]

    again = BillingRun(server.db, server.settings, as_of=now, now=now, page_size=3, workers=2)
    assert (again.run(org.id).drafted, again.report.finalized) == (0, 0)
