"""Billing one page of subscriptions in one unit of work: the billing run's fast path.

A page's reads are prefetched in a few queries (`PageLoader`), its invoices composed in memory
and written with a handful of bulk statements, so a run costs per page what it used to cost per
invoice. The rules are the ones of `lifecycle.py` (drafting, finalizing under the ledger lock,
numbering in billing order); a page that fails as a whole is retried there, one subscription at
a time.

A page is composed in a read transaction (`compose_page`) and written in a write transaction
(`write_page`), so the ledger lock is held only while it is written. Under the lock the page
checks what changed since it was read: a subscription with ledger entries numbered since then and
dated before the end of what the page bills, or whose invoices or late mark differ, is composed
again there. Every change of usage is a ledger entry, so nothing written before the lock is
missed, and everything after it is late usage.

On PostgreSQL the new invoices' lines, most of what a page writes, go in before the lock, so one
page writes them while another holds it; their invoices follow under the lock, and the lines' key
to their invoice is checked at commit. The lines of a subscription composed again are replaced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from meterworks.billing import store
from meterworks.billing.compose import Composer, Composition, first_period, period_at
from meterworks.billing.loader import PageLoader
from meterworks.billing.model import InvoiceKind, InvoiceStatus
from meterworks.billing.progress import DraftRef, Progress, progress_of
from meterworks.catalog.plans import Plan
from meterworks.db import bulk
from meterworks.db import tables as t
from meterworks.db.dialect import (
    defer_foreign_key,
    is_unique_violation,
    one_of,
    plan_key_checks_once,
)
from meterworks.kit.ids import new_id
from meterworks.kit.instants import to_micros
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription
from meterworks.usage.ledger import lock_sequence, next_sequence, touched_between

log = logging.getLogger("meterworks.billing")
INV = t.invoices.c


@dataclass(frozen=True, slots=True)
class Step:
    """One invoice of a subscription to handle in this run, in billing order."""

    kind: InvoiceKind
    period: Period
    closes_at: datetime
    id: str
    existing: bool  # an existing draft (else: to be drafted now)
    finalize: bool

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.closes_at, self.id)


def steps_for(
    sub: Subscription,
    plan: Plan,
    progress: Progress,
    *,
    as_of: datetime,
    grace: timedelta,
) -> list[Step]:
    """What the run has to do for one subscription: drafts to create, drafts to finalize."""
    first = first_period(sub)
    if first is None:
        return []
    # (closes_at, id, kind, period, existing): a Step once it is known whether it finalizes.
    wanted = [(d.closes_at, d.id, d.kind, d.period, True) for d in progress.drafts]
    if plan.fixed_charges and not progress.has_opening and sub.starts_at <= as_of:
        wanted.append((sub.starts_at, new_id("inv"), InvoiceKind.OPENING, first, False))
    cursor = progress.last_period_end or sub.starts_at
    while sub.ends_at is None or cursor < sub.ends_at:
        period = period_at(sub, cursor)
        if period.end > as_of or period.end <= cursor:
            break
        wanted.append((period.end, new_id("inv"), InvoiceKind.PERIOD, period, False))
        cursor = period.end
    steps, chain = [], True
    for closes_at, invoice_id, kind, period, existing in sorted(wanted, key=itemgetter(0, 1)):
        # Finalized in billing order: once one is still in its grace period, so are the rest.
        chain = chain and closes_at + grace <= as_of
        if chain or not existing:
            steps.append(Step(kind, period, closes_at, invoice_id, existing, finalize=chain))
    return steps


@dataclass(slots=True)
class Composed:
    sub: Subscription
    step: Step
    composition: Composition


class BilledMeanwhile(Exception):
    """Another run drafted invoices of this page after it was read."""


@dataclass(slots=True)
class PageResult:
    drafted: list[str]
    finalized: list[str]
    failed: int


@dataclass(slots=True)
class ComposedPage:
    """A page composed outside the write transaction, from what was committed below `seq`."""

    work: list[tuple[Subscription, Plan, list[Step]]]
    # What each subscription's composition assumed of its invoices and late mark.
    seen: dict[str, Progress]
    composed: dict[str, list[Composed]]
    failed: set[str]
    seq: int


def compose_page(
    conn: Connection,
    organization_id: str,
    work: list[tuple[Subscription, Plan, list[Step]]],
    progress: dict[str, Progress],
) -> ComposedPage:
    """Read and compose a page in a read transaction: no lock is held meanwhile, so ingestion
    and other pages go on. `write_page` checks under the lock what changed since."""
    seen = {sub.id: _copied(progress[sub.id]) for sub, _, _ in work}
    seq = next_sequence(conn, organization_id)
    existing = {s.id for _, _, steps in work for s in steps if s.existing and s.finalize}
    composed, failed = _compose(conn, organization_id, work, progress, existing)
    return ComposedPage(work, seen, composed, failed, seq)


def write_page(
    conn: Connection,
    organization_id: str,
    page: ComposedPage,
    progress: dict[str, Progress],
    *,
    as_of: datetime,
    grace: timedelta,
    now: datetime,
    net_days: int,
) -> PageResult:
    """Write a composed page; a finalizing page first takes the ledger lock and composes again,
    under it, every subscription whose usage, invoices or late mark changed since it was read."""
    finalizing = any(step.finalize for _, _, steps in page.work for step in steps)
    watermark = None
    composed, failed = page.composed, page.failed
    # Before any lock (PostgreSQL): the lines of the invoices this page inserts, checked
    # against them at commit. The ledger lock then covers little more than the invoices.
    early = []
    if defer_foreign_key(conn, LINES_INVOICE_KEY):
        early = [
            c for sub, _, _ in page.work for c in composed.get(sub.id, ()) if not c.step.existing
        ]
        _insert_lines(conn, organization_id, early)
    stale: set[str] = set()
    if finalizing:
        # The ledger lock before reading what changed, as in `lifecycle.finalize`: writes
        # committed before it are on these invoices, later ones are late usage.
        watermark = lock_sequence(conn, organization_id)
        ids = [sub.id for sub, _, _ in page.work]
        # The drafts the page finalizes, locked before anything is compared. A subscription
        # composed again asks anew, for the drafts it finds under the lock.
        _lock_drafts(
            conn,
            organization_id,
            [s.id for _, _, steps in page.work for s in steps if s.existing and s.finalize],
        )
        fresh = progress_of(conn, organization_id, ids)
        stale = {sid for sid in ids if fresh[sid] != page.seen[sid]}
        # Usage written since the read changes these invoices only if it is dated before the
        # end of the last period they bill (usage of the running period waits for its own).
        billed_until = {
            sub.id: max(to_micros(step.period.end) for step in steps) for sub, _, steps in page.work
        }
        for sid, earliest in touched_between(conn, organization_id, page.seq, watermark).items():
            if sid in billed_until and earliest < billed_until[sid]:
                stale.add(sid)
        if stale:
            composed, failed = _compose_again(
                conn, organization_id, page, stale, fresh, progress, as_of=as_of, grace=grace
            )
            # Composed again, with invoices of new ids: the lines written early for them go.
            _delete_lines(conn, organization_id, [c.step.id for c in early if c.sub.id in stale])
    return _write(
        conn,
        organization_id,
        [c for sub, _, _ in page.work for c in composed.get(sub.id, ())],
        len(failed),
        watermark,
        lined={c.step.id for c in early if c.sub.id not in stale},
        now=now,
        net_days=net_days,
    )


def _compose_again(
    conn: Connection,
    organization_id: str,
    page: ComposedPage,
    stale: set[str],
    fresh: dict[str, Progress],
    progress: dict[str, Progress],
    *,
    as_of: datetime,
    grace: timedelta,
) -> tuple[dict[str, list[Composed]], set[str]]:
    """The page's compositions with those of `stale` subscriptions made again from `fresh`."""
    redo = []
    for sub, plan, _ in page.work:
        if sub.id in stale:
            progress[sub.id] = fresh[sub.id]
            steps = steps_for(sub, plan, fresh[sub.id], as_of=as_of, grace=grace)
            if steps:
                redo.append((sub, plan, steps))
    still_draft = _lock_drafts(
        conn,
        organization_id,
        [s.id for _, _, steps in redo for s in steps if s.existing and s.finalize],
    )
    again, failed_again = _compose(conn, organization_id, redo, progress, still_draft)
    composed = {sid: c for sid, c in page.composed.items() if sid not in stale}
    composed.update(again)
    return composed, (page.failed - stale) | failed_again


