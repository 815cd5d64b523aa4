"""The Gradient integration's own state, kept per organization in `organizations.settings`.

Two keys: `gradient_status` (the integration status the partner sets; `disabled` suspends unit
counts) and `gradient_last_synced_at` (when the last unit count was written). Both are facade
state, not billing rules, so they live in the organization's settings rather than a table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from meterworks.db import tables as t
from meterworks.errors import InvalidInput, MeterworksError, NotFound, Unavailable
from meterworks.kit.instants import format_instant, parse_instant
from meterworks.usage import service as usage_service
from meterworks.usage.ingest import NewEvent
from meterworks.usage.writer import LedgerWriter

log = logging.getLogger("meterworks.facades.gradient")

STATUS_KEY = "gradient_status"
SYNCED_KEY = "gradient_last_synced_at"
STATUSES = ("active", "inactive", "pending", "disabled", "error")
DEFAULT_STATUS = "active"
# The one status that refuses unit counts (the vendor's 403 "anomaly" answer).
SUSPENDED = "disabled"
SUSPENDED_CODE = "integration_disabled"
SUSPENDED_MESSAGE = (
    "Forbidden: the Gradient integration is disabled; set its status to active "
    "(PATCH /organization/status/active) to resume unit counts"
)
# The ledger source of unit counts.
SOURCE = "gradient"


@dataclass(frozen=True, slots=True)
class Integration:
    organization_id: str
    organization_name: str
    partner_id: str
    partner_name: str
    status: str
    last_synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class IntegrationState:
    status: str
    last_synced_at: datetime | None


def _state(settings: dict[str, Any] | None) -> IntegrationState:
    values = settings or {}
    status = values.get(STATUS_KEY)
    synced = values.get(SYNCED_KEY)
    return IntegrationState(
        status=status if status in STATUSES else DEFAULT_STATUS,
        last_synced_at=parse_instant(synced) if isinstance(synced, str) else None,
    )


def read_state(conn: Connection, organization_id: str) -> IntegrationState:
    row = conn.execute(
        select(t.organizations.c.settings).where(t.organizations.c.id == organization_id)
    ).one()
    return _state(row.settings)


def read_integration(conn: Connection, organization_id: str, partner_id: str) -> Integration:
    org = conn.execute(
        select(t.organizations.c.name, t.organizations.c.settings).where(
            t.organizations.c.id == organization_id
        )
    ).one()
    partner = conn.execute(
        select(t.partners.c.name).where(
            t.partners.c.organization_id == organization_id, t.partners.c.id == partner_id
        )
    ).first()
    if partner is None:
        raise NotFound(f"No integration found with id: {partner_id}", code="partner_not_found")
    state = _state(org.settings)
    return Integration(
        organization_id=organization_id,
        organization_name=org.name,
        partner_id=partner_id,
        partner_name=partner.name,
        status=state.status,
        last_synced_at=state.last_synced_at,
    )


def _locked_settings(conn: Connection, organization_id: str) -> dict[str, Any]:
    # Row lock (PostgreSQL; SQLite's write transactions are already exclusive) so concurrent
    # writers of other settings keys do not lose each other's changes.
    row = conn.execute(
        select(t.organizations.c.settings)
        .where(t.organizations.c.id == organization_id)
        .with_for_update()
    ).one()
    return dict(row.settings or {})


def _write_settings(conn: Connection, organization_id: str, settings: dict[str, Any]) -> None:
    conn.execute(
        t.organizations.update()
        .where(t.organizations.c.id == organization_id)
        .values(settings=settings)
    )


def set_status(conn: Connection, organization_id: str, status: str) -> None:
    if status not in STATUSES:
        raise InvalidInput(
            f"Invalid status: {status}; expected one of {', '.join(STATUSES)}",
            code="invalid_status",
        )
    settings = _locked_settings(conn, organization_id)
    _write_settings(conn, organization_id, {**settings, STATUS_KEY: status})


SYNC_RESOLUTION = timedelta(seconds=1)


def sync_due(at: datetime, known: datetime | None) -> bool:
    """Whether a unit count at `at` is to be recorded as the last one (see `mark_synced`)."""
    return known is None or at - known >= SYNC_RESOLUTION


async def mark_synced(writer: LedgerWriter, organization_id: str, at: datetime) -> None:
    """Record `at` as the last unit count, unless one less than a second older is stored.

    The time is kept to the second: a caller sending many counts a second pays this write once
    a second, not once a call (`SyncMarks` skips it too). It is a job of the ledger writer
    (`record_sync`), written in the transaction of the writer's next group: a transaction of its
    own would wait for a write turn of its own, and on SQLite every process's writers wait for
    that one. The unit count is committed before this runs; failing here must not turn its 201
    into an error (the count is in the ledger), so a failure is logged and the time left behind.
    """
    job = partial(record_sync, organization_id=organization_id, at=at)
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future = writer.submit_job(organization_id, job, waiter=waiter)
    try:
        await asyncio.wait_for(waiter, usage_service.COMMIT_TIMEOUT_S)
    except TimeoutError:
        future.cancel()  # not written, if the writer has not begun it
        log.warning("could not record the Gradient sync time of %s in time", organization_id)
    except MeterworksError:
        log.warning("could not record the Gradient sync time of %s", organization_id)


def record_sync(conn: Connection, organization_id: str, at: datetime) -> tuple[None, set[str]]:
    """`mark_synced`'s write, in the ledger writer's transaction: it changes no usage."""
    try:
        settings = _locked_settings(conn, organization_id)
        if sync_due(at, _state(settings).last_synced_at):
            _write_settings(conn, organization_id, {**settings, SYNCED_KEY: format_instant(at)})
    except SQLAlchemyError as exc:
        # The job's own failure: its savepoint is rolled back, and the rest of its group commits.
        raise Unavailable("the Gradient sync time could not be written") from exc
    return None, set()


class SyncMarks:
    """When this process last recorded each organization's sync time: a count less than a
    second after that needs no transaction at all, since the stored time is at least as new."""

    def __init__(self) -> None:
        self._marked: dict[str, datetime] = {}

    def due(self, organization_id: str, at: datetime) -> bool:
        return sync_due(at, self._marked.get(organization_id))

    def marked(self, organization_id: str, at: datetime) -> None:
        self._marked[organization_id] = at


def refuse_while_suspended(
    conn: Connection, organization_id: str, events: list[NewEvent]
) -> list[dict[str, Any]]:
    """The ingest guard of the integration status: no unit count lands while it is disabled.

    It runs in the transaction that would write the counts, so a count is refused exactly when
    the status it is written under is `disabled`."""
    counts = [index for index, event in enumerate(events) if event.source == SOURCE]
    if not counts or read_state(conn, organization_id).status != SUSPENDED:
        return []
    return [
        {"index": index, "field": None, "code": SUSPENDED_CODE, "message": SUSPENDED_MESSAGE}
        for index in counts
    ]
