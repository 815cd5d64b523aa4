"""Billing views: each subscription's current period priced, as its next invoice would be.

After usage writes, the writer's hook asks for a rebuild (in the writer's own transaction): the
request's due time is pushed `view_debounce_seconds` ahead by every write, so a burst of writes to
one subscription causes one rebuild, after the burst. Writes with `rebuild_view=False` (Gradient's
`no_build=true`) ask for none. A rebuild runs when its request is due: from the background loop,
or from a read that finds it due. It builds from a read transaction and then stores the view; the
request is cleared only if no write changed it since the build read the usage, so nothing
written is ever left out, and a view is stored only over the one it started from, so a read
never returns an older build than one it could have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, tuple_
from sqlalchemy.engine import Connection

from meterworks.billing.compose import Composer
from meterworks.billing.documents import preview_document
from meterworks.billing.loader import Loader
from meterworks.billing.model import InvoiceKind
from meterworks.catalog.plans import get_plan
from meterworks.db import bulk
from meterworks.db import tables as t
from meterworks.db.dialect import upsert
from meterworks.db.engine import Database
from meterworks.errors import Conflict
from meterworks.kit.instants import format_instant
from meterworks.kit.periods import Period
from meterworks.subscriptions.service import Subscription, get_subscription

log = logging.getLogger("meterworks.billing")

RETRY_AFTER = timedelta(seconds=60)
R = t.billing_view_requests.c
V = t.billing_views.c


@dataclass(frozen=True, slots=True)
class View:
    subscription_id: str
    period_start: datetime
    built_at: datetime
    builds: int
    body: dict[str, Any]

    def document(self, pending_since: datetime | None) -> dict[str, Any]:
        return {
            **self.body,
            "view": {
                "built_at": format_instant(self.built_at),
                "builds": self.builds,
                # A rebuild is asked for (usage changed since this view was built).
                "rebuild_pending": pending_since is not None,
            },
        }


def request_rebuild(
    conn: Connection,
    organization_id: str,
    subscription_ids: set[str],
    *,
    now: datetime,
    debounce: timedelta,
) -> None:
    """The writer's hook: ask for (or push back) a rebuild of each subscription's view."""
    if not subscription_ids:
        return
    # A loop building the view meanwhile keeps this request (`claimed_until` cleared); once
    # due, any loop may take it.
    bulk.upsert(
        conn,
        t.billing_view_requests,
        ["organization_id", "subscription_id"],
        ["requested_at", "due_at", "claimed_until"],
        [(organization_id, sid, now, now + debounce, None) for sid in sorted(subscription_ids)],
    )


def current_period(sub: Subscription, now: datetime) -> Period:
    if sub.ends_at is not None and now >= sub.ends_at:
        raise Conflict(
            "the subscription has ended: it has no current period; see its invoices",
            code="subscription_ended",
        )
    return sub.period_at(now)


# Built once: every preview runs both (building a statement costs more than running it).
_VIEW = select(t.billing_views).where(
    V.organization_id == bindparam("organization_id"),
    V.subscription_id == bindparam("subscription_id"),
)
_REQUEST = select(R.requested_at, R.due_at).where(
    R.organization_id == bindparam("organization_id"),
    R.subscription_id == bindparam("subscription_id"),
)
_REQUEST_LOCKED = _REQUEST.with_for_update()


def _load(conn: Connection, organization_id: str, subscription_id: str) -> View | None:
    keys = {"organization_id": organization_id, "subscription_id": subscription_id}
    row = conn.execute(_VIEW, keys).first()
    if row is None:
        return None
    return View(row.subscription_id, row.period_start, row.built_at, row.builds, row.body)


def _request(
    conn: Connection, organization_id: str, subscription_id: str, *, lock: bool = False
) -> tuple[datetime, datetime] | None:
    keys = {"organization_id": organization_id, "subscription_id": subscription_id}
    row = conn.execute(_REQUEST_LOCKED if lock else _REQUEST, keys).first()
    return None if row is None else (row.requested_at, row.due_at)


def _stale(
    view: View | None, request: tuple[datetime, datetime] | None, period: Period, now: datetime
) -> bool:
    if view is None or view.period_start != period.start:
        return True
    return request is not None and request[1] <= now


def build(
    conn: Connection, organization_id: str, sub: Subscription, now: datetime
) -> dict[str, Any]:
    """The view's document: the current period composed as its invoice, usage counted to now."""
    period = current_period(sub, now)
    plan = get_plan(conn, organization_id, sub.plan_id)
    composition = Composer(Loader(conn, organization_id), sub, plan).compose(
        InvoiceKind.PERIOD, period, before=None, until=max(now, period.start)
    )
    return preview_document(sub, plan.currency, composition, counted_until=min(now, period.end))


