"""What composing an invoice reads, behind one interface with two implementations.

`Loader` reads per subscription (previews, live drafts, single finalizations); `PageLoader`
reads a whole page of subscriptions in a few queries (the billing run) and answers from memory,
falling back to `Loader` for anything it did not prefetch (late-usage adjustments, rare).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.engine import Connection

from meterworks.billing import marks, store
from meterworks.billing.model import Invoice, InvoiceKind, Line, LineType
from meterworks.billing.progress import Progress
from meterworks.catalog.meters import Aggregation, Meter, meters_by_ref
from meterworks.catalog.plans import Plan
from meterworks.db import tables as t
from meterworks.db.dialect import one_of, text_array
from meterworks.kit.instants import to_micros
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription
from meterworks.usage.aggregations import ZERO, quantity
from meterworks.usage.ledger import _rollup_from_row, latest_before, load_values, rollup_rows
from meterworks.usage.reading import usage_for_period

Before = tuple[datetime, str] | None


def _earlier(key: tuple[datetime, str], before: Before) -> bool:
    return before is None or key < before


class Loader:
    """Reads for one organization inside one unit of work, a query at a time."""

    def __init__(self, conn: Connection, organization_id: str) -> None:
        self.conn = conn
        self.organization_id = organization_id
        self._meters: dict[str, dict[str, Meter]] = {}
        # Results shared by the subscriptions of one unit of work (e.g. a plan's fixed lines).
        self.memo: dict[tuple[object, ...], Any] = {}

    def meters(self, plan: Plan) -> dict[str, Meter]:
        found = self._meters.get(plan.id)
        if found is None:
            refs = {c.meter_id for c in plan.usage_charges}
            by_ref = meters_by_ref(self.conn, self.organization_id, refs)
            found = self._meters[plan.id] = {m.id: m for m in by_ref.values()}
        return found

    def quantities(
        self, sub: Subscription, period: Period, until: datetime, meters: Sequence[Meter]
    ) -> dict[str, Decimal]:
        usage = usage_for_period(
            self.conn, self.organization_id, sub, period, now=until, meters=list(meters)
        )
        return {m.meter.id: m.quantity for m in usage.meters}

    def billed(
        self, subscription_id: str, starts: set[datetime], before: Before
    ) -> dict[tuple[datetime, str], store.Billed]:
        return store.billed_for(self.conn, self.organization_id, subscription_id, starts, before)

    def earlier_draft(self, subscription_id: str, before: Before) -> bool:
        return store.earlier_draft_exists(self.conn, self.organization_id, subscription_id, before)

    def late_from(self, subscription_id: str) -> int | None:
        return marks.late_from(self.conn, self.organization_id, subscription_id)

    def finalized_periods(self, subscription_id: str, ending_after: datetime) -> list[Invoice]:
        return store.finalized_periods(
            self.conn, self.organization_id, subscription_id, ending_after
        )

    def tax_rate(self, customer_id: str) -> Decimal | None:
        c = t.customers.c
        # Read directly: a deleted customer still owes its invoices, at its rate.
        value = self.conn.execute(
            select(c.tax_rate).where(c.organization_id == self.organization_id, c.id == customer_id)
        ).scalar()
        return value if isinstance(value, Decimal) else None


class PageLoader(Loader):
    """A Loader that prefetches a page's usage, earlier lines, tax rates and progress."""

    def __init__(
        self,
        conn: Connection,
        organization_id: str,
        progress: dict[str, Progress],
    ) -> None:
        super().__init__(conn, organization_id)
        self.progress = progress
        self._quantities: dict[tuple[str, int], dict[str, Decimal]] = {}
        self._billed: dict[str, list[tuple[tuple[datetime, str], Line]]] = defaultdict(list)
        self._billed_starts: dict[str, set[datetime]] = defaultdict(set)
        self._tax: dict[str, Decimal | None] = {}
        self._settled: set[str] = set()

    def prefetch(
        self,
        usage: Iterable[tuple[Subscription, Period, Sequence[Meter]]],
        billed: Iterable[tuple[str, datetime]],
        customer_ids: Iterable[str],
    ) -> None:
        self._prefetch_usage(list(usage))
        self._prefetch_billed(list(billed))
        ids = sorted(set(customer_ids))
        c = t.customers.c
        self._tax = dict.fromkeys(ids)
        for part in store.chunks(ids):
            for row in self.conn.execute(
                select(c.id, c.tax_rate).where(
                    c.organization_id == self.organization_id, one_of(self.conn, c.id, part)
                )
            ):
                self._tax[row.id] = row.tax_rate

    def _prefetch_usage(self, wanted: list[tuple[Subscription, Period, Sequence[Meter]]]) -> None:
        by_start: dict[int, list[tuple[Subscription, Period, Sequence[Meter]]]] = defaultdict(list)
        for item in wanted:
            by_start[to_micros(item[1].start)].append(item)
        for start_us, items in by_start.items():
            subs = sorted({sub.id for sub, _, _ in items})
            meter_ids = sorted({m.id for _, _, ms in items for m in ms})
            rows = {}
            if meter_ids:
                for row in rollup_rows(
                    self.conn, self.organization_id, subs, meter_ids, start_us, start_us
                ):
                    rows[(row.subscription_id, row.meter_id)] = _rollup_from_row(row)
            missing = {
                (sub.id, m.id)
                for sub, _, ms in items
                for m in ms
                if m.aggregation.is_level and (sub.id, m.id) not in rows
            }
            carried = latest_before(self.conn, self.organization_id, missing, start_us)
            for sub, period, ms in items:
                found: dict[str, Decimal] = {}
                for meter in ms:
                    pair = (sub.id, meter.id)
                    stored = rows.get(pair)
                    if stored is not None and meter.aggregation is Aggregation.UNIQUE_COUNT:
                        load_values(self.conn, self.organization_id, pair, {start_us: stored})
                    level = carried.get(pair)
                    found[meter.id] = quantity(
                        stored,
                        meter.aggregation,
                        period_start_us=start_us,
                        until_us=to_micros(period.end),
                        carried_level=level.level if level is not None else ZERO,
                    )
                self._quantities[(sub.id, start_us)] = found

    def _prefetch_billed(self, wanted: list[tuple[str, datetime]]) -> None:
        if not wanted:
            return
        line, inv = t.invoice_lines.c, t.invoices.c
        starts = sorted({start for _, start in wanted})
        subs = sorted({sid for sid, _ in wanted})
        for part in store.chunks(subs):
            if self.conn.dialect.name == "postgresql":
                params = {
                    "organization_id": self.organization_id,
                    "subscriptions": text_array(part),
                    "starts": starts,
                }
                rows = self.conn.execute(_BILLED_PG, params)
            else:
                rows = self.conn.execute(
                    select(
                        line.subscription_id, line.service_start, line.charge_ref, line.type,
                        line.quantity, line.amount_minor, line.invoice_id, inv.closes_at,
                    )
                    .select_from(
                        t.invoice_lines.join(
                            t.invoices,
                            and_(
                                inv.organization_id == line.organization_id,
                                inv.id == line.invoice_id,
                            ),
                        )
                    )
                    .where(
                        line.organization_id == self.organization_id,
                        line.subscription_id.in_(part),
                        line.service_start.in_(starts),
                    )
                )  # fmt: skip
            for row in rows:
                self._billed[row.subscription_id].append(
                    ((row.closes_at, row.invoice_id), _billed_line(row))
                )
        for sid, start in wanted:
            self._billed_starts[sid].add(start)

    def note(self, subscription_id: str, key: tuple[datetime, str], lines: Sequence[Line]) -> None:
        """Lines composed in this page count as billed for the subscription's later invoices
        (in place of what the same invoice held before, when it is a draft re-composed)."""
        held = [item for item in self._billed[subscription_id] if item[0][1] != key[1]]
        held.extend((key, line) for line in lines)
        self._billed[subscription_id] = held

    def settle(self, subscription_id: str) -> None:
        """An invoice of this page settled the subscription's late usage: none is left."""
        self._settled.add(subscription_id)

    def quantities(
        self, sub: Subscription, period: Period, until: datetime, meters: Sequence[Meter]
    ) -> dict[str, Decimal]:
        found = self._quantities.get((sub.id, to_micros(period.start)))
        if found is None or until < period.end:
            return super().quantities(sub, period, until, meters)
        return found

    def billed(
        self, subscription_id: str, starts: set[datetime], before: Before
    ) -> dict[tuple[datetime, str], store.Billed]:
        if not starts <= self._billed_starts[subscription_id]:
            return super().billed(subscription_id, starts, before)
        totals: dict[tuple[datetime, str], store.Billed] = {}
        for key, line in self._billed[subscription_id]:
            if line.service.start not in starts or not _earlier(key, before):
                continue
            slot = (line.service.start, line.charge_ref)
            held = totals.get(slot, store.Billed())
            totals[slot] = store.Billed(
                held.amount_minor + line.amount_minor,
                held.quantity + line.quantity,
                (*held.invoice_ids, key[1]),
            )
        return totals

    def earlier_draft(self, subscription_id: str, before: Before) -> bool:
        progress = self.progress.get(subscription_id)
        if progress is None:
            return super().earlier_draft(subscription_id, before)
        return any(
            _earlier(d.key, before) for d in progress.drafts if d.kind is not InvoiceKind.OPENING
        )

    def late_from(self, subscription_id: str) -> int | None:
        progress = self.progress.get(subscription_id)
        if subscription_id in self._settled or (progress is not None and not progress.marked):
            return None
        return super().late_from(subscription_id)

    def tax_rate(self, customer_id: str) -> Decimal | None:
        if customer_id in self._tax:
            return self._tax[customer_id]
        return super().tax_rate(customer_id)