def _copied(progress: Progress) -> Progress:
    return replace(progress, drafts=list(progress.drafts))


def _compose(
    conn: Connection,
    organization_id: str,
    work: list[tuple[Subscription, Plan, list[Step]]],
    progress: dict[str, Progress],
    still_draft: set[str],
) -> tuple[dict[str, list[Composed]], set[str]]:
    loader = PageLoader(conn, organization_id, progress)
    loader.prefetch(
        usage=[
            (sub, step.period, list(loader.meters(plan).values()))
            for sub, plan, steps in work
            for step in steps
            if step.kind is InvoiceKind.PERIOD
        ],
        billed=[
            (sub.id, step.period.start)
            for sub, plan, steps in work
            if plan.fixed_charges
            for step in steps
            if step.kind is InvoiceKind.PERIOD
        ],
        customer_ids=[sub.customer_id for sub, _, _ in work],
    )
    composed: dict[str, list[Composed]] = {}
    failed: set[str] = set()
    for sub, plan, steps in work:
        try:
            composed[sub.id] = _compose_subscription(loader, sub, plan, steps, still_draft)
        except Exception:
            failed.add(sub.id)
            log.exception("billing subscription %s failed", sub.id)
    return composed, failed


def _write(
    conn: Connection,
    organization_id: str,
    composed: list[Composed],
    failed: int,
    watermark: int | None,
    *,
    lined: set[str],
    now: datetime,
    net_days: int,
) -> PageResult:
    """Write the page's invoices, and the lines of those not in `lined` (written already)."""
    result = PageResult([], [], failed)
    drafts = [c for c in composed if not c.step.existing]
    finals = [c for c in composed if c.step.finalize]
    numbers: dict[str, int] = {}
    if finals:
        # Numbered in billing order; the counter stays locked until the page commits, and a
        # page rolled back returns its numbers: no gap either way.
        first_number = store.reserve_numbers(conn, organization_id, len(finals))
        numbers = {c.step.id: first_number + n for n, c in enumerate(finals)}
    # From here on the page only writes; every row's key is checked against its invoice or
    # subscription, on one plan each.
    plan_key_checks_once(conn)
    # A new invoice is inserted as it ends up: numbered at once when it is finalized now.
    written = _insert_invoices(conn, organization_id, drafts, numbers, watermark, now, net_days)
    if written != len(drafts):
        # Another run drafted some of these meanwhile: the page is billed again one by one.
        raise BilledMeanwhile(f"{len(drafts) - written} of {len(drafts)} invoices exist already")
    result.drafted = [c.step.id for c in drafts]
    _insert_lines(conn, organization_id, [c for c in drafts if c.step.id not in lined])

    existing = [c for c in finals if c.step.existing]
    if existing:
        _delete_lines(conn, organization_id, [c.step.id for c in existing])
        _insert_lines(conn, organization_id, existing)
        assert watermark is not None
        _finalize_rows(conn, organization_id, existing, numbers, watermark, now, net_days)
    if finals:
        settled = sorted({c.sub.id for c in finals if c.composition.settles_late_usage})
        m = t.billing_late_marks.c
        for part in store.chunks(settled):
            conn.execute(
                delete(t.billing_late_marks).where(
                    m.organization_id == organization_id, one_of(conn, m.subscription_id, part)
                )
            )
        result.finalized = [c.step.id for c in finals]
    return result


