"""The billing run: close every period that ended by `as_of`, draft its invoice, finalize the
drafts whose grace period has passed. Idempotent: a second run finds nothing left to do.

Memory stays bounded whatever the data: subscriptions are read a page at a time, with what the
run needs to know about each (opening invoice, last invoiced period, drafts, late mark) read per
page, and every invoice is drafted or finalized in its own short unit of work. Safe beside another
run: invoices are unique per (subscription, period), and finalization locks the invoice row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from meterworks.billing import lifecycle, marks, store
from meterworks.billing.compose import first_period
from meterworks.billing.model import InvoiceKind
from meterworks.catalog.plans import Plan, get_plan
from meterworks.config import Settings
from meterworks.db import tables as t
from meterworks.db.engine import Database
from meterworks.errors import InvalidInput
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription, list_subscriptions

log = logging.getLogger("meterworks.billing")

PAGE_SIZE = 500
# Invoice ids reported by one run; the counts stay exact past it.
REPORTED_IDS = 1_000


@dataclass(slots=True)
class RunReport:
    as_of: datetime
    organizations: int = 0
    subscriptions: int = 0
    drafted: int = 0
    finalized: int = 0
    failed: int = 0
    drafted_ids: list[str] = field(default_factory=list)
    finalized_ids: list[str] = field(default_factory=list)

    def note_drafted(self, invoice_id: str) -> None:
        self.drafted += 1
        if len(self.drafted_ids) < REPORTED_IDS:
            self.drafted_ids.append(invoice_id)

    def note_finalized(self, invoice_id: str) -> None:
        self.finalized += 1
        if len(self.finalized_ids) < REPORTED_IDS:
            self.finalized_ids.append(invoice_id)


def organization_ids(db: Database, page_size: int = PAGE_SIZE) -> list[str]:
    """Every organization id, read a page at a time."""
    found: list[str] = []
    after = ""
    while True:
        with db.read() as conn:
            page = [
                row.id
                for row in conn.execute(
                    select(t.organizations.c.id)
                    .where(t.organizations.c.id > after)
                    .order_by(t.organizations.c.id)
                    .limit(page_size)
                )
            ]
        found.extend(page)
        if len(page) < page_size:
            return found
        after = page[-1]


class BillingRun:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        as_of: datetime,
        now: datetime,
        renew: Callable[[], None] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if as_of > now:
            raise InvalidInput(
                "as_of must not be in the future: a period is billed once it has ended",
                code="as_of_in_future",
                details=[{"field": "as_of", "message": "must not be after now"}],
            )
        self.db = db
        self.settings = settings
        self.as_of = as_of
        self.now = now
        self.grace = timedelta(seconds=settings.billing_grace_seconds)
        self.renew = renew
        self.page_size = page_size
        self.report = RunReport(as_of=as_of)

    def run(self, organization_id: str | None = None) -> RunReport:
        ids = [organization_id] if organization_id is not None else organization_ids(self.db)
        for org in ids:
            self.report.organizations += 1
            self.run_organization(org)
        return self.report

    def run_organization(self, organization_id: str) -> None:
        plans: dict[str, Plan] = {}
        after: str | None = None
        while True:
            with self.db.read() as conn:
                page = list_subscriptions(conn, organization_id, limit=self.page_size, after=after)
                progress = store.progress_of(conn, organization_id, [s.id for s in page])
                if len(plans) > 1_000:
                    plans.clear()
                for sub in page:
                    if sub.plan_id not in plans:
                        plans[sub.plan_id] = get_plan(conn, organization_id, sub.plan_id)
            for sub in page:
                self.report.subscriptions += 1
                try:
                    self.bill(organization_id, sub, plans[sub.plan_id], progress[sub.id])
                except Exception:
                    # One broken subscription must not stop the others; the next run retries it.
                    self.report.failed += 1
                    log.exception("billing subscription %s failed", sub.id)
            if self.renew is not None:
                self.renew()
            if len(page) < self.page_size:
                return
            after = page[-1].id

    def bill(
        self, organization_id: str, sub: Subscription, plan: Plan, progress: store.Progress
    ) -> None:
        first = first_period(sub)
        if first is None:
            return
        drafts = sorted(progress.drafts or [])
        if plan.fixed_charges and not progress.has_opening and sub.starts_at <= self.as_of:
            self._draft(
                organization_id, sub, plan, InvoiceKind.OPENING, first, sub.starts_at, drafts
            )
        cursor = progress.last_period_end or sub.starts_at
        while sub.ends_at is None or cursor < sub.ends_at:
            period = sub.period_at(cursor)
            if period.end > self.as_of or period.end <= cursor:
                break
            self._draft(organization_id, sub, plan, InvoiceKind.PERIOD, period, period.end, drafts)
            cursor = period.end
        remaining: list[str] = []
        for closes_at, invoice_id in sorted(drafts):
            if remaining or closes_at + self.grace > self.as_of:
                remaining.append(invoice_id)
                continue
            with self.db.transaction() as conn:
                invoice = lifecycle.finalize(
                    conn,
                    organization_id,
                    invoice_id,
                    now=self.now,
                    net_days=self.settings.invoice_net_days,
                )
            if invoice is not None and invoice.number is not None:
                self.report.note_finalized(invoice_id)
        ended = sub.ends_at is not None and cursor >= sub.ends_at
        if ended and progress.marked and not remaining:
            # Late usage of a subscription with no next invoice: an adjustment invoice of its own.
            self._draft_adjustment(organization_id, sub, plan)

    def _draft(
        self,
        organization_id: str,
        sub: Subscription,
        plan: Plan,
        kind: InvoiceKind,
        period: Period,
        closes_at: datetime,
        drafts: list[tuple[datetime, str]],
    ) -> None:
        with self.db.transaction() as conn:
            invoice_id = lifecycle.draft(
                conn, organization_id, sub, plan, kind, period, closes_at=closes_at, now=self.now
            )
        if invoice_id is not None:
            self.report.note_drafted(invoice_id)
            drafts.append((closes_at, invoice_id))

    def _draft_adjustment(self, organization_id: str, sub: Subscription, plan: Plan) -> None:
        with self.db.transaction() as conn:
            if marks.late_from(conn, organization_id, sub.id) is None:
                return
            if store.earlier_draft_exists(conn, organization_id, sub.id, None):
                return
            invoice_id = lifecycle.draft(
                conn,
                organization_id,
                sub,
                plan,
                InvoiceKind.ADJUSTMENT,
                Period(self.as_of, self.as_of),
                closes_at=self.as_of,
                now=self.now,
            )
        if invoice_id is not None:
            self.report.note_drafted(invoice_id)
