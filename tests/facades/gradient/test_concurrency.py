"""Concurrent Gradient calls over real HTTP: no 500, no lost or doubled writes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from meterworks.db.engine import Database
from meterworks.facades.gradient import integration
from meterworks.kit.instants import format_instant
from tests.facades.gradient.support import Vendor, ledger, ledger_rows, mapped_account, usage

CALLS = 16


def concurrent_counts(vendor: Vendor, service_id: str) -> list[int]:
    """The statuses of CALLS unit counts of acct-1 (1 to CALLS units), sent all at once."""
    path = f"/service/{service_id}/count"

    def send(units: int) -> int:
        body = {"accountId": "acct-1", "unitCount": units}
        return vendor.client.post(path, json=body).status_code

    with ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(send, range(1, CALLS + 1)))


def test_concurrent_unit_counts_each_land_once(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    statuses = concurrent_counts(vendor, mapping.service_id)

    assert statuses == [201] * CALLS
    assert ledger_rows(vendor) == CALLS
    # The level is the last set in ledger order, whichever call that was.
    last = ledger(vendor)[-1][1]
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == last


def test_concurrent_unit_counts_within_a_second_record_the_sync_time_once(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = mapped_account(vendor)
    recorded: list[datetime] = []
    record = integration.record_sync

    def slow(conn: Any, organization_id: str, at: datetime) -> tuple[None, set[str]]:
        recorded.append(at)
        time.sleep(0.3)  # as while another process's writer holds the write turn
        return record(conn, organization_id, at)

    monkeypatch.setattr(integration, "record_sync", slow)
    statuses = concurrent_counts(vendor, mapping.service_id)

    assert statuses == [201] * CALLS
    assert ledger_rows(vendor) == CALLS
    # The server's clock stands still: every count falls within the first one's second.
    assert recorded == [vendor.server.clock.now()]
    shown = vendor.client.get("/organization").json()["lastSyncedAt"]
    assert shown == format_instant(vendor.server.clock.now())


def test_concurrent_account_syncs_create_each_account_once(vendor: Vendor) -> None:
    accounts = [{"id": f"acct-{n}", "name": f"Account {n}"} for n in range(5)]

    def sync(_: int) -> httpx.Response:
        return vendor.client.post("/organization/accounts", json=accounts)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(sync, range(8)))

    # A sync that lost a race for a new id is told to retry (409); none fails otherwise.
    assert {a.status_code for a in answers} <= {201, 409}
    assert 201 in {a.status_code for a in answers}
    listed = vendor.client.get("/organization/accounts").json()
    assert sorted(a["id"] for a in listed) == [f"acct-{n}" for n in range(5)]


def test_the_sync_time_is_written_in_the_ledger_writers_transaction(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write transaction of its own: on SQLite one would wait for a write turn of its own,
    which every process's writers wait for in turn."""
    mapping = mapped_account(vendor)
    writers: list[str] = []
    transaction = Database.transaction

    def counted(db: Database, **kwargs: Any) -> Any:
        writers.append(threading.current_thread().name)
        return transaction(db, **kwargs)

    monkeypatch.setattr(Database, "transaction", counted)
    statuses = concurrent_counts(vendor, mapping.service_id)

    assert statuses == [201] * CALLS
    assert "ledger-writer" in writers
    # Besides, the billing views' own loop may rebuild, in a transaction of its own, what the
    # suite's earlier writes made due: its thread is not one of these calls'.
    assert set(writers) - {"billing-views"} == {"ledger-writer"}
    shown = vendor.client.get("/organization").json()["lastSyncedAt"]
    assert shown == format_instant(vendor.server.clock.now())