def _compose_subscription(
    loader: PageLoader,
    sub: Subscription,
    plan: Plan,
    steps: list[Step],
    still_draft: set[str],
) -> list[Composed]:
    progress = loader.progress[sub.id]
    composer = Composer(loader, sub, plan)
    done = []
    for step in steps:
        if step.existing and step.finalize and step.id not in still_draft:
            break  # finalized by another run meanwhile: the rest waits for the next run
        composition = composer.compose(step.kind, step.period, before=step.key)
        loader.note(sub.id, step.key, composition.lines)
        if step.existing and step.finalize:
            progress.drafts = [d for d in progress.drafts if d.id != step.id]
        elif not step.existing and not step.finalize:
            progress.drafts.append(DraftRef(step.closes_at, step.id, step.kind, step.period))
        if step.finalize and composition.settles_late_usage:
            loader.settle(sub.id)
        if composition.period != step.period:
            step = replace(step, period=composition.period)
        done.append(Composed(sub, step, composition))
    return done


def _lock_drafts(conn: Connection, organization_id: str, ids: list[str]) -> set[str]:
    """Lock the drafts this page finalizes; answer those that are still drafts."""
    found: set[str] = set()
    for part in store.chunks(sorted(ids)):
        found.update(
            row.id
            for row in conn.execute(
                select(INV.id)
                .where(
                    INV.organization_id == organization_id,
                    one_of(conn, INV.id, part),
                    INV.status == InvoiceStatus.DRAFT.value,
                )
                .with_for_update()
            )
        )
    return found


