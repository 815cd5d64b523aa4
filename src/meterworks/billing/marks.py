"""Late usage: noticing usage written for a period whose invoice is already finalized.

The ledger writer calls `note_late_usage` inside its commit transaction, after it locked the
organization's ledger sequence. Finalization takes that same lock before it rates, so every write
either lands before a finalization (and is on the invoice) or after it (and is seen here as
late): nothing is lost, nothing counted twice. A mark remembers, per subscription, the earliest
instant whose usage changed late; the next invoice re-rates the finalized periods from there and
bills the differences as adjustment lines, then clears the mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.engine import Connection

from meterworks.billing.model import InvoiceKind, InvoiceStatus
from meterworks.billing.store import chunks
from meterworks.db import tables as t
from meterworks.db.dialect import Listed, excluded, upsert
from meterworks.kit.instants import to_micros
from meterworks.usage.ingest import NewEvent
from meterworks.usage.ledger import known_hashes

M = t.billing_late_marks.c
INV = t.invoices.c


def finalized_through(
    conn: Connection, organization_id: str, subscription_ids: Sequence[str]
) -> dict[str, int]:
    """Per subscription with a finalized period: the end of its latest one, in µs.

    Periods are finalized in order, so an instant before it lies in a finalized period.
    """
    found: dict[str, int] = {}
    for part in chunks(list(subscription_ids)):
        for row in _FINALIZED_THROUGH.execute(conn, part, {"organization_id": organization_id}):
            found[row.subscription_id] = to_micros(row.through)
    return found


# Built once: the writer runs it on every commit and ingestion's guard on every call.
_FINALIZED_THROUGH = Listed(
    "ids",
    lambda ids: (
        select(INV.subscription_id, func.max(INV.period_end).label("through"))
        .where(
            INV.organization_id == bindparam("organization_id"),
            INV.subscription_id.in_(ids),
            INV.kind == InvoiceKind.PERIOD.value,
            INV.status != InvoiceStatus.DRAFT.value,
        )
        .group_by(INV.subscription_id)
    ),
)
_POLICY = select(t.organizations.c.late_usage_policy).where(
    t.organizations.c.id == bindparam("organization_id")
)


def note_late_usage(
    conn: Connection, organization_id: str, changes: dict[str, int], now: datetime
) -> None:
    """Mark the subscriptions whose change reaches back into a finalized period."""
    through = finalized_through(conn, organization_id, sorted(changes))
    late = {sid: ts for sid, ts in changes.items() if sid in through and ts < through[sid]}
    if not late:
        return
    ex = excluded(conn, t.billing_late_marks)
    table = t.billing_late_marks
    statement = upsert(
        conn,
        table,
        ["organization_id", "subscription_id"],
        {
            "from_us": case((ex.from_us < table.c.from_us, ex.from_us), else_=table.c.from_us),
            "marked_at": ex.marked_at,
        },
    )
    conn.execute(
        statement,
        [
            {
                "organization_id": organization_id,
                "subscription_id": sid,
                "from_us": ts,
                "marked_at": now,
            }
            for sid, ts in sorted(late.items())
        ],
    )


def late_from(conn: Connection, organization_id: str, subscription_id: str) -> int | None:
    value = conn.execute(
        select(M.from_us).where(
            M.organization_id == organization_id, M.subscription_id == subscription_id
        )
    ).scalar()
    return None if value is None else int(value)


def clear_mark(conn: Connection, organization_id: str, subscription_id: str) -> None:
    conn.execute(
        delete(t.billing_late_marks).where(
            M.organization_id == organization_id, M.subscription_id == subscription_id
        )
    )


def refuse_finalized_periods(
    conn: Connection, organization_id: str, events: list[NewEvent]
) -> list[dict[str, Any]]:
    """The ingest guard of the `reject` policy: refuse events for a finalized period.

    A replay of an event the ledger already holds is not refused: it is answered as a duplicate,
    exactly like the first call.
    """
    policy = conn.execute(_POLICY, {"organization_id": organization_id}).scalar()
    if policy != "reject":
        return []
    through = finalized_through(conn, organization_id, sorted({e.subscription.id for e in events}))
    late = [
        (index, event)
        for index, event in enumerate(events)
        if event.subscription.id in through and event.ts_us < through[event.subscription.id]
    ]
    if not late:
        return []
    known = known_hashes(conn, organization_id, sorted({e.idempotency_key for _, e in late}))
    return [
        {
            "index": index,
            "field": "timestamp",
            "code": "period_finalized",
            "message": "the invoice for this timestamp's period is already finalized, and this "
            "organization refuses late usage (late_usage_policy `reject`)",
        }
        for index, event in late
        if known.get(event.idempotency_key) != event.payload_hash
    ]