# PostgreSQL: one probe of the lines' (organization, subscription, service start) index per
# subscription, whatever the planner knows of a table the run itself is filling (see
# `usage.ledger.rollup_rows`).
_L, _I = t.invoice_lines.c, t.invoices.c
_BILLED_PG = text(
    "SELECT l.subscription_id, l.service_start, l.charge_ref, l.type, l.quantity,"
    " l.amount_minor, l.invoice_id, i.closes_at"
    " FROM unnest(CAST(:subscriptions AS varchar[])) AS s(id)"
    " CROSS JOIN LATERAL (SELECT * FROM invoice_lines AS l"
    " WHERE l.organization_id = :organization_id AND l.subscription_id = s.id"
    " AND l.service_start = ANY(CAST(:starts AS timestamptz[])) OFFSET 0) AS l"
    " JOIN invoices AS i ON i.organization_id = l.organization_id AND i.id = l.invoice_id"
).columns(
    _L.subscription_id, _L.service_start, _L.charge_ref, _L.type, _L.quantity,
    _L.amount_minor, _L.invoice_id, _I.closes_at,
)  # fmt: skip


def _billed_line(row: object) -> Line:
    return Line(
        type=LineType(row.type),  # type: ignore[attr-defined]
        charge_ref=row.charge_ref,  # type: ignore[attr-defined]
        service=Period(row.service_start, row.service_start),  # type: ignore[attr-defined]
        description="",
        meter_id=None,
        quantity=row.quantity,  # type: ignore[attr-defined]
        unit_price=None,
        exact_amount=Decimal(0),
        amount_minor=row.amount_minor,  # type: ignore[attr-defined]
    )