INVOICE_COLUMNS = (
    "organization_id", "id", "subscription_id", "customer_id", "kind", "period_start",
    "period_end", "closes_at", "status", "currency", "number", "subtotal_minor", "tax_minor",
    "total_minor", "tax_rate", "paid_minor", "ledger_watermark", "issued_at", "due_at", "paid_at",
    "created_at", "updated_at",
)  # fmt: skip
FINAL_COLUMNS = (
    "period_start", "period_end", "status", "number", "subtotal_minor", "tax_minor",
    "total_minor", "tax_rate", "ledger_watermark", "issued_at", "due_at", "paid_at", "updated_at",
)  # fmt: skip
# Deferred in a page's transaction: the lines go in before their invoices (`write_page`).
LINES_INVOICE_KEY = str(
    next(k.name for k in t.invoice_lines.foreign_key_constraints if k.referred_table is t.invoices)
)
LINE_COLUMNS = (
    "organization_id", "invoice_id", "position", "subscription_id", "type", "charge_ref",
    "service_start", "service_end", "description", "meter_id", "quantity", "unit_price",
    "exact_amount", "amount_minor", "details",
)  # fmt: skip


def _final_values(
    c: Composed, number: int, watermark: int, now: datetime, net_days: int
) -> tuple[Any, ...]:
    """FINAL_COLUMNS of an invoice finalized now."""
    comp = c.composition
    settled = comp.total_minor <= 0
    return (
        comp.period.start,
        comp.period.end,
        (InvoiceStatus.PAID if settled else InvoiceStatus.FINALIZED).value,
        number,
        comp.subtotal_minor,
        comp.tax_minor,
        comp.total_minor,
        comp.tax_rate,
        watermark,
        now,
        now + timedelta(days=net_days),
        now if settled else None,
        now,
    )


def _insert_invoices(
    conn: Connection,
    organization_id: str,
    new: list[Composed],
    numbers: dict[str, int],
    watermark: int | None,
    now: datetime,
    net_days: int,
) -> int:
    """Insert new invoices, finalized if numbered, else as drafts; the number written. One whose
    (subscription, period) was drafted meanwhile is skipped and not counted (SQLite), or stops
    the page with BilledMeanwhile (PostgreSQL)."""
    rows = []
    for c in new:
        comp = c.composition
        number = numbers.get(c.step.id)
        if number is None:
            status, issued, due, paid = InvoiceStatus.DRAFT.value, None, None, None
        else:
            assert watermark is not None
            final = _final_values(c, number, watermark, now, net_days)
            status, issued, due, paid = final[2], final[9], final[10], final[11]
        rows.append(
            (
                organization_id, c.step.id, c.sub.id, c.sub.customer_id, c.step.kind.value,
                comp.period.start, comp.period.end, c.step.closes_at, status, c.sub.currency,
                number, comp.subtotal_minor, comp.tax_minor, comp.total_minor, comp.tax_rate, 0,
                None if number is None else watermark, issued, due, paid, now, now,
            )
        )  # fmt: skip
    if conn.dialect.name != "postgresql":
        return bulk.insert(conn, t.invoices, INVOICE_COLUMNS, rows, skip_conflicts=True)
    # PostgreSQL: by COPY, about a tenth faster for the whole run than INSERTs that skip
    # conflicts. An invoice drafted meanwhile then stops the COPY, and the page, whole.
    try:
        return bulk.insert(conn, t.invoices, INVOICE_COLUMNS, rows)
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise BilledMeanwhile("an invoice of this page exists already") from exc
        raise


def _insert_lines(conn: Connection, organization_id: str, composed: list[Composed]) -> None:
    rows = [
        (
            organization_id, c.step.id, position, c.sub.id, line.type.value, line.charge_ref,
            line.service.start, line.service.end, line.description[:500], line.meter_id,
            line.quantity, line.unit_price, line.exact_amount, line.amount_minor, line.details,
        )
        for c in composed
        for position, line in enumerate(c.composition.lines, start=1)
    ]  # fmt: skip
    bulk.insert(conn, t.invoice_lines, LINE_COLUMNS, rows)


def _delete_lines(conn: Connection, organization_id: str, invoice_ids: list[str]) -> None:
    for part in store.chunks(invoice_ids):
        conn.execute(
            delete(t.invoice_lines).where(
                t.invoice_lines.c.organization_id == organization_id,
                one_of(conn, t.invoice_lines.c.invoice_id, part),
            )
        )


def _finalize_rows(
    conn: Connection,
    organization_id: str,
    finals: list[Composed],
    numbers: dict[str, int],
    watermark: int,
    now: datetime,
    net_days: int,
) -> None:
    """Finalize existing drafts (locked by `_lock_drafts`)."""
    rows = [
        (
            organization_id,
            c.step.id,
            *_final_values(c, numbers[c.step.id], watermark, now, net_days),
        )
        for c in finals
    ]
    bulk.update(conn, t.invoices, ("organization_id", "id"), FINAL_COLUMNS, rows)
