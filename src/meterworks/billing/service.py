"""The billing service every transport calls (REST, CLI, the scheduler), over one database."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from meterworks.billing import lifecycle, marks, store, views
from meterworks.billing.explain import explain
from meterworks.billing.leadership import leadership
from meterworks.billing.model import Invoice, InvoiceStatus
from meterworks.billing.payments import record_payment
from meterworks.billing.run import BillingRun, RunReport
from meterworks.billing.scheduler import Loop, holder_id
from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.errors import Conflict, InvalidInput, NotFound
from meterworks.kit.clock import Clock
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter

STATUSES = frozenset(s.value for s in InvoiceStatus)


class BillingService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.holder = holder_id()
        self.scheduler = Loop("billing-scheduler", settings.scheduler_interval_seconds, self.tick)
        self.view_loop = Loop("billing-views", settings.view_poll_seconds, self.rebuild_due_views)

    # -- wiring ------------------------------------------------------------------------------

    def install(self, writer: LedgerWriter, usage: UsageService) -> None:
        """Hook billing into the ledger's writes: debounced view rebuilds, late-usage marks and
        the `reject` policy's ingest guard."""
        writer.add_hook(self._request_views)
        writer.add_change_hook(self._note_late_usage)
        usage.guards.append(marks.refuse_finalized_periods)

    def _request_views(self, conn: Connection, organization_id: str, ids: set[str]) -> None:
        views.request_rebuild(
            conn,
            organization_id,
            ids,
            now=self.clock.now(),
            debounce=timedelta(seconds=self.settings.view_debounce_seconds),
        )

    def _note_late_usage(
        self, conn: Connection, organization_id: str, changes: dict[str, int]
    ) -> None:
        marks.note_late_usage(conn, organization_id, changes, self.clock.now())

    def start(self) -> None:
        if self.settings.views_enabled:
            self.view_loop.start()
        if self.settings.scheduler_enabled:
            self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.view_loop.stop()

    # -- runs --------------------------------------------------------------------------------

    def run(
        self,
        *,
        as_of: datetime | None = None,
        organization_id: str | None = None,
        workers: int = 1,
    ) -> RunReport:
        """Close every period ended by `as_of` (default now): draft, then finalize past grace.

        `workers` processes bill an organization's pages side by side (`run.PagePool`)."""
        now = self.clock.now()
        return BillingRun(self.db, self.settings, as_of=as_of or now, now=now, workers=workers).run(
            organization_id
        )

    def tick(self) -> RunReport | None:
        """One scheduler pass: bill every organization if this process holds leadership."""
        with leadership(
            self.db,
            self.clock,
            self.holder,
            lease_seconds=max(120.0, 4 * self.settings.scheduler_interval_seconds),
        ) as leader:
            if leader is None:
                return None
            now = self.clock.now()
            return BillingRun(self.db, self.settings, as_of=now, now=now, renew=leader.renew).run()

    def rebuild_due_views(self) -> int:
        return views.rebuild_due(self.db, self.clock.now())

    # -- invoices ----------------------------------------------------------------------------

    def list_invoices(
        self,
        organization_id: str,
        *,
        customer_id: str | None = None,
        subscription_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[Invoice], bool]:
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                "status must be one of " + ", ".join(sorted(STATUSES)),
                details=[{"field": "status", "message": "unknown status"}],
            )
        with self.db.read() as conn:
            found = store.list_invoices(
                conn,
                organization_id,
                customer_id=customer_id,
                subscription_id=subscription_id,
                status=status,
                limit=limit + 1,
                after=after,
            )
            page = [lifecycle.live(conn, organization_id, inv) for inv in found[:limit]]
        return page, len(found) > limit

    def invoice(self, organization_id: str, invoice_id: str) -> Invoice:
        with self.db.read() as conn:
            return lifecycle.live(
                conn, organization_id, store.get_invoice(conn, organization_id, invoice_id)
            )

    def finalize(self, organization_id: str, invoice_id: str) -> Invoice:
        """Finalize a draft now (the subscription's earlier drafts first, to keep the order)."""
        now = self.clock.now()
        net_days = self.settings.invoice_net_days
        with self.db.transaction() as conn:
            invoice = store.get_invoice(conn, organization_id, invoice_id)
            if invoice.status is InvoiceStatus.VOID:
                raise Conflict("the invoice is void", code="invoice_voided")
            if invoice.status is not InvoiceStatus.DRAFT:
                return invoice
            assert invoice.subscription_id is not None  # an on-demand invoice is never a draft
            for earlier in store.invoices_of_subscription(
                conn, organization_id, invoice.subscription_id
            ):
                if earlier.status is InvoiceStatus.DRAFT and earlier.order_key < invoice.order_key:
                    lifecycle.finalize(
                        conn, organization_id, earlier.id, now=now, net_days=net_days
                    )
            done = lifecycle.finalize(conn, organization_id, invoice_id, now=now, net_days=net_days)
        if done is None:
            raise NotFound(
                "the invoice's late-usage adjustments cancelled out; it was withdrawn",
                code="invoice_not_found",
            )
        return done

    def void(self, organization_id: str, invoice_id: str) -> Invoice:
        with self.db.transaction() as conn:
            return lifecycle.void(conn, organization_id, invoice_id, now=self.clock.now())

    def pay(
        self,
        organization_id: str,
        invoice_id: str,
        *,
        amount: Decimal,
        paid_at: datetime,
        reference: str | None,
    ) -> tuple[Invoice, bool]:
        with self.db.transaction() as conn:
            return record_payment(
                conn,
                organization_id,
                invoice_id,
                amount=amount,
                paid_at=paid_at,
                reference=reference,
                now=self.clock.now(),
            )

    def explain(self, organization_id: str, invoice_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            invoice = lifecycle.live(
                conn, organization_id, store.get_invoice(conn, organization_id, invoice_id)
            )
            return explain(conn, organization_id, invoice)

    def explain_anywhere(self, invoice_id: str) -> dict[str, Any]:
        """Explain an invoice of any organization (the operator's command line)."""
        with self.db.read() as conn:
            organization_id = store.find_invoice_anywhere(conn, invoice_id)
        return self.explain(organization_id, invoice_id)

    # -- views -------------------------------------------------------------------------------

    def preview(self, organization_id: str, subscription_id: str) -> dict[str, Any]:
        return views.preview(self.db, organization_id, subscription_id, self.clock.now())

    def stored_preview(self, organization_id: str, subscription_id: str) -> dict[str, Any] | None:
        """The preview where its view needs no rebuild first (one read); else None."""
        return views.stored_preview(self.db, organization_id, subscription_id, self.clock.now())