def rebuild(
    db: Database,
    organization_id: str,
    subscription_id: str,
    now: datetime,
    *,
    only_if_due: bool,
    claimed: tuple[datetime, datetime] | None = None,
) -> tuple[View | None, bool]:
    """Rebuild one view if it is stale (with `only_if_due`: if its request is due; with
    `claimed`, the request as `rebuild_due` claimed it: if no write changed it since).

    Answers the view as it stands and whether this call rebuilt it. The view is built in a read
    transaction and stored in a short write one, so a rebuild never holds up the ledger writer
    (on SQLite, every writer of the database). The request is read before the usage: a write
    that lands after it changes the request, which is then kept for the next rebuild.
    """
    with db.read() as conn:
        request = _request(conn, organization_id, subscription_id)
        sub = get_subscription(conn, organization_id, subscription_id)
        view = _load(conn, organization_id, subscription_id)
        if claimed is not None:
            if request != claimed:
                return view, False  # asked for again since: rebuilt once that is due
        elif only_if_due and (request is None or request[1] > now):
            return view, False
        ended = sub.ends_at is not None and now >= sub.ends_at
        if not ended:
            period = current_period(sub, now)
            if not only_if_due and not _stale(view, request, period, now):
                return view, False
            body = build(conn, organization_id, sub, now)
    with db.transaction() as conn:
        # Locked until commit: a write asking for the next rebuild meanwhile waits for it.
        asked = _request(conn, organization_id, subscription_id, lock=True)
        if ended:
            _forget(conn, organization_id, subscription_id)
            return view, False
        stored = _load(conn, organization_id, subscription_id)
        if _builds(stored) != _builds(view):
            # Rebuilt by another process since this one read it: a build of this one's snapshot
            # may be older than that one, and a view never goes back.
            return stored, False
        builds = _builds(view) + 1
        values = {"period_start": period.start, "built_at": now, "builds": builds, "body": body}
        conn.execute(
            upsert(conn, t.billing_views, ["organization_id", "subscription_id"], values).values(
                organization_id=organization_id, subscription_id=subscription_id, **values
            )
        )
        if asked == request:
            # Nothing was written since the build read the usage.
            _forget(conn, organization_id, subscription_id)
        return View(subscription_id, period.start, now, builds, body), True


def _builds(view: View | None) -> int:
    return 0 if view is None else view.builds


def _forget(conn: Connection, organization_id: str, subscription_id: str) -> None:
    conn.execute(
        delete(t.billing_view_requests).where(
            R.organization_id == organization_id, R.subscription_id == subscription_id
        )
    )


def preview(
    db: Database, organization_id: str, subscription_id: str, now: datetime
) -> dict[str, Any]:
    """The subscription's billing view, rebuilt first when it is missing, outdated or due."""
    stored = stored_preview(db, organization_id, subscription_id, now)
    if stored is not None:
        return stored
    view, _ = rebuild(db, organization_id, subscription_id, now, only_if_due=False)
    with db.read() as conn:
        request = _request(conn, organization_id, subscription_id)
    assert view is not None
    return view.document(None if request is None else request[0])


def stored_preview(
    db: Database, organization_id: str, subscription_id: str, now: datetime
) -> dict[str, Any] | None:
    """The subscription's billing view as stored, in one read; None where it must be rebuilt
    first (missing, outdated or due). NotFound where there is no such subscription."""
    with db.read() as conn:
        sub = get_subscription(conn, organization_id, subscription_id)
        period = current_period(sub, now)
        view = _load(conn, organization_id, subscription_id)
        request = _request(conn, organization_id, subscription_id)
    if view is None or _stale(view, request, period, now):
        return None
    return view.document(None if request is None else request[0])


def rebuild_due(db: Database, now: datetime, *, limit: int = 200) -> int:
    """Rebuild the views whose debounce has passed, oldest first; how many were rebuilt.

    Each due request is claimed first, for `RETRY_AFTER`, where no other loop holds it, so the
    loops of several processes never build the same view twice. A loop that stops half-way
    leaves its claims to lapse; a write clears the claim of its subscription's request.
    """
    free = or_(R.claimed_until.is_(None), R.claimed_until <= now)
    with db.read() as conn:
        due = conn.execute(
            select(R.organization_id, R.subscription_id, R.requested_at, R.due_at)
            .where(R.due_at <= now, free)
            .order_by(R.due_at)
            .limit(limit)
        ).all()
    if not due:
        return 0
    # One statement claims them all: the write turn it takes holds up every ledger writer, and
    # one update per request held it 25–40 ms for 128 requests. A request asked for again since
    # the read (a new `requested_at`) or claimed meanwhile is left out.
    asked = [(row.organization_id, row.subscription_id, row.requested_at) for row in due]
    with db.transaction() as conn:
        returned = conn.execute(
            t.billing_view_requests.update()
            .where(tuple_(R.organization_id, R.subscription_id, R.requested_at).in_(asked), free)
            .values(claimed_until=now + RETRY_AFTER)
            .returning(R.organization_id, R.subscription_id, R.requested_at, R.due_at)
        ).all()
    claimed = sorted(returned, key=lambda row: row.due_at)
    rebuilt = 0
    for row in claimed:
        try:
            _, built = rebuild(
                db,
                row.organization_id,
                row.subscription_id,
                now,
                only_if_due=True,
                claimed=(row.requested_at, row.due_at),
            )
        except Exception:
            # Retried later, not in a tight loop: a view that cannot be built waits a minute.
            log.exception("billing view of %s failed", row.subscription_id)
            _postpone(db, row.organization_id, row.subscription_id, now + RETRY_AFTER)
            continue
        rebuilt += built
    return rebuilt


def _postpone(db: Database, organization_id: str, subscription_id: str, due_at: datetime) -> None:
    with db.transaction() as conn:
        conn.execute(
            t.billing_view_requests.update()
            .where(R.organization_id == organization_id, R.subscription_id == subscription_id)
            .values(due_at=due_at, claimed_until=None)
        )
