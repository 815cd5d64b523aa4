"""Where each subscription of a page stands, read in a few queries for the billing run:
its opening invoice, its last invoiced period, its drafts and its late-usage mark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from meterworks.billing.model import InvoiceKind, InvoiceStatus
from meterworks.billing.store import chunks
from meterworks.db import tables as t
from meterworks.db.dialect import one_of
from meterworks.kit.instants import parse_instant
from meterworks.kit.periods import Period

INV = t.invoices.c


@dataclass(frozen=True, slots=True)
class DraftRef:
    closes_at: datetime
    id: str
    kind: InvoiceKind
    period: Period

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.closes_at, self.id)


@dataclass(slots=True)
class Progress:
    """Where one subscription stands, for the billing run: read per page of subscriptions."""

    has_opening: bool = False
    last_period_end: datetime | None = None
    drafts: list[DraftRef] = field(default_factory=list)
    marked: bool = False


def progress_of(
    conn: Connection, organization_id: str, subscription_ids: Sequence[str]
) -> dict[str, Progress]:
    found = {sid: Progress() for sid in subscription_ids}
    for part in chunks(sorted(subscription_ids)):
        # The range beside the list keeps the planner on the (organization, subscription)
        # index even before statistics have caught up with a run's fresh rows.
        span = INV.subscription_id.between(part[0], part[-1])
        for row in conn.execute(
            select(INV.subscription_id, INV.kind, func.max(INV.period_end).label("last_end"))
            .where(
                INV.organization_id == organization_id,
                span,
                one_of(conn, INV.subscription_id, part),
                INV.kind.in_([InvoiceKind.OPENING.value, InvoiceKind.PERIOD.value]),
            )
            .group_by(INV.subscription_id, INV.kind)
        ):
            progress = found[row.subscription_id]
            if row.kind == InvoiceKind.OPENING.value:
                progress.has_opening = True
            else:
                progress.last_period_end = _utc(row.last_end)
        for draft in conn.execute(
            select(
                INV.subscription_id, INV.closes_at, INV.id, INV.kind, INV.period_start,
                INV.period_end,
            ).where(
                INV.organization_id == organization_id,
                span,
                one_of(conn, INV.subscription_id, part),
                INV.status == InvoiceStatus.DRAFT.value,
            )
        ):  # fmt: skip
            found[draft.subscription_id].drafts.append(
                DraftRef(
                    draft.closes_at,
                    draft.id,
                    InvoiceKind(draft.kind),
                    Period(draft.period_start, draft.period_end),
                )
            )
    for sid in marked(conn, organization_id, subscription_ids):
        found[sid].marked = True
    for progress in found.values():
        progress.drafts.sort(key=lambda d: d.key)
    return found


def marked(conn: Connection, organization_id: str, subscription_ids: Sequence[str]) -> set[str]:
    """Which of these subscriptions carry a late-usage mark."""
    m = t.billing_late_marks.c
    found: set[str] = set()
    for part in chunks(list(subscription_ids)):
        found.update(
            row.subscription_id
            for row in conn.execute(
                select(m.subscription_id).where(
                    m.organization_id == organization_id, one_of(conn, m.subscription_id, part)
                )
            )
        )
    return found


def _utc(value: Any) -> datetime:
    """An aggregate bypasses the column type on SQLite; bring it back to an aware UTC instant."""

    if isinstance(value, datetime):
        return value if value.tzinfo is not None else parse_instant(value.isoformat())
    return parse_instant(str(value))
