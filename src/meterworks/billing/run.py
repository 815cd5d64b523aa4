"""The billing run: close every period that ended by `as_of`, draft its invoice, finalize the
drafts whose grace period has passed. Idempotent: a second run finds nothing left to do.

Memory stays bounded whatever the data: subscriptions are read a page at a time, with what the
run needs to know about each (opening invoice, last invoiced period, drafts, late mark) read per
page, and a page is billed in one short unit of work (`batch.py`; one invoice per unit of work
when a page fails). Safe beside another run: invoices are unique per (subscription, period), and
finalization locks the invoice row. With `workers`, an organization's pages are billed by worker
processes side by side (`PagePool`).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from meterworks.billing import lifecycle, marks, store
from meterworks.billing.batch import BilledMeanwhile, compose_page, steps_for, write_page
from meterworks.billing.model import InvoiceKind
from meterworks.billing.progress import Progress, progress_of
from meterworks.catalog.plans import Plan, get_plan
from meterworks.config import Settings
from meterworks.db import tables as t
from meterworks.db.engine import Database
from meterworks.errors import InvalidInput
from meterworks.kit import collector
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription, list_subscriptions, subscription_ids

log = logging.getLogger("meterworks.billing")

PAGE_SIZE = 1_000
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

    def add(self, part: RunReport) -> None:
        """Count a worker's part of the run (its pages' invoices and failures)."""
        self.drafted += part.drafted
        self.finalized += part.finalized
        self.failed += part.failed
        self.drafted_ids.extend(part.drafted_ids[: REPORTED_IDS - len(self.drafted_ids)])
        self.finalized_ids.extend(part.finalized_ids[: REPORTED_IDS - len(self.finalized_ids)])


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
        batched: bool = True,
        workers: int = 1,
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
        # False: every subscription on the careful path, one invoice per unit of work.
        self.batched = batched
        # Processes billing pages side by side (1: this process alone).
        self.workers = workers
        self.report = RunReport(as_of=as_of)
        self._plans: dict[str, Plan] = {}

    def run(self, organization_id: str | None = None) -> RunReport:
        ids = [organization_id] if organization_id is not None else organization_ids(self.db)
        with ExitStack() as stack:
            pages = None if self.workers <= 1 else stack.enter_context(PagePool(self))
            for org in ids:
                self.report.organizations += 1
                self.run_organization(org, pages)
        return self.report

    def run_organization(self, organization_id: str, pages: PagePool | None = None) -> None:
        after: str | None = None
        while True:
            with self.db.read() as conn:
                ids = subscription_ids(conn, organization_id, limit=self.page_size, after=after)
            self.report.subscriptions += len(ids)
            full = len(ids) == self.page_size
            if not ids:
                break
            if pages is not None and (full or pages.busy):
                # An organization of more than one page: its pages go to the worker processes.
                pages.submit(organization_id, after, ids[-1])
            else:
                self.bill_subscriptions(organization_id, after, ids[-1])
            if self.renew is not None:
                self.renew()
            if not full:
                break
            after = ids[-1]
        if pages is not None:
            pages.drain()

    def bill_subscriptions(self, organization_id: str, after: str | None, through: str) -> None:
        """Bill the page of subscriptions after `after` through `through`: where each stands,
        its plans, then `bill_page`."""
        with self.db.read() as conn:
            # The whole range: one created inside it since it was read is billed too.
            page = list_subscriptions(
                conn, organization_id, limit=None, after=after, through=through
            )
            progress = progress_of(conn, organization_id, [s.id for s in page])
            if len(self._plans) > 1_000:
                self._plans.clear()
            for sub in page:
                if sub.plan_id not in self._plans:
                    self._plans[sub.plan_id] = get_plan(conn, organization_id, sub.plan_id)
        self.bill_page(organization_id, page, self._plans, progress)

    def bill_page(
        self,
        organization_id: str,
        page: list[Subscription],
        plans: dict[str, Plan],
        progress: dict[str, Progress],
    ) -> None:
        work = []
        for sub in page:
            plan = plans[sub.plan_id]
            steps = steps_for(sub, plan, progress[sub.id], as_of=self.as_of, grace=self.grace)
            if steps:
                work.append((sub, plan, steps))
        if work and not self.batched:
            self._one_by_one(organization_id, [(sub, plan) for sub, plan, _ in work], progress)
        elif work:
            try:
                with self.db.read() as conn:
                    composed = compose_page(conn, organization_id, work, progress)
                with self.db.transaction() as conn:
                    result = write_page(
                        conn,
                        organization_id,
                        composed,
                        progress,
                        as_of=self.as_of,
                        grace=self.grace,
                        now=self.now,
                        net_days=self.settings.invoice_net_days,
                    )
            except BilledMeanwhile as exc:
                # Another run is billing the same subscriptions: the careful path sorts it out.
                log.info("a page of %s was billed meanwhile (%s); one by one", organization_id, exc)
                self._one_by_one(organization_id, [(sub, plan) for sub, plan, _ in work], progress)
            except Exception:
                # The page as a whole failed: bill its subscriptions one by one instead, so
                # one broken subscription cannot hold the others back.
                log.exception("billing a page of %s failed; retrying one by one", organization_id)
                self._one_by_one(organization_id, [(sub, plan) for sub, plan, _ in work], progress)
            else:
                self.report.failed += result.failed
                for invoice_id in result.drafted:
                    self.report.note_drafted(invoice_id)
                for invoice_id in result.finalized:
                    self.report.note_finalized(invoice_id)
        for sub in page:
            ended = sub.ends_at is not None and sub.ends_at <= self.as_of
            if ended and progress[sub.id].marked and not progress[sub.id].drafts:
                # Late usage of a subscription with no next invoice: an invoice of its own.
                try:
                    self._draft_adjustment(organization_id, sub, plans[sub.plan_id])
                except Exception:
                    self.report.failed += 1
                    log.exception("billing subscription %s failed", sub.id)

    def _one_by_one(
        self,
        organization_id: str,
        subs: list[tuple[Subscription, Plan]],
        progress: dict[str, Progress],
    ) -> None:
        ids = [s.id for s, _ in subs]
        with self.db.read() as conn:
            progress.update(progress_of(conn, organization_id, ids))
        for sub, plan in subs:
            try:
                self.bill(organization_id, sub, plan, progress[sub.id])
            except Exception:
                self.report.failed += 1
                log.exception("billing subscription %s failed", sub.id)
        with self.db.read() as conn:
            progress.update(progress_of(conn, organization_id, ids))

    def bill(self, organization_id: str, sub: Subscription, plan: Plan, progress: Progress) -> None:
        """One subscription, one invoice per unit of work (the careful path)."""
        for step in steps_for(sub, plan, progress, as_of=self.as_of, grace=self.grace):
            if not step.existing:
                with self.db.transaction() as conn:
                    drafted = lifecycle.draft(
                        conn,
                        organization_id,
                        sub,
                        plan,
                        step.kind,
                        step.period,
                        closes_at=step.closes_at,
                        now=self.now,
                        invoice_id=step.id,
                    )
                if drafted is None:
                    return  # drafted by another run meanwhile: the next run goes on
                self.report.note_drafted(drafted)
            if step.finalize:
                with self.db.transaction() as conn:
                    invoice = lifecycle.finalize(
                        conn,
                        organization_id,
                        step.id,
                        now=self.now,
                        net_days=self.settings.invoice_net_days,
                    )
                if invoice is not None and invoice.number is not None:
                    self.report.note_finalized(step.id)

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


class PagePool:
    """Worker processes billing pages side by side, each with its own connections.

    Pages are independent units of work: each is composed without a lock and written under the
    organization's ledger lock (`batch.write_page`), so workers compose while another writes.
    The run reads each page's range of subscription ids and hands it out, at most two per
    worker in flight; a worker reads and bills the page and answers with its part of the report.
    A page's failure is handled in the worker as in this process; anything else a worker raises
    ends the run.
    """

    def __init__(self, run: BillingRun) -> None:
        self.run = run
        self._executor: ProcessPoolExecutor | None = None
        self._pending: deque[Future[RunReport]] = deque()

    def __enter__(self) -> PagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, organization_id: str, after: str | None, through: str) -> None:
        if self._executor is None:
            run = self.run
            self._executor = ProcessPoolExecutor(
                max_workers=run.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(run.settings, run.as_of, run.now, run.batched, run.page_size),
            )
        while len(self._pending) >= 2 * self.run.workers:
            self._collect(self._pending.popleft())
        self._pending.append(
            self._executor.submit(_bill_in_worker, organization_id, after, through)
        )

    def drain(self) -> None:
        while self._pending:
            self._collect(self._pending.popleft())

    def _collect(self, future: Future[RunReport]) -> None:
        self.run.report.add(future.result())
        if self.run.renew is not None:
            self.run.renew()


_worker: BillingRun | None = None


def _start_worker(
    settings: Settings, as_of: datetime, now: datetime, batched: bool, page_size: int
) -> None:
    global _worker
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    _worker = BillingRun(db, settings, as_of=as_of, now=now, batched=batched, page_size=page_size)
    collector.settle()


def _bill_in_worker(organization_id: str, after: str | None, through: str) -> RunReport:
    assert _worker is not None
    _worker.report = RunReport(as_of=_worker.as_of)
    _worker.bill_subscriptions(organization_id, after, through)
    return _worker.report
